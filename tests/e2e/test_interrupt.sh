# End-to-end: Ctrl-C (SIGINT) and SIGTERM while a build runs: imgbake stops the
# running step, kills what it started, removes its temporary files, says so,
# and exits 128+signal promptly.
. "$(dirname "$0")/lib.sh"

# start_build TEMPLATE [ARGS...]: starts `imgbake build` in the background in its
# own process group (job control), with TMPDIR=$TEST_DIR/tmp. Sets BUILD_PID.
start_build() {
  mkdir -p "$TEST_DIR/tmp"
  set -m
  TMPDIR="$TEST_DIR/tmp" "$IMGBAKE" build "$@" >"$STDOUT" 2>"$STDERR" </dev/null &
  BUILD_PID=$!
  set +m
  E2E_BG_PIDS+=("$BUILD_PID")
}

# stop_build SIGNAL EXPECTED_STATUS: sends SIGINT to the build's process group
# (what a terminal does on Ctrl-C) or another signal to imgbake alone (what
# `kill PID` or a CI runner's cancel does), then expects imgbake to exit with
# EXPECTED_STATUS within 10 s. Sets BUILD_RC and STOP_MS.
stop_build() {
  local sig=$1 want=$2 t0
  t0=$(now_ms)
  if [ "$sig" = INT ]; then
    kill -INT -- "-$BUILD_PID" 2>/dev/null || kill -INT "$BUILD_PID"
  else
    kill -"$sig" "$BUILD_PID"
  fi
  E2E_CHECKS=$((E2E_CHECKS + 1))
  if ! wait_for 10 pid_gone "$BUILD_PID"; then
    fail "imgbake exits within 10 s of SIG$sig" "exit" "still running after 10 s"
    kill -KILL "$BUILD_PID" 2>/dev/null
  fi
  STOP_MS=$(($(now_ms) - t0))
  BUILD_RC=0
  wait "$BUILD_PID" || BUILD_RC=$?
  expect_eq "exit status after SIG$sig" "$want" "$BUILD_RC" || {
    e2e_show_file stdout "$STDOUT"
    e2e_show_file stderr "$STDERR"
  }
}

# await_file FILE: waits (up to 10 s) until FILE exists and is not empty.
await_file() {
  E2E_CHECKS=$((E2E_CHECKS + 1))
  if ! wait_for 10 file_nonempty "$1"; then
    fail "the build reaches the point where it writes $(basename "$1")" "$1 within 10 s" "not there"
    e2e_show_file stdout "$STDOUT"
    e2e_show_file stderr "$STDERR"
    return 1
  fi
}

# expect_pids_gone FILE...: every pid listed in the files has died (zombies
# count as dead: they only wait to be reaped). Killed processes need a moment,
# so this polls for up to 5 s.
expect_pids_gone() {
  local f pid
  for f in "$@"; do
    [ -s "$f" ] || { fail "pid file $f" "a pid" "missing or empty"; continue; }
    pid=$(cat "$f")
    E2E_CHECKS=$((E2E_CHECKS + 1))
    if ! wait_for 5 pid_gone "$pid"; then
      fail "process $pid ($(basename "$f")) is killed with the build" "gone" \
        "still running: $(ps -o pid=,stat=,args= -p "$pid" 2>/dev/null)"
      kill -KILL "$pid" 2>/dev/null
    fi
  done
}

# The builds here run with TMPDIR=$TEST_DIR/tmp (see start_build).
expect_build_left_no_temp_scripts() { expect_no_temp_scripts "$TEST_DIR/tmp"; }

expect_says_interrupted() {
  expect_match "$STDERR" '[Ii]nterrupt'
  expect_match "$STDERR" 'build cancelled'
  expect_match "$STDOUT" "^$1 +cancelled "
}

write_exec_template() {
  write_file exec.json <<EOF
{
  "builders": [{"type": "null", "name": "slow"}],
  "provisioners": [
    {"type": "shell-local", "inline": ["echo \$\$ > $TEST_DIR/child.pid", "exec sleep 300"]},
    {"type": "shell-local", "inline": ["touch $TEST_DIR/second-ran"]}
  ]
}
EOF
}

