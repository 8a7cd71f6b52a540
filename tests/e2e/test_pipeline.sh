# End-to-end: the build pipeline: parallel builds, selection, provisioner options,
# failures and -on-error, post-processor chains.
. "$(dirname "$0")/lib.sh"

elapsed_ms() { echo $(($(now_ms) - $1)); }

# ---------------------------------------------------------------------------
# Parallel builds

test_parallel_builds() {
  # Each build's provisioner waits (up to 10 s) until the other build has
  # started: this succeeds only when both run at the same time.
  write_file par.json <<'EOF'
{
  "builders": [
    {"type": "file", "name": "a", "content": "A\n", "target": "out/a.txt"},
    {"type": "file", "name": "b", "content": "B\n", "target": "out/b.txt"}
  ],
  "provisioners": [
    {"type": "shell-local", "inline": [
      "touch out/started.$PACKER_BUILD_NAME",
      "other=a; [ $PACKER_BUILD_NAME = a ] && other=b",
      "i=0; while [ ! -e out/started.$other ]; do i=$((i+1)); if [ $i -gt 200 ]; then echo \"$other never started while $PACKER_BUILD_NAME ran\"; exit 9; fi; sleep 0.05; done",
      "echo \"$PACKER_BUILD_NAME saw $other running\""
    ]}
  ]
}
EOF
  expect_exit 0 imgbake build par.json || return
  expect_file_content out/a.txt "A"
  expect_file_content out/b.txt "B"
  expect_contains "$STDOUT" "a: a saw b running"
  expect_contains "$STDOUT" "b: b saw a running"
  expect_match "$STDOUT" '^a +ok '
  expect_match "$STDOUT" '^b +ok '
  expect_match "$STDOUT" '^--> a: artifact file: sha256:'
  expect_match "$STDOUT" '^--> b: artifact file: sha256:'
}

test_parallel_builds_one() {
  # With -parallel-builds=1 both builds still run, one after the other. Each
  # provisioner waits (up to 2 s) for the other build to start; if it does, the
  # other must already have finished.
  write_file ser.json <<'EOF'
{
  "builders": [
    {"type": "file", "name": "a", "content": "A\n", "target": "out/a.txt"},
    {"type": "file", "name": "b", "content": "B\n", "target": "out/b.txt"}
  ],
  "provisioners": [
    {"type": "shell-local", "inline": [
      "touch out/started.$PACKER_BUILD_NAME",
      "other=a; [ $PACKER_BUILD_NAME = a ] && other=b",
      "i=0; while [ ! -e out/started.$other ] && [ $i -lt 40 ]; do i=$((i+1)); sleep 0.05; done",
      "if [ -e out/started.$other ] && [ ! -e out/ended.$other ]; then echo \"OVERLAP: $other runs with $PACKER_BUILD_NAME\"; exit 9; fi",
      "touch out/ended.$PACKER_BUILD_NAME"
    ]}
  ]
}
EOF
  expect_exit 0 imgbake build -parallel-builds=1 ser.json || return
  expect_not_contains "$STDOUT" "OVERLAP"
  expect_file_content out/a.txt "A"
  expect_file_content out/b.txt "B"
  expect_file out/ended.a
  expect_file out/ended.b
  expect_match "$STDOUT" '^a +ok '
  expect_match "$STDOUT" '^b +ok '
}

# ---------------------------------------------------------------------------
# Selection

write_three_builds() {
  write_file three.json <<'EOF'
{
  "builders": [
    {"type": "file", "name": "web-1", "content": "w1\n", "target": "out/web-1.txt"},
    {"type": "file", "name": "web-2", "content": "w2\n", "target": "out/web-2.txt"},
    {"type": "file", "name": "db", "content": "db\n", "target": "out/db.txt"}
  ]
}
EOF
}

built() { ls out 2>/dev/null | sed 's/\.txt$//' | sort | tr '\n' ' ' | sed 's/ $//'; }

