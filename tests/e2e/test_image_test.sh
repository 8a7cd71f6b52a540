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
  expect_match "$STDOUT" '^test web:1 \(smoke\): all 9 checks passed in [0-9.]+s; JUnit report: report.xml; signed result recorded \(sha256:[0-9a-f]{64}\)$'
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
  expect_contains "$STDERR" "files:1 holds files, not a root filesystem or a disk image: there is nothing to test"
  expect_exit 2 imgbake test files:1
  expect_contains "$STDERR" "--spec FILE or with --template FILE"
}

# sql STATEMENT: runs SQL on the store's catalog.
sql() {
  python3 - "$IMGBAKE_HOME/catalog.db" "$1" <<'EOF'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute(sys.argv[2])
db.commit()
EOF
}

# A channel policy stops an image without a passing, trusted test result at promote, naming what
# is missing or which checks failed; the signed result lets it in; verify and store check read
# the evidence, and a foreign-key result is refused.
test_gate_requires_signed_passing_evidence() {
  build_web || return
  expect_exit 0 imgbake policy set production --require-test smoke --reason "release gate"
  expect_contains "$STDOUT" "channel 'production' (of every image) now requires a passing test of suite(s) smoke"
  expect_exit 0 imgbake policy list
  expect_contains "$STDOUT" "channel 'production' (of every image): requires test suite(s) smoke"
  # No result yet.
  expect_exit 1 imgbake promote web:1 --channel production
  expect_contains "$STDERR" "refusing to promote web:1: channel 'production' requires passing test suite(s) smoke: it has no result of test suite 'smoke'"
  # A failing run of that suite: refused, naming the failed check.
  write_file smoke-fail.json <<'JSON'
{"suite": "smoke", "checks": [{"name": "motd says production", "file": "/etc/motd", "contains": "production"},
                              {"name": "hello", "command": "hello"}]}
JSON
  expect_exit 1 imgbake test web:1 --spec smoke-fail.json
  expect_match "$STDOUT" 'signed result recorded \(sha256:[0-9a-f]{64}\)$'
  expect_exit 1 imgbake promote web:1 --channel production
  expect_contains "$STDERR" "test suite 'smoke' failed on"
  expect_contains "$STDERR" "(failed: motd says production)"
  # Staging has no policy: the gate is per channel.
  expect_exit 0 imgbake promote web:1 --channel staging
  # The template's own suite passes: now it may go.
  expect_exit 0 imgbake test web:1 --template web.json
  expect_exit 0 imgbake promote web:1 --channel production --reason "tests passed"
  expect_contains "$STDOUT" "web:production -> web:1"
  expect_exit 0 imgbake verify web:1
  expect_match "$STDOUT" '^  test:       smoke FAILED on '
  expect_match "$STDOUT" '^  test:       smoke PASSED on '
  expect_exit 0 imgbake history web --output json
  cp "$STDOUT" history.json
  py_check "the audit log has both test runs and the gated promotion with its evidence" '
import json
h = json.load(open("history.json"))
entries = h
acts = [e["action"] for e in entries]
assert acts.count("test") == 2, acts
promo = [e for e in entries if e["action"] == "promote" and e.get("channel") == "production"]
assert promo, entries
detail = promo[0]["detail"]
assert detail["tests"][0]["suite"] == "smoke" and detail["tests"][0]["envelope"].startswith("sha256:"), detail
'
  # The evidence, read from the OCI layout without imgbake: referrers of web:1's manifest whose
  # one layer is a DSSE envelope of an in-toto test-result statement about that digest.
  py_check "index.json lists the test-result referrers; their statements are about web:1" '
import json, base64, os
home = os.environ["IMGBAKE_HOME"]
blob = lambda d: open(os.path.join(home, "blobs", "sha256", d.split(":")[1]), "rb").read()
idx = json.load(open(os.path.join(home, "index.json")))
web1 = [m["digest"] for m in idx["manifests"] if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == "web:1"][0]
refs = [m for m in idx["manifests"] if m.get("artifactType") == "application/vnd.imgbake.test-result.v1+json"]
assert len(refs) == 2, idx
results = []
for r in refs:
    man = json.loads(blob(r["digest"]))
    assert man["subject"]["digest"] == web1, man
    env = json.loads(blob(man["layers"][0]["digest"]))
    assert env["payloadType"] == "application/vnd.in-toto+json" and env["signatures"], env
    st = json.loads(base64.b64decode(env["payload"]))
    assert st["predicateType"] == "https://in-toto.io/attestation/test-result/v0.1", st
    assert st["subject"][0]["digest"]["sha256"] == web1.split(":")[1], st
    results.append((st["predicate"]["result"], st["predicate"]["failedTests"], len(st["predicate"]["passedTests"])))
assert sorted(results) == [("FAILED", ["motd says production"], 1), ("PASSED", [], 9)], results
'
  expect_exit 0 imgbake store check
  expect_exit 0 imgbake history web
  expect_match "$STDOUT" 'test +web:1  suite smoke FAILED'
  # A result signed by a key nobody trusts does not open the gate, and verify says so.
  sed 's|rm /etc/old.txt|rm /etc/old.txt \&\& echo 2 > /etc/release|' web.json > web2.json
  expect_exit 0 imgbake build web2.json || return
  expect_contains "$STDOUT" "committed web:2 "
  expect_exit 0 imgbake keygen -o "$TEST_DIR/intruder.key" || return
  write_file other.json <<'JSON'
{"suite": "smoke", "checks": [{"name": "motd", "file": "/etc/motd"}]}
JSON
  expect_exit 0 imgbake test web:2 --spec other.json --signing-key "$TEST_DIR/intruder.key"
  expect_exit 1 imgbake promote web:2 --channel production
  expect_contains "$STDERR" "refusing to promote web:2: channel 'production' requires passing test suite(s) smoke: the test result of suite 'smoke'"
  expect_contains "$STDERR" "the envelope is signed by"
  expect_exit 1 imgbake verify web:2
  expect_contains "$STDOUT" "(NOT VERIFIED)"
}