write_grandchild_template() {
  write_file grand.json <<EOF
{
  "builders": [{"type": "null", "name": "slow"}],
  "provisioners": [
    {"type": "shell-local", "inline": [
      "echo \$\$ > $TEST_DIR/child.pid",
      "sleep 300 &",
      "echo \$! > $TEST_DIR/grandchild.pid",
      "wait"
    ]}
  ]
}
EOF
}

test_sigint_exec_child() {
  write_exec_template
  start_build exec.json
  await_file "$TEST_DIR/child.pid" || return
  stop_build INT 130
  E2E_CHECKS=$((E2E_CHECKS + 1))
  [ "$STOP_MS" -le 10000 ] || fail "SIGINT handled promptly" "<= 10000 ms" "$STOP_MS ms"
  expect_pids_gone "$TEST_DIR/child.pid"
  expect_build_left_no_temp_scripts
  expect_says_interrupted slow
  expect_no_file "$TEST_DIR/second-ran"
}

test_sigint_grandchild() {
  write_grandchild_template
  start_build grand.json
  await_file "$TEST_DIR/grandchild.pid" || return
  stop_build INT 130
  expect_pids_gone "$TEST_DIR/child.pid" "$TEST_DIR/grandchild.pid"
  expect_build_left_no_temp_scripts
  expect_says_interrupted slow
}

test_sigterm_exec_child() {
  write_exec_template
  start_build exec.json
  await_file "$TEST_DIR/child.pid" || return
  stop_build TERM 143
  expect_pids_gone "$TEST_DIR/child.pid"
  expect_build_left_no_temp_scripts
  expect_match "$STDOUT" '^slow +cancelled '
  expect_no_file "$TEST_DIR/second-ran"
}

test_sigterm_grandchild() {
  write_grandchild_template
  start_build grand.json
  await_file "$TEST_DIR/grandchild.pid" || return
  stop_build TERM 143
  expect_pids_gone "$TEST_DIR/child.pid" "$TEST_DIR/grandchild.pid"
  expect_build_left_no_temp_scripts
}

test_sigint_json() {
  write_exec_template
  start_build --output json exec.json
  await_file "$TEST_DIR/child.pid" || return
  stop_build INT 130
  expect_pids_gone "$TEST_DIR/child.pid"
  py_check "JSON events of an interrupted build" '
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1])]
be = [e for e in ev if e["event"] == "build_end"]
assert be and be[0]["status"] == "cancelled", be
assert ev[-1]["event"] == "summary" and ev[-1]["builds"][0]["status"] == "cancelled", ev[-1]
' "$STDOUT"
}

test_cleanup_provisioner_does_not_hang() {
  # Interrupted during provisioning, with an error-cleanup-provisioner that
  # would block: the exit is still prompt and nothing is left running.
  write_file ecp.json <<EOF
{
  "builders": [{"type": "null", "name": "slow"}],
  "provisioners": [
    {"type": "shell-local", "inline": ["echo \$\$ > $TEST_DIR/child.pid", "exec sleep 300"]}
  ],
  "error-cleanup-provisioner": {"type": "shell-local", "inline": [
    "echo \$\$ > $TEST_DIR/cleanup.pid", "exec sleep 300"
  ]}
}
EOF
  start_build ecp.json
  await_file "$TEST_DIR/child.pid" || return
  stop_build INT 130
  E2E_CHECKS=$((E2E_CHECKS + 1))
  [ "$STOP_MS" -le 10000 ] || fail "exit with an error-cleanup-provisioner" "<= 10000 ms" "$STOP_MS ms"
  expect_pids_gone "$TEST_DIR/child.pid"
  if [ -s "$TEST_DIR/cleanup.pid" ]; then
    expect_pids_gone "$TEST_DIR/cleanup.pid"
  fi
  expect_build_left_no_temp_scripts
}

test_interrupt_during_cleanup_provisioner() {
  # The provisioner fails; the error-cleanup-provisioner then blocks; Ctrl-C
  # stops it too.
  write_file ecp2.json <<EOF
{
  "builders": [{"type": "null", "name": "slow"}],
  "provisioners": [{"type": "shell-local", "inline": ["exit 1"]}],
  "error-cleanup-provisioner": {"type": "shell-local", "inline": [
    "echo \$\$ > $TEST_DIR/cleanup.pid", "exec sleep 300"
  ]}
}
EOF
  start_build ecp2.json
  await_file "$TEST_DIR/cleanup.pid" || return
  stop_build INT 130
  expect_pids_gone "$TEST_DIR/cleanup.pid"
  expect_build_left_no_temp_scripts
}