test_only_except_globs() {
  write_three_builds
  expect_exit 0 imgbake build '-only=web-*' three.json
  expect_eq "-only=web-*" "web-1 web-2" "$(built)"
  rm -rf out
  expect_exit 0 imgbake build '-except=web-*' three.json
  expect_eq "-except=web-*" "db" "$(built)"
  rm -rf out
  expect_exit 0 imgbake build '-only=web-?' '-except=*-2' three.json
  expect_eq "-only=web-? -except=*-2" "web-1" "$(built)"
  rm -rf out
  expect_exit 0 imgbake build '-only=db,web-2' three.json
  expect_eq "-only=db,web-2" "db web-2" "$(built)"
  rm -rf out
  expect_exit 0 imgbake build '-only=*' three.json
  expect_eq "-only=*" "db web-1 web-2" "$(built)"
  # The summary lists only the selected builds.
  expect_match "$STDOUT" '^web-1 +ok'
  rm -rf out
  expect_exit 0 imgbake build '-only=d*' three.json
  expect_no_match "$STDOUT" '^web-'
  expect_match "$STDOUT" '^db +ok'
}

# ---------------------------------------------------------------------------
# Provisioner options

test_provisioner_only_except_override() {
  write_file prov.json <<'EOF'
{
  "builders": [
    {"type": "file", "name": "a", "content": "A\n", "target": "out/a.txt"},
    {"type": "file", "name": "b", "content": "B\n", "target": "out/b.txt"}
  ],
  "provisioners": [
    {"type": "shell-local", "only": ["a"], "inline": ["echo only-a >> out/$PACKER_BUILD_NAME.txt"]},
    {"type": "shell-local", "except": ["a"], "inline": ["echo except-a >> out/$PACKER_BUILD_NAME.txt"]},
    {"type": "shell-local", "inline": ["echo base >> out/$PACKER_BUILD_NAME.txt"],
     "override": {"b": {"inline": ["echo overridden >> out/$PACKER_BUILD_NAME.txt"]}}},
    {"type": "shell-local", "environment_vars": ["V=base"], "inline": ["echo v=$V >> out/$PACKER_BUILD_NAME.txt"],
     "override": {"a": {"environment_vars": ["V=for-a"]}}}
  ]
}
EOF
  expect_exit 0 imgbake build prov.json || return
  expect_file_content out/a.txt "$(printf 'A\nonly-a\nbase\nv=for-a')"
  expect_file_content out/b.txt "$(printf 'B\nexcept-a\noverridden\nv=base')"
  # The step names keep the provisioner's position in the template.
  expect_contains "$STDOUT" "==> a: provisioner 1 (shell-local)"
  expect_not_contains "$STDOUT" "==> b: provisioner 1 (shell-local)"
  expect_contains "$STDOUT" "==> b: provisioner 2 (shell-local)"
  expect_not_contains "$STDOUT" "==> a: provisioner 2 (shell-local)"
}

test_pause_before() {
  write_file pause.json <<'EOF'
{
  "builders": [{"type": "null", "name": "p"}],
  "provisioners": [
    {"type": "shell-local", "inline": ["date +%s%N > t1"]},
    {"type": "shell-local", "pause_before": "2s", "inline": ["date +%s%N > t2"]}
  ]
}
EOF
  expect_exit 0 imgbake build pause.json || return
  expect_match "$STDOUT" "p: pausing 2(\.0+)?s before this provisioner"
  local t1 t2
  t1=$(cat t1)
  t2=$(cat t2)
  local gap=$(((t2 - t1) / 1000000))
  E2E_CHECKS=$((E2E_CHECKS + 1))
  if [ "$gap" -lt 1950 ]; then
    fail "pause_before: 2s between the provisioners" ">= 1950 ms" "$gap ms"
  fi
}

