# End-to-end: `--output json`: one JSON event per line (and that -machine-readable is not JSON).
. "$(dirname "$0")/lib.sh"

SECRET="s3cr3t-$USER-token"

# A template that logs on both streams and prints a sensitive value on each.
write_streams_template() {
  write_file streams.json <<'EOF'
{
  "variables": {
    "api_token": "s3cr3t-{{env `USER`}}-token"
  },
  "sensitive-variables": ["api_token"],
  "builders": [
    {"type": "file", "name": "one", "content": "one\n", "target": "out/one.txt"}
  ],
  "provisioners": [
    {
      "type": "shell-local",
      "environment_vars": ["TOKEN={{user `api_token`}}"],
      "inline": [
        "echo \"to stdout: $TOKEN\"",
        "echo \"to stderr: $TOKEN\" >&2"
      ]
    }
  ],
  "post-processors": [
    {"type": "checksum", "checksum_types": ["sha256"], "output": "out/{{.BuildName}}.sha256"}
  ]
}
EOF
}

# Checks the event stream in argv[1]; argv[2] is the secret, argv[3] the
# expected build name, argv[4] the expected status ("ok"/"failed").
EVENTS_CHECK='
import json, sys, re, os
path, secret, build, status = sys.argv[1:5]
lines = open(path, encoding="utf-8").read().split("\n")
assert lines[-1] == "", "stdout must end with a newline"
lines = lines[:-1]
assert lines, "no events at all"
events = []
for i, l in enumerate(lines, 1):
    try:
        e = json.loads(l)
    except Exception as ex:
        raise AssertionError("line %d is not JSON (%s): %r" % (i, ex, l[:200]))
    assert isinstance(e, dict), "line %d is not a JSON object: %r" % (i, l[:200])
    assert isinstance(e.get("event"), str), "line %d has no \"event\": %r" % (i, l[:200])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)", e.get("time", "")), \
        "line %d: bad or missing \"time\": %r" % (i, e.get("time"))
    events.append(e)
assert secret not in open(path, encoding="utf-8").read(), "the secret appears in the event stream"
kinds = [e["event"] for e in events]
for k in ("build_start", "step_start", "step_end", "log", "build_end", "summary"):
    assert k in kinds, "no %r event; saw %r" % (k, sorted(set(kinds)))
if status == "ok":
    assert "artifact" in kinds, "no artifact event; saw %r" % sorted(set(kinds))
assert kinds[0] == "build_start", "first event is %r" % kinds[0]
assert kinds[-1] == "summary", "last event is %r" % kinds[-1]
assert kinds.count("summary") == 1
bs = [e for e in events if e["event"] == "build_start"]
assert [e["build"] for e in bs] == [build], bs
open_steps = {}
for e in events:
    if e["event"] in ("step_start", "step_end", "log", "artifact", "build_end", "message", "error", "warning", "build_start"):
        assert e.get("build") == build, "event without the build name: %r" % e
    if e["event"] == "step_start":
        assert isinstance(e.get("step"), str) and e["step"], e
        assert "key" in e, e
        open_steps[e["step"]] = e["key"]
    elif e["event"] == "step_end":
        assert e["step"] in open_steps, "step_end without step_start: %r" % e
        assert e["key"] == open_steps.pop(e["step"]), "step_end key differs from step_start key: %r" % e
        assert isinstance(e.get("duration_s"), (int, float)) and e["duration_s"] >= 0, "bad duration_s: %r" % e
        assert e.get("status") in ("ok", "failed"), e
        assert "key" in e, e
        if not e["step"].startswith("post-processor") and e["step"] != "commit to store":
            assert re.fullmatch(r"sha256:[0-9a-f]{64}", e["key"]), "step_end key is not sha256:<hex>: %r" % e
assert not open_steps, "steps started but never ended: %r" % open_steps
keys = [e["key"] for e in events if e["event"] == "step_end" and e["key"]]
assert len(keys) == len(set(keys)), "two steps share a content key: %r" % keys
logs = [e for e in events if e["event"] == "log"]
for e in logs:
    assert e.get("stream") in ("stdout", "stderr"), e
    assert isinstance(e.get("text"), str), e
streams = {e["stream"] for e in logs}
assert streams == {"stdout", "stderr"}, "log streams seen: %r" % streams
texts = {e["stream"]: e["text"] for e in logs if e["text"].startswith("to ")}
assert texts.get("stdout") == "to stdout: <sensitive>", texts
assert texts.get("stderr") == "to stderr: <sensitive>", texts
be = [e for e in events if e["event"] == "build_end"]
assert len(be) == 1 and be[0]["status"] == status, be
assert isinstance(be[0].get("duration_s"), (int, float)), be
summ = events[-1]
assert [b["build"] for b in summ["builds"]] == [build], summ
assert summ["builds"][0]["status"] == status, summ
for a in (e for e in events if e["event"] == "artifact"):
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", a["id"]), a
    assert a["id"] in summ["builds"][0]["artifacts"], (a["id"], summ)
    for f in a["files"]:
        assert os.path.getsize(f["path"]) == f["size"], f
        import hashlib
        assert hashlib.sha256(open(f["path"], "rb").read()).hexdigest() == f["sha256"], f