# Someone with write access to the catalog turns a failed run into a pass, or lifts a policy:
# the gate reads the signed statement, not the row, and store check compares with the audit log.
test_forged_evidence_and_lifted_policy() {
  build_web || return
  expect_exit 0 imgbake policy set web:production --require-test smoke --reason "release gate"
  expect_exit 0 imgbake history web
  expect_match "$STDOUT" 'policy production +requires smoke  \(release gate\)'
  write_file smoke-fail.json <<'JSON'
{"suite": "smoke", "checks": [{"name": "motd says production", "file": "/etc/motd", "contains": "production"}]}
JSON
  expect_exit 1 imgbake test web:1 --spec smoke-fail.json
  sql "UPDATE test_runs SET passed = 1, failed = '[]'"
  expect_exit 1 imgbake promote web:1 --channel production
  expect_contains "$STDERR" "the catalog says it passed but the signed statement says FAILED"
  expect_exit 1 imgbake store check
  expect_contains "$STDOUT" "the catalog says it passed but the signed statement says FAILED"
  sql "UPDATE test_runs SET passed = 0"
  sql "DELETE FROM channel_policies"
  expect_exit 1 imgbake store check
  expect_contains "$STDOUT" "the policy of channel 'production' of web (requires smoke"
  expect_contains "$STDOUT" "is missing from the catalog: its gate is open"
}

# pull_with_evidence STORE REGISTRY SOURCE: pulls SOURCE (web:1) into a new STORE (the same user:
# the same trusted key); its passing smoke result came along, verifies, shows, and opens the gate.
pull_with_evidence() {
  export IMGBAKE_HOME=$1
  expect_exit 0 imgbake pull "$3" --insecure-registry "$2" || return
  expect_contains "$STDOUT$(cat "$STDERR")" "(suite smoke) pulled"
  expect_exit 0 imgbake verify web:1
  expect_match "$STDOUT" '^  test:       smoke PASSED on '
  expect_exit 0 imgbake show web:1
  expect_match "$STDOUT" '^  smoke: passed on '
  expect_exit 0 imgbake policy set production --require-test smoke
  expect_exit 0 imgbake promote web:1 --channel production
  expect_exit 0 imgbake store check
}