test_max_retries() {
  # Fails on the first attempt, succeeds on the second (a counter file).
  write_file retry.json <<'EOF'
{
  "builders": [{"type": "null", "name": "r"}],
  "provisioners": [
    {"type": "shell-local", "max_retries": 2, "inline": [
      "n=$(cat count 2>/dev/null || echo 0); n=$((n+1)); echo $n > count",
      "echo attempt $n",
      "[ $n -ge 2 ] || exit 4"
    ]}
  ]
}
EOF
  expect_exit 0 imgbake build retry.json || return
  expect_file_content count "2"
  expect_contains "$STDOUT" "r: attempt 1"
  expect_contains "$STDOUT" "r: attempt 2"
  expect_not_contains "$STDOUT" "r: attempt 3"
  expect_match "$STDERR" 'provisioner 1 \(shell-local\) failed .*status 4.*retrying'
  expect_match "$STDOUT" '^r +ok '
  # Without retries the same script fails after one attempt.
  rm -f count
  sed 's/"max_retries": 2, //' retry.json >noretry.json
  expect_exit 1 imgbake build noretry.json
  expect_file_content count "1"
  # Retries run out: max_retries 1 means two attempts in all.
  rm -f count
  sed 's/"max_retries": 2/"max_retries": 1/; s/-ge 2/-ge 5/' retry.json >exhaust.json
  expect_exit 1 imgbake build exhaust.json
  expect_file_content count "2"
  expect_contains "$STDERR" "status 4"
}

test_timeout() {
  write_file slow.json <<'EOF'
{
  "builders": [{"type": "null", "name": "slow"}],
  "provisioners": [
    {"type": "shell-local", "timeout": "1s", "inline": ["echo $$ > sleeper.pid", "exec sleep 60"]},
    {"type": "shell-local", "inline": ["touch second-ran"]}
  ]
}
EOF
  local t0
  t0=$(now_ms)
  expect_exit 1 imgbake build slow.json
  local took
  took=$(elapsed_ms "$t0")
  E2E_CHECKS=$((E2E_CHECKS + 1))
  if [ "$took" -gt 10000 ]; then
    fail "a 1s timeout stops the step promptly" "< 10000 ms" "$took ms"
  fi
  expect_match "$STDERR" 'provisioner 1 \(shell-local\).*timed out'
  expect_no_file second-ran
  expect_file sleeper.pid && {
    E2E_CHECKS=$((E2E_CHECKS + 1))
    wait_for 5 pid_gone "$(cat sleeper.pid)" || fail "the timed-out command is killed" "pid $(cat sleeper.pid) gone" "still running"
  }
  expect_match "$STDOUT" '^slow +failed '
  expect_no_temp_scripts
}

test_failing_step() {
  write_file fail.json <<'EOF'
{
  "builders": [{"type": "file", "name": "f", "content": "F\n", "target": "out/f.txt"}],
  "provisioners": [
    {"type": "shell-local", "inline": ["echo first"]},
    {"type": "shell-local", "inline": ["echo about to fail", "exit 3"]},
    {"type": "shell-local", "inline": ["touch third-ran"]}
  ],
  "post-processors": [{"type": "shell-local", "inline": ["touch pp-ran"]}]
}
EOF
  expect_exit 1 imgbake build fail.json
  expect_contains "$STDERR" "f: FAILED: provisioner 2 (shell-local)"
  expect_match "$STDERR" "error: f: step 'provisioner 2 \(shell-local\)': script exited with status 3"
  expect_match "$STDERR" '^==> f: build failed after .*provisioner 2 \(shell-local\)'
  expect_match "$STDOUT" '^f +failed '
  expect_no_file third-ran
  expect_no_file pp-ran
  expect_not_contains "$STDOUT" "artifact file:"

  # valid_exit_codes accepts 3.
  sed 's/"inline": \["echo about to fail", "exit 3"\]/"valid_exit_codes": [0, 3], "inline": ["echo about to fail", "exit 3"]/' \
    fail.json >ok3.json
  expect_contains ok3.json '"valid_exit_codes": [0, 3]' || return
  expect_exit 0 imgbake build ok3.json
  expect_file third-ran
  expect_file pp-ran
  expect_match "$STDOUT" '^f +ok '
  # ...but then 0 is only accepted when listed.
  rm -f third-ran pp-ran
  sed 's/"inline": \["echo first"\]/"valid_exit_codes": [3], "inline": ["echo first"]/' ok3.json >only3.json
  expect_exit 1 imgbake build only3.json
  expect_contains "$STDERR" "status 0 (valid: 3)"
  expect_no_temp_scripts
}

