# End-to-end: `imgbake build templates/hello.json`, as a user would run it.
. "$(dirname "$0")/lib.sh"

SECRET="s3cr3t-$USER-token"

copy_hello() {
  cp "$IMGBAKE_SOURCE_DIR/templates/hello.json" hello.json
}

# Every file a build leaves behind, for the "secret never leaks" checks.
expect_secret_absent_everywhere() {
  local f
  expect_not_contains "$STDOUT" "$SECRET"
  expect_not_contains "$STDERR" "$SECRET"
  for f in $(find output -type f 2>/dev/null); do
    expect_not_contains "$f" "$SECRET"
  done
}

test_human_output() {
  copy_hello
  expect_exit 0 imgbake build hello.json || return
  # Every line about the build carries the build-name prefix.
  expect_match "$STDOUT" '^==> hello: build started \(file\)$'
  expect_contains "$STDOUT" "==> hello: write output/hello/hello.txt"
  expect_match "$STDOUT" '^    hello: done: write output/hello/hello\.txt \([0-9.]+(ms|s)\)$'
  expect_contains "$STDOUT" "==> hello: provisioner 1 (shell-local)"
  expect_match "$STDOUT" '^    hello: done: provisioner 1 \(shell-local\) \('
  expect_contains "$STDOUT" "==> hello: post-processor 1.1 (checksum)"
  expect_contains "$STDOUT" "==> hello: post-processor 2.1 (manifest)"
  expect_match "$STDOUT" '^==> hello: build finished after '
  # The shell-local's own output, prefixed, with the Packer environment.
  expect_contains "$STDOUT" "    hello: provisioning hello (file)"
  expect_match "$STDOUT" '^    hello: [0-9]+ output/hello/hello\.txt$'
  # The secret is masked where the script printed it.
  expect_contains "$STDOUT" "hello: the token is <sensitive> (masked in every log)"
  # Artifacts are announced.
  expect_match "$STDOUT" '^--> hello: artifact file: sha256:[0-9a-f]{64} \(1 file, [0-9]+ bytes\)$'
  expect_match "$STDOUT" '^--> hello: artifact checksum: sha256:[0-9a-f]{64}'
  # The summary table.
  expect_match "$STDOUT" '^BUILD +STATUS +TIME +IMAGE +ARTIFACTS$'
  expect_contains "$STDOUT" "BUILD  STATUS"
  expect_match "$STDOUT" '^hello +ok +[0-9.]+m?s +hello:1 +file: sha256:[0-9a-f]{64}'
  # Before the summary table, every non-empty line names the build.
  local unprefixed
  unprefixed=$(sed '/^BUILD /,$d' "$STDOUT" | grep -v '^$' | grep -vE '^(==> |    |--> )hello: ' || true)
  expect_eq "stdout lines without the 'hello: ' prefix (before the summary)" "" "$unprefixed"
  expect_no_match "$STDERR" '(^|: )error: '
  # No ANSI colours when stdout is not a terminal.
  expect_not_contains "$STDOUT" $'\033['
  expect_secret_absent_everywhere
}

