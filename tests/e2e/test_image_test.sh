# End-to-end: `imgbake test` runs a spec's checks against a stored container image in the
# sandbox, prints each result, writes a JUnit report that xmllint and a JUnit reader accept, and
# exits 1 when a check fails; the image is never changed.
. "$(dirname "$0")/lib.sh"
require_tools bwrap busybox tar python3 xmllint

fresh_store() {
  export IMGBAKE_HOME="$TEST_DIR/store"
  export IMGBAKE_CONFIG_HOME="$TEST_DIR/config"
}

# An image "web" from a busybox base, with accounts, a motd, a program and a stand-in for
# dpkg-query (busybox has no dpkg) that knows one package; its checks in imgbake.tests.
build_web() {
  fresh_store
  busybox_tarball bb.tar.gz stat sha256sum awk grep head || return 1
  write_file web.json <<'JSON'
{
  "builders": [{"type": "rootfs", "source": "tar:bb.tar.gz"}],
  "provisioners": [
    {"type": "shell", "inline": [
      "echo 'root:x:0:0:root:/root:/bin/sh' > /etc/passwd",
      "echo 'www:x:33:33:www:/var/www:/bin/false' >> /etc/passwd",
      "printf 'root:x:0:\\nwww:x:33:\\n' > /etc/group",
      "echo 'baked by imgbake' > /etc/motd && rm /etc/old.txt",
      "mkdir -p /usr/bin /var/www && chown 33:33 /var/www && chmod 0750 /var/www",
      "printf '#!/bin/sh\\necho Hello, world\\n' > /usr/bin/hello && chmod 0755 /usr/bin/hello",
      "printf '#!/bin/sh\\nfor p; do :; done\\n[ \"$p\" = hello ] && echo \"install ok installed|2.10-3\" && exit 0\\necho \"dpkg-query: no packages found matching $p\" >&2\\nexit 1\\n' > /usr/bin/dpkg-query",
      "chmod 0755 /usr/bin/dpkg-query"
    ]}
  ],
  "imgbake": {
    "image": "web",
    "tests": {"suite": "smoke", "checks": [
      {"name": "motd", "file": "/etc/motd", "contains": "baked", "type": "file", "mode": "0644", "owner": "root"},
      {"name": "hello runs", "command": "/usr/bin/hello", "exit_status": 0, "stdout_contains": "Hello"},
      {"name": "hello prints a greeting", "command": "hello", "stdout_matches": "^Hello, [a-z]+$"},
      {"name": "web root", "file": "/var/www", "type": "directory", "mode": "0750", "owner": "www", "group": "www"},
      {"name": "no leftovers", "file": "/etc/old.txt", "exists": false},
      {"name": "www user", "user": "www"},
      {"name": "no games group", "group": "games", "exists": false},
      {"name": "hello package", "package": "hello", "version": "2.10"},
      {"name": "no telnetd", "package": "telnetd", "installed": false}
    ]}
  }
}
JSON
  expect_exit 0 imgbake build web.json || return 1
}

test_passing_suite_and_junit_report() {
  build_web || return
  local digest
  digest=$("$IMGBAKE" show web:1 --output json | python3 -c 'import json,sys; print(json.load(sys.stdin)["digest"])')
  expect_exit 0 imgbake test web:1 --template web.json --junit report.xml || { e2e_show_file stderr "$STDERR"; return; }
  expect_match "$STDOUT" '^==> test web:1: suite smoke, 9 check\(s\)'
  expect_match "$STDOUT" '^    PASS  motd \([0-9.]+s\)$'
  expect_match "$STDOUT" '^    PASS  hello package '
  expect_match "$STDOUT" '^test web:1 \(smoke\): all 9 checks passed in [0-9.]+s; JUnit report: report.xml$'
  expect_no_match "$STDOUT" 'FAIL'
  # The report is well-formed XML, and a JUnit reader finds every check, none failed.
  expect_exit 0 xmllint --noout report.xml
  py_check "the JUnit report lists the 9 checks, none failed" '
import xml.etree.ElementTree as ET
root = ET.parse("report.xml").getroot()
assert root.tag == "testsuites" and root.get("tests") == "9" and root.get("failures") == "0", root.attrib
suite = root.find("testsuite")
assert suite.get("name") == "smoke" and suite.get("tests") == "9", suite.attrib
cases = suite.findall("testcase")
assert [c.get("name") for c in cases][:2] == ["motd", "hello runs"], [c.get("name") for c in cases]
assert all(c.find("failure") is None for c in cases)
assert cases[0].get("classname") == "imgbake.smoke.file", cases[0].attrib
props = {p.get("name"): p.get("value") for p in suite.find("properties")}
assert props["image"] == "web:1", props
'
  # Testing never changes the image, and leaves nothing behind.
  expect_eq "digest of web:1 after the test" "$digest" \
    "$("$IMGBAKE" show web:1 --output json | python3 -c 'import json,sys; print(json.load(sys.stdin)["digest"])')"
  expect_exit 0 imgbake store check
  expect_eq "the store's tmp/ after the test" "" "$(ls -A "$IMGBAKE_HOME/tmp")"
}