'

test_output_json() {
  write_streams_template
  expect_exit 0 imgbake build --output json streams.json || return
  py_check "--output json event stream" "$EVENTS_CHECK" "$STDOUT" "$SECRET" one ok
  expect_not_contains "$STDOUT" "$SECRET"
  expect_not_contains "$STDERR" "$SECRET"
  # No human view mixed in.
  expect_not_contains "$STDOUT" "BUILD  STATUS"
  expect_no_match "$STDOUT" '^(==>|    |-->)'
  # The builder's artifact event names the file and its digest.
  local digest
  digest=$(sha256sum out/one.txt | cut -d' ' -f1)
  expect_contains "$STDOUT" "\"id\":\"sha256:$digest\""
  expect_contains "$STDOUT" '"builder_type":"file"'
  expect_contains "$STDOUT" '"builder_type":"checksum"'
}

test_machine_readable() {
  # -machine-readable is Packer's CSV stream (test_machine_readable.sh compares it with Packer's);
  # the JSON events are --output json only.
  write_streams_template
  expect_exit 0 imgbake build -machine-readable streams.json || return
  expect_not_contains "$STDOUT" "$SECRET"
  expect_no_match "$STDOUT" '^\{'
  expect_match "$STDOUT" '^[0-9]+,one,artifact-count,2$'
  expect_match "$STDOUT" '^[0-9]+,,ui,message,    one: to stdout: <sensitive>$'
  # --machine-readable (two dashes) too.
  expect_exit 0 imgbake build --machine-readable streams.json || return
  expect_match "$STDOUT" '^[0-9]+,one,artifact,0,builder-id,packer.file$'
}

test_failure_events() {
  write_file failing.json <<'EOF'
{
  "variables": {"api_token": "s3cr3t-{{env `USER`}}-token"},
  "sensitive-variables": ["api_token"],
  "builders": [{"type": "null", "name": "bad"}],
  "provisioners": [
    {
      "type": "shell-local",
      "environment_vars": ["TOKEN={{user `api_token`}}"],
      "inline": ["echo \"to stdout: $TOKEN\"", "echo \"to stderr: $TOKEN\" >&2", "exit 3"]
    }
  ]
}
EOF
  expect_exit 1 imgbake build --output json failing.json
  py_check "event stream of a failing build" "$EVENTS_CHECK" "$STDOUT" "$SECRET" bad failed
  py_check "build_end of a failing build says why" '
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1])]
be = [e for e in ev if e["event"] == "build_end"][0]
assert be["status"] == "failed", be
assert "provisioner 1 (shell-local)" in be.get("error", ""), be
assert "status 3" in be.get("error", ""), be
se = [e for e in ev if e["event"] == "step_end"]
assert se[-1]["status"] == "failed", se[-1]
assert any(e["event"] == "error" and "status 3" in e["text"] for e in ev), "no error event"
# For CI: the error event names the step and the exit status of the failed command.
err = [e for e in ev if e["event"] == "error" and "status 3" in e["text"]][0]
assert err.get("step") == "provisioner 1 (shell-local)", err
assert err.get("exit_status") == 3, err
' "$STDOUT"
  expect_not_contains "$STDOUT" "$SECRET"
  expect_not_contains "$STDERR" "$SECRET"
}

test_hello_json() {
  cp "$IMGBAKE_SOURCE_DIR/templates/hello.json" hello.json
  expect_exit 0 imgbake build --output json hello.json || return
  py_check "hello.json: every stdout line is a JSON object with the main events" '
import json, sys
kinds = []
for l in open(sys.argv[1]):
    e = json.loads(l)
    assert isinstance(e, dict)
    kinds.append(e["event"])
for k in ("build_start", "step_start", "step_end", "log", "artifact", "commit", "build_end", "summary"):
    assert k in kinds, (k, kinds)
' "$STDOUT"
  expect_contains "$STDOUT" '"text":"the token is <sensitive> (masked in every log)"'
  expect_not_contains "$STDOUT" "$SECRET"
  # For CI: a structured commit event (a new version, then the same digest again), and the
  # summary carries the digest.
  write_file same.json <<'EOF'
{"builders": [{"type": "file", "name": "c", "content": "same\n", "target": "c.txt"}], "imgbake": {"image": "same"}}
EOF
  expect_exit 0 imgbake build --output json same.json || return
  cp "$STDOUT" first.json
  local digest
  digest=$(imgbake show same:1 --output json | json_get /dev/stdin 'd["digest"]')
  expect_exit 0 imgbake build --output json same.json || return
  py_check "commit events: one per build, with the digest the store holds" '
import json, sys
def commit(path):
    ev = [json.loads(l) for l in open(path)]
    c = [e for e in ev if e["event"] == "commit"]
    assert len(c) == 1, c
    s = [e for e in ev if e["event"] == "summary"][0]["builds"][0]
    return c[0], s
c1, s1 = commit(sys.argv[1])
c2, s2 = commit(sys.argv[2])
digest = sys.argv[3]
assert (c1["image"], c1["version"], c1["ref"], c1["digest"], c1["new_version"]) == ("same", "1", "same:1", digest, True), c1
assert c1["signed_by"].startswith("sha256:") and c1["store"], c1
# A file build records its build time, so a rebuild is a new version (test_rootfs.sh checks
# new_version false for a rebuild that gives the same digest).
assert (c2["ref"], c2["new_version"]) == ("same:2", True), c2
assert s1["digest"] == digest and s2["digest"] == c2["digest"], (s1, s2)
' first.json "$STDOUT" "$digest"
}