# The evidence travels with the image: push uploads the test results as referrers, a pull into
# another store brings them, and the gate there accepts the image on them.
test_evidence_travels_with_push_and_pull() {
  require_tools docker-registry || return
  . "$IMGBAKE_SOURCE_DIR/tests/e2e/registry_lib.sh"
  start_registry "$TEST_DIR/reg" || return
  local reg=127.0.0.1:$REGISTRY_PORT
  build_web || return
  expect_exit 0 imgbake test web:1 --template web.json || return
  expect_exit 0 imgbake push web:1 "$reg/team/web" --insecure-registry "$reg" || return
  expect_contains "$STDOUT$(cat "$STDERR")" "(suite smoke, passed) pushed as a referrer of the image"
  pull_with_evidence "$TEST_DIR/store2" "$reg" "$reg/team/web:1" || return
  # Pulling again records nothing twice.
  expect_exit 0 imgbake pull "$reg/team/web:1" --insecure-registry "$reg"
  expect_exit 0 imgbake verify web:1 --output json
  expect_eq "test results after a second pull" 1 "$(json_get "$STDOUT" 'len(d["tests"])')"
  # copy between two registries keeps the evidence: a store that pulls from the second one has it.
  local first=$reg
  start_registry "$TEST_DIR/reg2" || return
  reg=127.0.0.1:$REGISTRY_PORT
  expect_exit 0 imgbake copy "$first/team/web:1" "$reg/mirror/web:1" --insecure-registry "$first" \
    --insecure-registry "$reg" || return
  pull_with_evidence "$TEST_DIR/store3" "$reg" "$reg/mirror/web:1"
}

# A container image's own Cmd started as the service under test in the sandbox: its file, its
# package (a dpkg-query stand-in: busybox has no dpkg), its process, its port and its pages.
test_service_under_test_in_the_sandbox() {
  fresh_store
  busybox_tarball bb.tar.gz httpd wget grep pidof pgrep stat awk head || return 1
  write_file httpd.json <<'JSON'
{
  "builders": [{"type": "rootfs", "source": "tar:bb.tar.gz"}],
  "provisioners": [{"type": "shell", "inline": [
    "mkdir -p /www && echo 'hello from httpd' > /www/index.html",
    "printf '#!/bin/sh\\nfor p; do :; done\\n[ \"$p\" = busybox-httpd ] && echo \"install ok installed|1.35.0-4\" && exit 0\\nexit 1\\n' > /bin/dpkg-query",
    "chmod 0755 /bin/dpkg-query"]}],
  "imgbake": {
    "image": "httpd",
    "config": {"Cmd": ["httpd", "-f", "-p", "8080", "-h", "/www"], "ExposedPorts": ["8080/tcp"]},
    "tests": {"suite": "service", "service_start": true, "checks": [
      {"name": "home page file", "file": "/www/index.html", "contains": "hello"},
      {"name": "httpd package", "package": "busybox-httpd", "version": "1.35"},
      {"name": "httpd running", "service": "httpd"},
      {"name": "listens on 8080", "port": 8080},
      {"name": "nothing on 8081", "port": 8081, "listening": false},
      {"name": "home page", "http": "http://127.0.0.1:8080/", "body_contains": "hello from httpd"},
      {"name": "missing page", "http": "http://127.0.0.1:8080/nope", "status": 404}
    ]}
  }
}
JSON
  expect_exit 0 imgbake build --test httpd.json || { e2e_show_file stdout "$STDOUT"; e2e_show_file stderr "$STDERR"; return; }
  expect_match "$STDOUT" 'in a sandbox around the image.s root filesystem, its Entrypoint/Cmd started as the service under test$'
  expect_match "$STDOUT" '^    PASS  listens on 8080 '
  expect_match "$STDOUT" '^    PASS  home page '
  expect_match "$STDOUT" '^test httpd:1 \(service\): all 7 checks passed'
  # Without the service: its port and pages fail, saying why.
  python3 -c 'import json; s = json.load(open("httpd.json"))["imgbake"]["tests"]; s["service_start"] = False; json.dump(s, open("idle.json", "w"))'
  expect_exit 1 imgbake test httpd:1 --spec idle.json --no-record
  expect_match "$STDOUT" '^    FAIL  httpd running \([0-9.]+s\): it is not running \(no init system: judged by its process\)$'
  expect_match "$STDOUT" '^    FAIL  listens on 8080 \([0-9.]+s\): nothing listens on tcp/8080$'
  expect_match "$STDOUT" '^    FAIL  home page \([0-9.]+s\): no HTTP answer from http://127.0.0.1:8080/'
  expect_match "$STDOUT" '^test httpd:1 \(service\): 4 of 7 checks failed'
  expect_exit 0 imgbake show httpd:1
  expect_match "$STDOUT" '^  service: passed on '
  expect_eq "the store's tmp/ after the tests" "" "$(ls -A "$IMGBAKE_HOME/tmp")"
}