test_failing_checks_exit_1_and_say_why() {
  build_web || return
  write_file fail.json <<'JSON'
{"suite": "strict", "checks": [
  {"name": "motd", "file": "/etc/motd", "contains": "production"},
  {"name": "exits 3", "command": "echo oops >&2; exit 3"},
  {"name": "nginx", "package": "nginx"},
  {"name": "mode", "file": "/usr/bin/hello", "mode": "0700", "sha256": "0000000000000000000000000000000000000000000000000000000000000000"},
  {"name": "still fine", "file": "/etc/motd"}
]}
JSON
  expect_exit 1 imgbake test web:1 --spec fail.json --junit report.xml
  expect_contains "$STDOUT" '    FAIL  motd ('
  expect_contains "$STDOUT" 'it does not contain "production"'
  expect_contains "$STDOUT" 'exit status 3, not 0 (stderr: oops)'
  expect_contains "$STDOUT" 'FAIL  nginx ('
  expect_contains "$STDOUT" 'it is not installed'
  expect_contains "$STDOUT" 'mode 0755, not 0700; sha256 '
  expect_match "$STDOUT" '^    PASS  still fine '
  expect_match "$STDOUT" '^test web:1 \(strict\): 4 of 5 checks failed in '
  expect_exit 0 xmllint --noout report.xml
  py_check "the JUnit report has the 4 failures with their reasons" '
import xml.etree.ElementTree as ET
suite = ET.parse("report.xml").getroot().find("testsuite")
assert suite.get("failures") == "4", suite.attrib
failed = {c.get("name"): c.find("failure").get("message") for c in suite.findall("testcase") if c.find("failure") is not None}
assert set(failed) == {"motd", "exits 3", "nginx", "mode"}, failed
assert "exit status 3" in failed["exits 3"], failed
'
  # JSON events: one per check, then the result.
  expect_exit 1 imgbake test web:1 --spec fail.json --output json
  cp "$STDOUT" events.json
  py_check "JSON events of the checks and the result" '
import json
ev = [json.loads(l) for l in open("events.json")]
assert [e["event"] for e in ev] == ["check"] * 5 + ["test_result"], ev
assert ev[1]["name"] == "exits 3" and ev[1]["status"] == "fail" and ev[1]["kind"] == "command", ev[1]
assert ev[-1]["failed"] == 4 and ev[-1]["passed"] == 1 and ev[-1]["ok"] is False and ev[-1]["image"] == "web:1", ev[-1]
'
}

test_bad_spec_and_untestable_image() {
  fresh_store
  write_file bad.json <<'JSON'
{"suite": "x", "checks": [
  {"name": "a", "file": "/etc/motd", "mode": "rw-r--r--"},
  {"name": "b", "command": "true", "file": "/x"},
  {"name": "c", "comand": "true"}
]}
JSON
  expect_exit 1 imgbake test web:1 --spec bad.json
  expect_contains "$STDERR" "bad.json:2:"
  expect_contains "$STDERR" "'mode' must be an octal mode"
  expect_contains "$STDERR" "bad.json:3:"
  expect_contains "$STDERR" "a check has one kind"
  expect_contains "$STDERR" "bad.json:4:"
  expect_contains "$STDERR" "comand"
  # A files image (the file builder's) is not a root filesystem.
  write_file files.json <<'JSON'
{"builders": [{"type": "file", "content": "x", "target": "out/x.txt"}], "imgbake": {"image": "files"}}
JSON
  expect_exit 0 imgbake build files.json || return
  write_file ok.json <<'JSON'
{"checks": [{"file": "/x.txt"}]}
JSON
  expect_exit 2 imgbake test files:1 --spec ok.json
  expect_contains "$STDERR" "files:1 is not a container image"
  expect_exit 2 imgbake test files:1
  expect_contains "$STDERR" "--spec FILE or with --template FILE"
}

run_test passing_suite_and_junit_report test_passing_suite_and_junit_report
run_test failing_checks_exit_1_and_say_why test_failing_checks_exit_1_and_say_why
run_test bad_spec_and_untestable_image test_bad_spec_and_untestable_image
summary
