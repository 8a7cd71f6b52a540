# What the qemu suites share (sourced after lib.sh): the tiny test guest with its disk
# (tests/fixtures/make-tiny-guest.sh DIR --disk, in $GUEST), TCG as the templates say, and the
# check that no qemu the suite started is left.

SRC=$IMGBAKE_SOURCE_DIR
GUEST=${IMGBAKE_TEST_GUEST_DIR:-$E2E_ROOT/guest}
export E2E_TIMEOUT=${E2E_TIMEOUT:-300}
# A stuck accelerator probe must not slow the suites: the templates say tcg; IMGBAKE_QEMU_ACCEL
# is left to the accelerator test.
unset IMGBAKE_QEMU_ACCEL
export IMGBAKE_CACHE_DIR="$E2E_ROOT/cache"

require_tools qemu-system-x86_64 qemu-img python3
if ! "$SRC/tests/fixtures/make-tiny-guest.sh" "$GUEST" --disk >"$E2E_ROOT/fixture.log" 2>&1; then
  echo "the test guest could not be built:" >&2
  cat "$E2E_ROOT/fixture.log" >&2
  exit 1
fi

# qemu processes that this suite started (their command lines name the suite's scratch root).
no_qemu_left() { ! pgrep -f "qemu-system-x86_64 .*$E2E_ROOT" >/dev/null; }
expect_no_qemu() {
  E2E_CHECKS=$((E2E_CHECKS + 1))
  if ! wait_for 5 no_qemu_left; then
    fail "no qemu process is left" "none" "$(pgrep -af "qemu-system.*$E2E_ROOT")"
    pkill -KILL -f "qemu-system.*$E2E_ROOT" 2>/dev/null
  fi
}