# build --test: the committed image is tested at once; a pass moves the gated channel the
# template names, a failure leaves it and exits 1.
test_build_test_moves_the_gated_channel_only_on_a_pass() {
  build_web || return
  expect_exit 0 imgbake policy set web:production --require-test smoke
  python3 - <<'EOF'
import json
t = json.load(open("web.json"))
t["imgbake"]["channels"] = ["production", "dev"]
t["provisioners"][0]["inline"].append("echo v2 > /etc/release")
json.dump(t, open("web2.json", "w"))
t["imgbake"]["test_after_build"] = True
t["provisioners"][0]["inline"].append("rm /usr/bin/hello")
json.dump(t, open("web3.json", "w"))
EOF
  expect_exit 0 imgbake build --test web2.json || { e2e_show_file stderr "$STDERR"; return; }
  expect_match "$STDOUT" 'channel production not moved: its policy requires passing tests'
  expect_match "$STDOUT" '^test web:2 \(smoke\): all 9 checks passed'
  expect_match "$STDOUT" '^web:production -> web:2$'
  expect_exit 0 imgbake show web:production --output json
  expect_eq "web:production after build --test" "2" "$(json_get "$STDOUT" 'd["version"]')"
  # test_after_build, and a check fails: exit 1, production stays at web:2, dev moved (no policy).
  expect_exit 1 imgbake build web3.json
  expect_match "$STDOUT" 'FAIL  hello runs'
  expect_exit 0 imgbake show web:production --output json
  expect_eq "web:production after a failing build --test" "2" "$(json_get "$STDOUT" 'd["version"]')"
  expect_exit 0 imgbake show web:dev --output json
  expect_eq "web:dev (no policy)" "3" "$(json_get "$STDOUT" 'd["version"]')"
}

run_test passing_suite_and_junit_report test_passing_suite_and_junit_report
run_test failing_checks_exit_1_and_say_why test_failing_checks_exit_1_and_say_why
run_test bad_spec_and_untestable_image test_bad_spec_and_untestable_image
run_test gate_requires_signed_passing_evidence test_gate_requires_signed_passing_evidence
run_test forged_evidence_and_lifted_policy test_forged_evidence_and_lifted_policy
run_test evidence_travels_with_push_and_pull test_evidence_travels_with_push_and_pull
run_test service_under_test_in_the_sandbox test_service_under_test_in_the_sandbox
run_test build_test_moves_the_gated_channel_only_on_a_pass test_build_test_moves_the_gated_channel_only_on_a_pass
summary