# ---------------------------------------------------------------------------
# error-cleanup-provisioner and -on-error

write_cleanup_template() {
  # $1: the exit status of the provisioner.
  write_file cleanup.json <<EOF
{
  "builders": [{"type": "file", "name": "c", "content": "C\n", "target": "out/c.txt"}],
  "provisioners": [{"type": "shell-local", "inline": ["exit $1"]}],
  "error-cleanup-provisioner": {"type": "shell-local", "inline": ["echo \$PACKER_BUILD_NAME > cleanup-ran"]}
}
EOF
}

test_error_cleanup_provisioner() {
  write_cleanup_template 0
  expect_exit 0 imgbake build cleanup.json
  expect_no_file cleanup-ran

  write_cleanup_template 1
  expect_exit 1 imgbake build cleanup.json
  expect_file_content cleanup-ran "c"
  expect_contains "$STDOUT" "error-cleanup-provisioner (shell-local)"

  rm -f cleanup-ran
  expect_exit 1 imgbake build -on-error=cleanup cleanup.json
  expect_file_content cleanup-ran "c"

  rm -f cleanup-ran
  expect_exit 1 imgbake build -on-error=abort cleanup.json
  expect_no_file cleanup-ran
  expect_contains "$STDERR" "abort"

  rm -f cleanup-ran
  expect_exit 1 imgbake build -on-error=run-cleanup-provisioner cleanup.json
  expect_file_content cleanup-ran "c"

  # A failure before provisioning (the builder's own step) does not run it.
  rm -f cleanup-ran
  echo "not a directory" >blocker
  sed 's#"target": "out/c.txt"#"target": "blocker/c.txt"#' cleanup.json >early.json
  expect_exit 1 imgbake build early.json
  expect_no_file cleanup-ran
  expect_no_temp_scripts
}

# ---------------------------------------------------------------------------
# Post-processors

test_keep_input_artifact() {
  # A post-processor with keep_input_artifact false: the builder's file goes.
  write_file drop.json <<'EOF'
{
  "builders": [{"type": "file", "name": "k", "content": "K\n", "target": "out/k.txt"}],
  "post-processors": [
    {"type": "shell-local", "keep_input_artifact": false, "inline": ["cp $IMGBAKE_ARTIFACT_FILES copy.txt"]}
  ]
}
EOF
  expect_exit 0 imgbake build drop.json || return
  expect_file_content copy.txt "K"
  expect_no_file out/k.txt
  expect_contains "$STDOUT" "deleting the builder's artifact"

  # keep_input_artifact true keeps it.
  rm -rf out copy.txt
  sed 's/"keep_input_artifact": false/"keep_input_artifact": true/' drop.json >keep.json
  expect_exit 0 imgbake build keep.json
  expect_file_content out/k.txt "K"

  # The manifest post-processor always keeps its input, even when told not to.
  write_file manifest.json <<'EOF'
{
  "builders": [{"type": "file", "name": "k", "content": "K\n", "target": "out/k.txt"}],
  "post-processors": [
    {"type": "manifest", "output": "out/manifest.json", "keep_input_artifact": false}
  ]
}
EOF
  rm -rf out
  expect_exit 0 imgbake build manifest.json
  expect_file_content out/k.txt "K"
  expect_contains out/manifest.json '"name": "out/k.txt"'

  # Two chains: one drops its input, a manifest chain keeps it: the file stays.
  write_file twochains.json <<'EOF'
{
  "builders": [{"type": "file", "name": "k", "content": "K\n", "target": "out/k.txt"}],
  "post-processors": [
    {"type": "shell-local", "keep_input_artifact": false, "inline": ["true"]},
    {"type": "manifest", "output": "out/manifest.json"}
  ]
}
EOF
  rm -rf out
  expect_exit 0 imgbake build twochains.json
  expect_file_content out/k.txt "K"
}