test_artifacts() {
  copy_hello
  local t0 t1
  t0=$(date +%s)
  expect_exit 0 imgbake build hello.json || return
  t1=$(date +%s)
  local f=output/hello/hello.txt
  expect_file "$f" || return
  # Line 1 from the builder (isotime is UTC, like Packer's), line 2 from shell-local.
  local line1 line2 nlines
  line1=$(sed -n 1p "$f")
  line2=$(sed -n 2p "$f")
  nlines=$(wc -l <"$f")
  E2E_CHECKS=$((E2E_CHECKS + 1))
  if ! [[ $line1 =~ ^hello\ from\ imgbake,\ built\ [0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$ ]]; then
    fail "hello.txt line 1" "hello from imgbake, built YYYY-MM-DDTHH:MM:SSZ" "$line1"
  fi
  expect_eq "hello.txt line 2" "baked by shell-local" "$line2"
  expect_eq "hello.txt line count" "2" "$nlines"
  # The build time in the file is the time of this run.
  local stamp epoch
  stamp=${line1##* built }
  epoch=$(date -u -d "${stamp%Z}" +%s 2>/dev/null || echo 0)
  E2E_CHECKS=$((E2E_CHECKS + 1))
  if [ "$epoch" -lt $((t0 - 1)) ] || [ "$epoch" -gt $((t1 + 1)) ]; then
    fail "isotime in hello.txt is the time of the run" "between $t0 and $t1" "$epoch ($stamp)"
  fi

  # The checksum file agrees with sha256sum, in the "<digest><TAB><name>" form.
  local sums=output/hello/hello.sha256
  expect_file "$sums" || return
  local want
  want=$(sha256sum "$f" | cut -d' ' -f1)
  expect_file_content "$sums" "$want	hello.txt"
  E2E_CHECKS=$((E2E_CHECKS + 1))
  if ! (cd output/hello && sha256sum -c --status hello.sha256); then
    fail "sha256sum -c accepts output/hello/hello.sha256" "OK" "$(cd output/hello && sha256sum -c hello.sha256 2>&1)"
  fi
  # The artifact id printed is the file's digest.
  expect_contains "$STDOUT" "artifact file: sha256:$want (1 file, $(stat -c %s "$f") bytes)"
  expect_no_file output/hello/hello.txt.imgbake-tmp
}

MANIFEST_CHECK='
import json, sys, hashlib, os
path, t0, t1, nbuilds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
d = json.load(open(path))
assert set(d) >= {"builds", "last_run_uuid"}, "top-level keys: %r" % list(d)
b = d["builds"]
assert isinstance(b, list) and len(b) == nbuilds, "want %d builds, got %d" % (nbuilds, len(b))
last = b[-1]
for k in ("name", "builder_type", "build_time", "files", "artifact_id", "packer_run_uuid", "custom_data"):
    assert k in last, "missing key %r in %r" % (k, last)
assert last["name"] == "hello", last["name"]
assert last["builder_type"] == "file", last["builder_type"]
assert isinstance(last["build_time"], int), "build_time must be an integer (unix seconds)"
assert t0 - 1 <= last["build_time"] <= t1 + 1, "build_time %r not in [%d, %d]" % (last["build_time"], t0, t1)
assert len(last["files"]) == 1, last["files"]
f = last["files"][0]
assert set(f) >= {"name", "size"}, f
assert f["name"] == "output/hello/hello.txt", f["name"]
assert f["size"] == os.path.getsize("output/hello/hello.txt"), (f["size"], os.path.getsize("output/hello/hello.txt"))
digest = hashlib.sha256(open("output/hello/hello.txt", "rb").read()).hexdigest()
assert last["artifact_id"] == "sha256:" + digest, (last["artifact_id"], digest)
assert last["custom_data"] == {"greeting": "hello"}, last["custom_data"]
import re
for e in b:
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", e["packer_run_uuid"]), e["packer_run_uuid"]
assert d["last_run_uuid"] == last["packer_run_uuid"], (d["last_run_uuid"], last["packer_run_uuid"])
if nbuilds > 1:
    assert b[-2]["packer_run_uuid"] != last["packer_run_uuid"], "two runs share a run uuid"
    assert b[-2]["name"] == "hello"
'

test_manifest() {
  copy_hello
  local m=output/hello/packer-manifest.json t0 t1
  t0=$(date +%s)
  expect_exit 0 imgbake build hello.json || return
  t1=$(date +%s)
  expect_file "$m" || return
  py_check "manifest after one run has Packer's fields" "$MANIFEST_CHECK" "$m" "$t0" "$t1" 1
  local uuid1
  uuid1=$(json_get "$m" 'd["builds"][0]["packer_run_uuid"]')
  expect_secret_absent_everywhere

  # A second run appends a second entry and moves last_run_uuid.
  t0=$(date +%s)
  expect_exit 0 imgbake build hello.json || return
  t1=$(date +%s)
  py_check "manifest after two runs has two entries" "$MANIFEST_CHECK" "$m" "$t0" "$t1" 2
  # The same facts without python3, by text.
  expect_contains "$m" '"builder_type": "file"'
  expect_contains "$m" '"name": "output/hello/hello.txt"'
  expect_contains "$m" "\"artifact_id\": \"sha256:$(sha256sum output/hello/hello.txt | cut -d' ' -f1)\""
  expect_contains "$m" '"greeting": "hello"'
  expect_match "$m" '"build_time": [0-9]+,'
  expect_eq "entries (packer_run_uuid lines) after two runs" "2" "$(grep -c '"packer_run_uuid"' "$m")"
  expect_eq "last_run_uuid lines" "1" "$(grep -c '"last_run_uuid"' "$m")"
  if have_python; then
    expect_eq "the first entry is kept as it was" "$uuid1" "$(json_get "$m" 'd["builds"][0]["packer_run_uuid"]')"
  fi
  expect_no_file "$m.lock"
  expect_secret_absent_everywhere
}

test_secret_never_printed() {
  copy_hello
  # Also in JSON mode and when the build fails (errors are masked too).
  expect_exit 0 imgbake build --output json hello.json
  expect_secret_absent_everywhere
  expect_contains "$STDOUT" "<sensitive>"
  # A failing run whose error message would contain the secret.
  write_file fail.json <<'EOF'
{
  "variables": {"api_token": "s3cr3t-{{env `USER`}}-token"},
  "sensitive-variables": ["api_token"],
  "builders": [{"type": "null"}],
  "provisioners": [{"type": "shell-local", "inline": ["echo token=$T; echo token=$T >&2; exit 7"],
                    "environment_vars": ["T={{user `api_token`}}"]}]
}
EOF
  expect_exit 1 imgbake build fail.json
  expect_not_contains "$STDOUT" "$SECRET"
  expect_not_contains "$STDERR" "$SECRET"
  expect_contains "$STDOUT" "token=<sensitive>"
}

test_secret_from_command_line() {
  copy_hello
  # A sensitive variable given with -var (or -var-file) is masked too.
  local tok='cli-T0ken-value'
  expect_exit 0 imgbake build -var "api_token=$tok" hello.json
  expect_not_contains "$STDOUT" "$tok"
  expect_not_contains "$STDERR" "$tok"
  expect_contains "$STDOUT" "the token is <sensitive>"
  expect_not_contains output/hello/packer-manifest.json "$tok"
  echo "{\"api_token\": \"file-T0ken-value\"}" >secret-vars.json
  expect_exit 0 imgbake build --output json -var-file=secret-vars.json hello.json
  expect_not_contains "$STDOUT" "file-T0ken-value"
  expect_contains "$STDOUT" "the token is <sensitive>"
}

test_secret_with_quotes_in_manifest() {
  # Secrets often hold punctuation. One with a double quote and a backslash,
  # recorded through the manifest's custom_data, must still be masked there.
  write_file q.json <<'EOF'
{
  "variables": {"tok": ""},
  "sensitive-variables": ["tok"],
  "builders": [{"type": "file", "name": "s", "content": "x\n", "target": "out/s.txt"}],
  "post-processors": [
    {"type": "manifest", "output": "out/manifest.json", "custom_data": {"tok": "{{user `tok`}}", "plain": "ok"}}
  ]
}
EOF
  local tok='pa"ss\word-42'
  expect_exit 0 imgbake build -var "tok=$tok" q.json || return
  expect_not_contains "$STDOUT" "$tok"
  # As JSON writes it: pa\"ss\\word-42
  expect_not_contains out/manifest.json 'pa\"ss\\word-42'
  py_check "the manifest does not hold the secret (JSON-decoded)" '
import json, sys
d = json.load(open("out/manifest.json"))
cd = d["builds"][-1]["custom_data"]
assert cd["plain"] == "ok", cd
assert sys.argv[1] not in json.dumps(d, ensure_ascii=False) and sys.argv[1] not in str(cd.values()), \
    "custom_data holds the secret: %r" % cd
assert cd["tok"] != sys.argv[1], "custom_data.tok is the secret in clear: %r" % cd["tok"]
' "$tok"
}

run_test human_output test_human_output
run_test artifacts test_artifacts
run_test manifest test_manifest
run_test secret_never_printed test_secret_never_printed
run_test secret_from_command_line test_secret_from_command_line
run_test secret_with_quotes_in_manifest test_secret_with_quotes_in_manifest
summary