test_sigint_during_pause() {
  write_file pause.json <<EOF
{
  "builders": [{"type": "null", "name": "p"}],
  "provisioners": [
    {"type": "shell-local", "inline": ["echo started > $TEST_DIR/first.txt"]},
    {"type": "shell-local", "pause_before": "5m", "inline": ["touch $TEST_DIR/after-pause"]}
  ]
}
EOF
  start_build pause.json
  await_file "$TEST_DIR/first.txt" || return
  E2E_CHECKS=$((E2E_CHECKS + 1))
  wait_for 10 grep -q "pausing" "$STDOUT" || fail "the build announces the pause" "pausing" "$(cat "$STDOUT")"
  stop_build INT 130
  expect_no_file "$TEST_DIR/after-pause"
  expect_match "$STDOUT" '^p +cancelled '
}

test_sigint_parallel_builds() {
  write_file par.json <<EOF
{
  "builders": [
    {"type": "null", "name": "a"},
    {"type": "null", "name": "b"}
  ],
  "provisioners": [
    {"type": "shell-local", "inline": ["echo \$\$ > $TEST_DIR/\$PACKER_BUILD_NAME.pid", "exec sleep 300"]}
  ]
}
EOF
  start_build par.json
  await_file "$TEST_DIR/a.pid" || return
  await_file "$TEST_DIR/b.pid" || return
  stop_build INT 130
  expect_pids_gone "$TEST_DIR/a.pid" "$TEST_DIR/b.pid"
  expect_build_left_no_temp_scripts
  expect_match "$STDOUT" '^a +cancelled '
  expect_match "$STDOUT" '^b +cancelled '
}

test_sigint_during_post_processor() {
  write_file pp.json <<EOF
{
  "builders": [{"type": "file", "name": "f", "content": "F\\n", "target": "out/f.txt"}],
  "post-processors": [
    [
      {"type": "shell-local", "inline": ["echo \$\$ > $TEST_DIR/pp.pid", "exec sleep 300"]},
      {"type": "shell-local", "inline": ["touch $TEST_DIR/second-pp-ran"]}
    ]
  ]
}
EOF
  start_build pp.json
  await_file "$TEST_DIR/pp.pid" || return
  stop_build INT 130
  expect_pids_gone "$TEST_DIR/pp.pid"
  expect_build_left_no_temp_scripts
  expect_no_file "$TEST_DIR/second-pp-ran"
  expect_says_interrupted f
  # An interrupt does not throw the builder's artifact away.
  expect_file_content out/f.txt "F"
}

test_sigint_queued_build_does_not_start() {
  # With -parallel-builds=1, Ctrl-C during the first build: the second never runs.
  write_file queue.json <<EOF
{
  "builders": [
    {"type": "null", "name": "a"},
    {"type": "file", "name": "b", "content": "b\\n", "target": "b.txt"}
  ],
  "provisioners": [
    {"type": "shell-local", "inline": ["echo \$\$ > $TEST_DIR/\$PACKER_BUILD_NAME.pid", "exec sleep 300"]}
  ]
}
EOF
  start_build -parallel-builds=1 queue.json
  await_file "$TEST_DIR/a.pid" || return
  stop_build INT 130
  expect_pids_gone "$TEST_DIR/a.pid"
  expect_no_file "$TEST_DIR/b.pid"
  expect_no_file b.txt
  expect_match "$STDOUT" '^a +cancelled '
  expect_no_match "$STDOUT" '^b +ok '
}

test_sigint_child_ignoring_term() {
  # A script that ignores SIGINT/SIGTERM (and so does its background job) is
  # still stopped: imgbake escalates to SIGKILL.
  write_file stubborn.json <<EOF
{
  "builders": [{"type": "null", "name": "stubborn"}],
  "provisioners": [
    {"type": "shell-local", "inline": [
      "trap '' INT TERM",
      "echo \$\$ > $TEST_DIR/child.pid",
      "sleep 300 &",
      "echo \$! > $TEST_DIR/grandchild.pid",
      "wait"
    ]}
  ]
}
EOF
  start_build stubborn.json
  await_file "$TEST_DIR/grandchild.pid" || return
  stop_build INT 130
  expect_pids_gone "$TEST_DIR/child.pid" "$TEST_DIR/grandchild.pid"
  expect_build_left_no_temp_scripts
  expect_says_interrupted stubborn
}

