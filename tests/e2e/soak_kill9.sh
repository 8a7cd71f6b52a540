# Soak (a long test, not in CI): builds, pulls and `store gc` runs killed with SIGKILL at random
# moments, again and again, into one store. After every kill `imgbake store check` must pass;
# at the end `store gc` must reclaim every temporary file (tmp/ empty) and the store must check
# clean. Run it with `cmake --build build-asan --target imgbake_soak` (SOAK_ROUNDS rounds,
# default 60; SOAK_SEED makes the moments repeatable) or directly:
#   SOAK_ROUNDS=200 IMGBAKE=build-asan/imgbake bash tests/e2e/soak_kill9.sh
# docs/testing.md, "The kill -9 soak".
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/registry_lib.sh"
require_tools bwrap busybox docker-registry python3

ROUNDS=${SOAK_ROUNDS:-60}
RANDOM=${SOAK_SEED:-$$}

# A rootfs build whose every round makes new layers (a random 8 MiB file and the round number),
# so that each kill may land in a layer write, a blob's adoption or the commit.
write_soak_template() {
  local root="$TEST_DIR/bb-root"
  mkdir -p "$root/bin" "$root/tmp" "$root/proc" "$root/dev" "$root/etc"
  cp /bin/busybox "$root/bin/busybox"
  local c
  for c in sh cat echo dd head rm mkdir; do ln -sf busybox "$root/bin/$c"; done
  tar -C "$root" -czf bb.tar.gz .
  write_file soak.json <<'EOF'
{
  "variables": {"round": "0"},
  "builders": [{"type": "rootfs", "source": "tar:bb.tar.gz"}],
  "provisioners": [
    {"type": "shell", "inline": ["head -c 8388608 /dev/urandom > /etc/noise", "echo {{user `round`}} > /etc/round"]},
    {"type": "shell", "inline": ["head -c 4194304 /dev/urandom > /etc/more"]}
  ],
  "imgbake": {"image": "soak"}
}
EOF
}

# run_killed SECONDS_MAX CMD...: runs CMD, kills it with SIGKILL after a random moment in
# [0, SECONDS_MAX) seconds unless it ended first; prints "killed" or "ended".
run_killed() {
  local max_ms=$(($1 * 1000)) pid delay
  shift
  "$IMGBAKE" "$@" >>"$TEST_DIR/soak.out" 2>&1 </dev/null &
  pid=$!
  delay=$((RANDOM * 32768 + RANDOM))
  delay=$((delay % max_ms))
  local deadline=$(($(now_ms) + delay))
  while pid_alive "$pid" && [ "$(now_ms)" -lt "$deadline" ]; do sleep 0.02; done
  if pid_alive "$pid"; then
    kill -KILL "$pid"
    wait "$pid" 2>/dev/null
    echo killed
  else
    wait "$pid" 2>/dev/null
    echo ended
  fi
}

test_kill9_soak() {
  export IMGBAKE_HOME="$TEST_DIR/store"
  export IMGBAKE_CONFIG_HOME="$TEST_DIR/config"
  write_soak_template
  # The image that pulls fetch: built once in a second store and pushed to a local registry.
  start_registry "$TEST_DIR/registry" || return
  local reg="127.0.0.1:$REGISTRY_PORT"
  (
    export IMGBAKE_HOME="$TEST_DIR/origin"
    "$IMGBAKE" build soak.json >/dev/null 2>&1 &&
      "$IMGBAKE" push soak:1 "$reg/soak/app:1" --insecure-registry "$reg" >/dev/null 2>&1
  ) || {
    fail "cannot build and push the image to pull"
    return
  }
  # How long an undisturbed build takes: kills land anywhere in [0, twice that).
  local started build_s
  started=$(now_ms)
  expect_exit 0 imgbake build -var round=0 soak.json || return
  build_s=$((($(now_ms) - started) * 2 / 1000 + 1))
  echo "  an undisturbed build takes ~$((build_s / 2)) s; $ROUNDS rounds follow"

  local round kind outcome killed=0 problems=0 builds=0 pulls=0 gcs=0
  for round in $(seq 1 "$ROUNDS"); do
    case $((RANDOM % 3)) in
      0) kind=build; outcome=$(run_killed "$build_s" build -var "round=$round" soak.json) ;;
      1)
        kind=pull
        "$IMGBAKE" rm "pulled:1" >/dev/null 2>&1
        "$IMGBAKE" store gc >/dev/null 2>&1  # so that the pull writes its blobs again
        outcome=$(run_killed 4 pull "$reg/soak/app:1" --insecure-registry "$reg" --allow-untrusted --name pulled \
          --version 1)
        ;;
      2) kind=gc; outcome=$(run_killed 2 store gc) ;;
    esac
    [ "$outcome" = killed ] && killed=$((killed + 1))
    case $kind in build) builds=$((builds + 1)) ;; pull) pulls=$((pulls + 1)) ;; gc) gcs=$((gcs + 1)) ;; esac
    if ! "$IMGBAKE" store check >"$TEST_DIR/check.out" 2>&1; then
      problems=$((problems + 1))
      fail "round $round: store check fails after a $kind was $outcome" "exit 0" "$(grep -m3 PROBLEM "$TEST_DIR/check.out")"
    fi
  done
  echo "  $ROUNDS rounds, $killed killed mid-run ($builds builds, $pulls pulls, $gcs gcs), $problems failed checks"
  pass
  expect_exit 0 imgbake store gc
  local left
  left=$(find "$IMGBAKE_HOME/tmp" -mindepth 1 2>/dev/null | head -n 5)
  expect_eq "store gc reclaims every temporary file" "" "$left"
  expect_exit 0 imgbake store check
  expect_no_match "$STDOUT" '^PROBLEM'
}

run_test kill9_soak test_kill9_soak
summary