test_chain() {
  # In a chain, each post-processor gets the previous one's artifact.
  write_file chain.json <<'EOF'
{
  "builders": [{"type": "file", "name": "ch", "content": "CH\n", "target": "out/ch.txt"}],
  "post-processors": [
    [
      {"type": "checksum", "checksum_types": ["sha256", "md5"], "output": "out/{{.BuildName}}.{{.ChecksumType}}"},
      {"type": "shell-local", "inline": ["echo \"$IMGBAKE_ARTIFACT_FILES\" > chained-input"]}
    ],
    {"type": "shell-local", "inline": ["echo \"$IMGBAKE_ARTIFACT_FILES\" > second-chain-input"]}
  ]
}
EOF
  expect_exit 0 imgbake build chain.json || return
  expect_file_content chained-input "out/ch.sha256 out/ch.md5"
  expect_file_content second-chain-input "out/ch.txt"
  expect_file_content out/ch.sha256 "$(sha256sum out/ch.txt | cut -d' ' -f1)	ch.txt"
  expect_file_content out/ch.md5 "$(md5sum out/ch.txt | cut -d' ' -f1)	ch.txt"
  # Post-processors run in template order.
  local order
  order=$(grep -oE '^==> ch: post-processor [0-9.]+' "$STDOUT" | cut -d' ' -f4 | tr '\n' ' ')
  expect_eq "post-processor order" "1.1 1.2 2.1 " "$order"
}

test_except_post_processor() {
  write_file ppx.json <<'EOF'
{
  "builders": [{"type": "file", "name": "x", "content": "X\n", "target": "out/x.txt"}],
  "post-processors": [
    {"type": "shell-local", "name": "notify", "inline": ["touch notified"]},
    {"type": "checksum", "name": "sums", "checksum_types": ["sha256"], "output": "out/x.sha256"}
  ]
}
EOF
  expect_exit 0 imgbake build -except=notify ppx.json || return
  expect_no_file notified
  expect_file out/x.sha256
  expect_file_content out/x.txt "X"
  expect_not_contains "$STDOUT" "post-processor 1.1 (shell-local)"
  rm -rf out notified
  expect_exit 0 imgbake build ppx.json
  expect_file notified
  expect_file out/x.sha256

  # Skipping the only post-processor keeps the builder's artifact (nothing
  # consumed it, so nothing may delete it).
  write_file only_pp.json <<'EOF'
{
  "builders": [{"type": "file", "name": "x", "content": "X\n", "target": "out/x.txt"}],
  "post-processors": [
    {"type": "shell-local", "name": "notify", "inline": ["touch notified"]}
  ]
}
EOF
  rm -rf out notified
  expect_exit 0 imgbake build -except=notify only_pp.json
  expect_no_file notified
  expect_file_content out/x.txt "X"
  expect_not_contains "$STDOUT" "deleting the builder's artifact"
  expect_match "$STDOUT" '^x +ok +[^ ]+ +x:[0-9]+ +file: sha256:'
}

test_post_processor_failure() {
  write_file ppfail.json <<'EOF'
{
  "builders": [{"type": "file", "name": "pf", "content": "PF\n", "target": "out/pf.txt"}],
  "post-processors": [
    [
      {"type": "shell-local", "inline": ["exit 6"]},
      {"type": "shell-local", "inline": ["touch after-failure"]}
    ]
  ]
}
EOF
  expect_exit 1 imgbake build ppfail.json
  expect_contains "$STDERR" "post-processor 1.1 (shell-local)"
  expect_contains "$STDERR" "status 6"
  expect_no_file after-failure
  expect_match "$STDOUT" '^pf +failed '
  # The builder's artifact is not deleted when post-processing failed.
  expect_file_content out/pf.txt "PF"
}

test_one_of_two_fails() {
  write_file mixed.json <<'EOF'
{
  "builders": [
    {"type": "file", "name": "good", "content": "G\n", "target": "out/good.txt"},
    {"type": "file", "name": "bad", "content": "B\n", "target": "out/bad.txt"}
  ],
  "provisioners": [
    {"type": "shell-local", "inline": ["[ $PACKER_BUILD_NAME = good ] || exit 2"]}
  ]
}
EOF
  expect_exit 1 imgbake build mixed.json
  expect_match "$STDOUT" '^good +ok +[^ ]+ +good:1 +file: sha256:'
  expect_match "$STDOUT" '^bad +failed '
  expect_file_content out/good.txt "G"
}

