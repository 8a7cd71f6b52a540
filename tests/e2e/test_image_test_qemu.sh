#!/usr/bin/env bash
# End-to-end: `imgbake test` boots a stored disk image (the qemu builder's, from the tiny test
# guest) on a copy-on-write overlay and runs its checks over SSH: files, a service, ports, a
# kernel parameter, a script, testinfra and serverspec. A failing image is stopped at a gated
# channel with the failed check named; the fixed template passes `build --test` and is promoted;
# the stored disk never changes; Ctrl-C leaves no qemu and no temporary directory.
. "$(dirname "$0")/lib.sh"

. "$(dirname "$0")/qemu_lib.sh"

require_tools xmllint sha256sum

# One store for the suite: the images are built by the first test and reused by the others.
export IMGBAKE_HOME="$E2E_ROOT/store"
export IMGBAKE_CONFIG_HOME="$E2E_ROOT/config"

# The instances' directories (overlay, QMP socket, logs) are gone: each one the output named (in
# $TMPDIR, or in /tmp when that path is too long for the socket), and the store's tmp/ is empty.
expect_no_work_dirs() {
  local dir left=""
  for dir in $(grep -o 'unix:[^ ]*/qmp.sock' "$STDOUT" | sed 's|^unix:||; s|/qmp.sock$||' | sort -u); do
    [ -e "$dir" ] && left="$left $dir"
  done
  expect_eq "the test instances' directories left" "" "$left"
  expect_eq "imgbake-qemu-* temporary directories left in $TMPDIR" "" \
    "$(ls -A "$TMPDIR" 2>/dev/null | grep '^imgbake-qemu-' || true)"
  expect_eq "the store's tmp/ after the test" "" "$(ls -A "$IMGBAKE_HOME/tmp" 2>/dev/null)"
}

# The example template and its test files, and a broken copy of it: its greeting goes to /tmp,
# so the "greeting" check (and the testinfra and serverspec tests that read it) fail.
templates() {
  cp -r "$SRC/templates/tests" . && cp "$SRC/templates/qemu-disk-tested.json" good.json
  python3 - <<'PY' >bad.json
import json
t = json.load(open("good.json"))
t["provisioners"][0]["inline"][1] = "echo \"$GREETING\" > /tmp/greeting"
print(json.dumps(t, indent=1))
PY
}

# tiny-disk:1, made by the first test (or here, when it ran alone).
some_image() {
  "$IMGBAKE" show tiny-disk:1 >/dev/null 2>&1 || expect_exit 0 imgbake build -var "dir=$GUEST" good.json
}

have_runners() {
  /usr/bin/python3 -c 'import testinfra' 2>/dev/null && command -v rspec >/dev/null &&
    ruby -e 'require "serverspec"' 2>/dev/null
}