test_double_sigint() {
  # The first Ctrl-C starts stopping the step; the wrapper shell ignores SIGTERM
  # so that takes a while; a second Ctrl-C "exits at once". Exiting at once must
  # not leave the step's processes behind: they run in their own process group,
  # so the terminal's Ctrl-C never reaches them and nobody else would stop them.
  write_file double.json <<EOF
{
  "builders": [{"type": "null", "name": "stubborn"}],
  "provisioners": [
    {"type": "shell-local",
     "execute_command": ["/bin/sh", "-c", "trap '' INT TERM; {{.Vars}} {{.Script}}; true"],
     "inline": [
      "echo \$\$ > $TEST_DIR/child.pid",
      "sleep 300 &",
      "echo \$! > $TEST_DIR/grandchild.pid",
      "wait"
    ]}
  ]
}
EOF
  start_build double.json
  await_file "$TEST_DIR/grandchild.pid" || return
  kill -INT -- "-$BUILD_PID" 2>/dev/null
  E2E_CHECKS=$((E2E_CHECKS + 1))
  wait_for 10 grep -q "nterrupt" "$STDERR" || fail "the first SIGINT is acknowledged" "Interrupt received" "$(cat "$STDERR")"
  stop_build INT 130
  E2E_CHECKS=$((E2E_CHECKS + 1))
  [ "$STOP_MS" -le 2000 ] || fail "a second SIGINT exits at once" "<= 2000 ms" "$STOP_MS ms"
  expect_pids_gone "$TEST_DIR/child.pid" "$TEST_DIR/grandchild.pid"
  expect_build_left_no_temp_scripts
}

test_sigkill_leaves_a_private_dir_the_next_build_removes() {
  write_exec_template
  start_build exec.json
  await_file "$TEST_DIR/child.pid" || return
  # The running build's temporary files are in a directory of its own that only it can enter.
  local dir
  dir=$(ls -A "$TEST_DIR/tmp" | grep "^imgbake-$BUILD_PID-" || true)
  expect_eq "the build's private temporary directory" "imgbake-$BUILD_PID-" "${dir:0:$((${#BUILD_PID} + 9))}" || return
  expect_eq "its mode" "700" "$(stat -c %a "$TEST_DIR/tmp/$dir")"
  expect_eq "the shell-local script is in it" "1" "$(ls -A "$TEST_DIR/tmp/$dir" | grep -c '^imgbake-shell-local-')"
  kill -KILL "$BUILD_PID"
  wait "$BUILD_PID" 2>/dev/null
  kill -KILL "$(cat "$TEST_DIR/child.pid")" 2>/dev/null
  expect_eq "the killed build's directory is still there" "yes" "$([ -d "$TEST_DIR/tmp/$dir" ] && echo yes)"
  # The next build that makes its own directory removes the one the killed build left.
  write_file quick.json <<'EOF'
{"builders": [{"type": "null", "name": "quick"}], "provisioners": [{"type": "shell-local", "inline": ["true"]}]}
EOF
  TMPDIR="$TEST_DIR/tmp" expect_exit 0 imgbake build quick.json
  expect_no_file "$TEST_DIR/tmp/$dir"
  expect_build_left_no_temp_scripts
}

run_test sigint_exec_child test_sigint_exec_child
run_test sigkill_leaves_a_private_dir_the_next_build_removes test_sigkill_leaves_a_private_dir_the_next_build_removes
run_test sigint_grandchild test_sigint_grandchild
run_test sigterm_exec_child test_sigterm_exec_child
run_test sigterm_grandchild test_sigterm_grandchild
run_test sigint_json test_sigint_json
run_test cleanup_provisioner_does_not_hang test_cleanup_provisioner_does_not_hang
run_test interrupt_during_cleanup_provisioner test_interrupt_during_cleanup_provisioner
run_test sigint_during_pause test_sigint_during_pause
run_test sigint_parallel_builds test_sigint_parallel_builds
run_test sigint_during_post_processor test_sigint_during_post_processor
run_test sigint_queued_build_does_not_start test_sigint_queued_build_does_not_start
run_test sigint_child_ignoring_term test_sigint_child_ignoring_term
run_test double_sigint test_double_sigint
summary