test_validate_json() {
  write_file bad.json <<'EOF'
{
  "builders": [{"type": "null", "bogus_option": 1}]
}
EOF
  expect_exit 1 imgbake validate --output json bad.json
  py_check "validate --output json reports the error with its position" '
import json, sys
lines = open(sys.argv[1]).read().splitlines()
assert len(lines) == 1, lines
d = json.loads(lines[0])
assert d["valid"] is False, d
e = [x for x in d["errors"] if "bogus_option" in x["message"]]
assert e, d
assert (e[0]["file"], e[0]["line"], e[0]["column"]) == ("bad.json", 2, 33), e[0]
' "$STDOUT"
  write_file good.json <<'EOF'
{"builders": [{"type": "null"}]}
EOF
  # -machine-readable is Packer's stream (nothing for a valid template); --output json the document.
  expect_exit 0 imgbake validate -machine-readable good.json
  expect_eq "validate -machine-readable on a valid template" "" "$(cat "$STDOUT")"
  expect_exit 0 imgbake validate --output json good.json
  py_check "validate --output json on a valid template" '
import json, sys
d = json.loads(open(sys.argv[1]).read())
assert d == {"valid": True, "errors": [], "warnings": []}, d
' "$STDOUT"
}

test_version_json() {
  expect_exit 0 imgbake version --output json
  py_check "version --output json" '
import json, sys
d = json.loads(open(sys.argv[1]).read())
assert isinstance(d["version"], str) and d["version"], d
assert "file" in d["builders"] and "null" in d["builders"], d
assert "shell-local" in d["provisioners"], d
assert {"checksum", "manifest"} <= set(d["post_processors"]), d
' "$STDOUT"
}

test_step_keys() {
  # Step keys are content keys: the same template gives the same keys on every
  # run and in every directory; changing a step changes its key and the keys of
  # the steps after it, not those before.
  write_file k.json <<'EOF'
{
  "builders": [{"type": "file", "name": "k", "content": "K\n", "target": "out/k.txt"}],
  "provisioners": [
    {"type": "shell-local", "inline": ["echo one"]},
    {"type": "shell-local", "inline": ["echo two"]}
  ]
}
EOF
  local keys='
import json, sys
print(" ".join(json.loads(l)["key"] for l in open(sys.argv[1]) if json.loads(l)["event"] == "step_end"))'
  have_python || { skip "step keys (python3 not available)"; return; }
  expect_exit 0 imgbake build --output json k.json || return
  local k1 k2 k3 k4
  k1=$(python3 -c "$keys" "$STDOUT")
  expect_exit 0 imgbake build --output json k.json
  k2=$(python3 -c "$keys" "$STDOUT")
  expect_eq "step keys of two runs of the same template" "$k1" "$k2"
  mkdir elsewhere
  cp k.json elsewhere/
  (cd elsewhere && "$IMGBAKE" build --output json k.json >../elsewhere.out 2>&1)
  k3=$(python3 -c "$keys" elsewhere.out)
  expect_eq "step keys in another directory" "$k1" "$k3"
  sed 's/echo one/echo ONE/' k.json >k2.json
  expect_exit 0 imgbake build --output json k2.json
  k4=$(python3 -c "$keys" "$STDOUT")
  set -- $k1
  local a1=$1 b1=$2 c1=$3
  set -- $k4
  expect_eq "key of the unchanged first step" "$a1" "$1"
  E2E_CHECKS=$((E2E_CHECKS + 1))
  if [ "$b1" = "$2" ] || [ "$c1" = "$3" ]; then
    fail "a changed provisioner changes its key and the next one's" "new keys for steps 2 and 3" "$k4 (was $k1)"
  fi
}

run_test output_json test_output_json
run_test machine_readable test_machine_readable
run_test failure_events test_failure_events
run_test hello_json test_hello_json
run_test validate_json test_validate_json
run_test version_json test_version_json
run_test step_keys test_step_keys
summary