# The disk blob of an image in the store.
disk_blob() {
  local digest
  digest=$("$IMGBAKE" show "$1" --output json | python3 -c '
import json, sys
print([l for l in json.load(sys.stdin)["manifest"]["layers"] if "disk" in l["mediaType"]][0]["digest"])')
  echo "$IMGBAKE_HOME/blobs/sha256/${digest#sha256:}"
}

test_failing_image_is_stopped_and_the_fixed_one_promoted() {
  have_runners || { skip "python3-testinfra and ruby-serverspec are not installed (tools/setup.sh)"; return; }
  templates
  expect_exit 0 imgbake policy set production --require-test smoke --reason "release gate" || return
  expect_exit 0 imgbake build -var "dir=$GUEST" bad.json || { e2e_show_file stdout "$STDOUT"; return; }
  expect_contains "$STDOUT" "committed tiny-disk:1"
  local blob before
  blob=$(disk_blob tiny-disk:1)
  before=$(sha256sum <"$blob")
  expect_exit 1 imgbake test tiny-disk:1 --template bad.json --junit bad.xml
  expect_match "$STDOUT" '^==> test tiny-disk:1: suite smoke, 9 check\(s\), on a copy-on-write overlay of its disk booted under qemu$'
  expect_match "$STDOUT" '^    FAIL  greeting \([0-9.]+s\): it does not exist$'
  expect_match "$STDOUT" '^    PASS  motd '
  expect_match "$STDOUT" '^    PASS  sshd running '
  expect_match "$STDOUT" '^    PASS  ssh port '
  expect_match "$STDOUT" '^    PASS  no telnet '
  expect_match "$STDOUT" '^    PASS  hostname '
  expect_match "$STDOUT" '^    FAIL  demo script \([0-9.]+s\): exit status 1, not 0 \(.*greeting'
  expect_match "$STDOUT" '^    FAIL  testinfra: test_tiny_disk.test_greeting_is_baked '
  expect_match "$STDOUT" '^    PASS  testinfra: test_tiny_disk.test_kernel_runs '
  expect_match "$STDOUT" '^    PASS  serverspec: Port "22" is expected to be listening '
  expect_match "$STDOUT" '^    FAIL  serverspec: File "/etc/imgbake-demo/greeting" is expected to be file '
  expect_match "$STDOUT" '^test tiny-disk:1 \(smoke\): 5 of 12 checks failed in [0-9.]+s; JUnit report: bad.xml; signed result recorded'
  expect_no_qemu
  expect_no_work_dirs
  expect_exit 0 xmllint --noout bad.xml
  # The stored disk is the overlay's backing file, never written.
  expect_eq "the stored disk's sha256 after the test" "$before" "$(sha256sum <"$blob")"
  # The gate names the failed checks.
  expect_exit 1 imgbake promote tiny-disk:1 --channel production
  expect_contains "$STDERR" "refusing to promote tiny-disk:1: channel 'production' requires passing test suite(s) smoke: test suite 'smoke' failed on "
  expect_contains "$STDERR" "(failed: greeting, demo script, testinfra: test_tiny_disk.test_greeting_is_baked"

  # The fixed template: build --test prints the table, writes the JUnit report, and the image is
  # promoted.
  expect_exit 0 imgbake build -force --test --junit good.xml -var "dir=$GUEST" good.json ||
    { e2e_show_file stdout "$STDOUT"; return; }
  expect_match "$STDOUT" '^    PASS  greeting '
  expect_match "$STDOUT" '^    PASS  testinfra: test_tiny_disk.test_greeting_is_baked '
  expect_match "$STDOUT" '^test tiny-disk:2 \(smoke\): all 12 checks passed in [0-9.]+s; JUnit report: good.xml; signed result recorded'
  expect_no_match "$STDOUT" 'FAIL'
  expect_no_work_dirs
  py_check "the JUnit report of build --test lists the 12 checks, none failed" '
import xml.etree.ElementTree as ET
suite = ET.parse("good.xml").getroot().find("testsuite")
assert suite.get("tests") == "12" and suite.get("failures") == "0", suite.attrib
kinds = sorted({c.get("classname") for c in suite.findall("testcase")})
assert kinds == ["imgbake.smoke." + k for k in ["file", "kernel_param", "port", "script", "serverspec", "service", "testinfra"]], kinds
'
  expect_exit 0 imgbake promote tiny-disk:2 --channel production
  expect_exit 0 imgbake show tiny-disk:2
  expect_match "$STDOUT" '^  smoke: passed on [0-9T:Z-]+  sha256:'
  expect_exit 0 imgbake images tiny-disk
  expect_match "$STDOUT" '^tiny-disk:1 .*tests smoke: FAILED$'
  expect_match "$STDOUT" '^tiny-disk:2 .*production  tests smoke: passed$'
  expect_exit 0 imgbake verify tiny-disk:2
  expect_no_qemu
  expect_no_work_dirs
}

# A spec's boot settings replace what the image recorded: a kernel that is not there is refused
# before qemu starts, naming the setting.
test_boot_settings_from_the_spec() {
  templates && some_image || return
  write_file nokernel.json <<'JSON'
{"suite": "boot", "boot": {"kernel": "no-such-vmlinuz", "memory": 256},
 "checks": [{"name": "up", "command": "true"}]}
JSON
  expect_exit 2 imgbake test tiny-disk:1 --spec nokernel.json
  expect_contains "$STDERR" "boot: no kernel $TEST_DIR/no-such-vmlinuz on this host"
  # The spec's memory; and a page served by the guest (busybox httpd, started by a check: the tiny
  # guest's init starts only dropbear), fetched inside it and from the host through a forwarded port.
  write_file mem.json <<'JSON'
{"suite": "boot", "boot": {"memory": 256},
 "checks": [{"name": "256 MiB", "command": "awk \"/MemTotal/ {print int(\\$2 / 1024)}\" /proc/meminfo", "stdout_matches": "^2[0-9][0-9]$"},
   {"name": "start httpd", "command": "mkdir -p /tmp/www && echo served by the guest > /tmp/www/index.html && httpd -p 8080 -h /tmp/www"},
   {"name": "page in the guest", "http": "http://127.0.0.1:8080/", "body_contains": "served by the guest"},
   {"name": "page from the host", "http": "http://localhost:8080/", "from": "host", "body_contains": "served by the guest"},
   {"name": "missing from the host", "http": "http://localhost:8080/nope", "from": "host", "status": 200}]}
JSON
  expect_exit 1 imgbake test tiny-disk:1 --spec mem.json --no-record
  expect_contains "$STDOUT" "-m 256M"
  expect_match "$STDOUT" '^    PASS  256 MiB '
  expect_match "$STDOUT" '^    PASS  page in the guest '
  expect_match "$STDOUT" '^    test: forwarding 127.0.0.1:[0-9]+ to the guest.s port 8080$'
  expect_match "$STDOUT" '^    PASS  page from the host '
  expect_match "$STDOUT" '^    FAIL  missing from the host \([0-9.]+s\): status 404, not 200$'
  expect_no_qemu
  expect_no_work_dirs
}

test_ctrl_c_during_a_test_leaves_nothing() {
  templates && some_image || return
  write_file slow.json <<'JSON'
{"suite": "slow", "checks": [{"name": "sleeps", "command": "echo sleeping; sleep 120", "timeout": "5m"}]}
JSON
  interrupt_when "connected to SSH" 120 test tiny-disk:1 --spec slow.json || return
  local pid=$INTERRUPTED_PID
  E2E_CHECKS=$((E2E_CHECKS + 1))
  wait_for 10 pid_gone "$pid" || fail "imgbake exits within 10 s of Ctrl-C" "exit" "still running"
  local rc=0
  wait "$pid" || rc=$?
  expect_eq "exit status after Ctrl-C" 130 "$rc"
  expect_not_contains "$STDOUT" "checks passed"
  expect_no_qemu
  expect_no_work_dirs
  expect_exit 0 imgbake store check
}

run_test failing_image_is_stopped_and_the_fixed_one_promoted test_failing_image_is_stopped_and_the_fixed_one_promoted
run_test boot_settings_from_the_spec test_boot_settings_from_the_spec
run_test ctrl_c_during_a_test_leaves_nothing test_ctrl_c_during_a_test_leaves_nothing
summary