test_on_error_ask_without_terminal() {
  write_file ask.json <<'EOF'
{
  "builders": [{"type": "null", "name": "q"}],
  "provisioners": [{"type": "shell-local", "inline": ["exit 1"]}],
  "error-cleanup-provisioner": {"type": "shell-local", "inline": ["touch cleanup-ran"]}
}
EOF
  # No terminal to ask on: imgbake says so and cleans up instead of hanging.
  expect_exit 1 imgbake build -on-error=ask ask.json
  expect_contains "$STDERR" "needs a terminal"
  expect_file cleanup-ran
}

test_post_processor_only() {
  write_file pponly.json <<'EOF'
{
  "builders": [
    {"type": "file", "name": "a", "content": "A\n", "target": "out/a.txt"},
    {"type": "file", "name": "b", "content": "B\n", "target": "out/b.txt"}
  ],
  "post-processors": [
    {"type": "shell-local", "only": ["a"], "inline": ["touch pp-only.$PACKER_BUILD_NAME"]},
    {"type": "shell-local", "except": ["a"], "inline": ["touch pp-except.$PACKER_BUILD_NAME"]}
  ]
}
EOF
  expect_exit 0 imgbake build pponly.json || return
  expect_file pp-only.a
  expect_no_file pp-only.b
  expect_file pp-except.b
  expect_no_file pp-except.a
  expect_file_content out/a.txt "A"
  expect_file_content out/b.txt "B"
}

test_manifest_concurrent_runs() {
  # Several imgbake runs append to one manifest at the same time (a CI matrix
  # sharing a workspace): no entry may be lost.
  write_file m.json <<'EOF'
{
  "variables": {"run": "0"},
  "builders": [
    {"type": "file", "name": "b1", "content": "1\n", "target": "out/{{user `run`}}/1.txt"},
    {"type": "file", "name": "b2", "content": "2\n", "target": "out/{{user `run`}}/2.txt"},
    {"type": "file", "name": "b3", "content": "3\n", "target": "out/{{user `run`}}/3.txt"},
    {"type": "file", "name": "b4", "content": "4\n", "target": "out/{{user `run`}}/4.txt"}
  ],
  "post-processors": [{"type": "manifest", "output": "manifest.json"}]
}
EOF
  local r pids=() failed=0
  for r in 1 2 3 4 5 6; do
    timeout -k 5 120 "$IMGBAKE" build -var run=$r m.json >run$r.out 2>&1 &
    pids+=($!)
  done
  for r in "${pids[@]}"; do
    wait "$r" || failed=$((failed + 1))
  done
  expect_eq "concurrent runs that failed" "0" "$failed"
  py_check "manifest holds all 24 entries of 6 concurrent runs" '
import json, sys
d = json.load(open("manifest.json"))
b = d["builds"]
runs = {e["packer_run_uuid"] for e in b}
assert len(b) == 24, "want 24 entries (6 runs x 4 builds), got %d from %d runs" % (len(b), len(runs))
assert len(runs) == 6, runs
'
  expect_eq "manifest entries (packer_run_uuid lines) of 6 runs x 4 builds" "24" \
    "$(grep -c '"packer_run_uuid"' manifest.json 2>/dev/null)"
  expect_no_file manifest.json.lock
}

run_test parallel_builds test_parallel_builds
run_test one_of_two_fails test_one_of_two_fails
run_test on_error_ask_without_terminal test_on_error_ask_without_terminal
run_test post_processor_only test_post_processor_only
run_test manifest_concurrent_runs test_manifest_concurrent_runs
run_test parallel_builds_one test_parallel_builds_one
run_test only_except_globs test_only_except_globs
run_test provisioner_only_except_override test_provisioner_only_except_override
run_test pause_before test_pause_before
run_test max_retries test_max_retries
run_test timeout test_timeout
run_test failing_step test_failing_step
run_test error_cleanup_provisioner test_error_cleanup_provisioner
run_test keep_input_artifact test_keep_input_artifact
run_test chain test_chain
run_test except_post_processor test_except_post_processor
run_test post_processor_failure test_post_processor_failure
summary
