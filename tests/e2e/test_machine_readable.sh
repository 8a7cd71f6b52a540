# End-to-end: `-machine-readable` is Packer's CSV stream, judged against Packer 1.6.6 itself
# (Debian's packer package): the same templates through both, then the same facts in both.
. "$(dirname "$0")/lib.sh"
require_tools packer python3

SECRET="s3cr3t-$USER,token"
use_packer

write_template() {
  write_file mr.json <<'EOF'
{
  "variables": {"greeting": "hello, world", "api_token": "s3cr3t-{{env `USER`}},token"},
  "sensitive-variables": ["api_token"],
  "builders": [{"type": "file", "name": "f1", "target": "out.txt", "content": "a, b\n"}],
  "provisioners": [{"type": "shell-local",
                    "inline": ["echo {{user `greeting`}}", "echo token={{user `api_token`}}"]}]
}
EOF
}

# Compares the two streams (argv: packer's stdout, imgbake's stdout, the secret, mode).
COMPARE='
import re, sys
pk_path, ib_path, secret, mode = sys.argv[1:5]
LINE = re.compile(r"^[0-9]+,[^,]*,[^,]+(,.*)?$")
def parse(path, who):
    text = open(path, encoding="utf-8").read()
    assert text.endswith("\n") or text == "", f"{who}: stdout does not end with a newline"
    rows = []
    for l in text.splitlines():
        assert LINE.match(l), f"{who}: not a machine-readable line: {l!r}"
        # Packer 1.6.6 escapes before it masks, so a secret with a comma in it leaks from
        # packer -machine-readable (seen here); imgbake masks first.
        if who == "imgbake":
            assert secret not in l and secret.replace(",", "%!(PACKER_COMMA)") not in l, f"{who}: secret leaked: {l!r}"
        ts, target, typ, *data = l.split(",")
        rows.append((target, typ, data))
    return rows
pk, ib = parse(pk_path, "packer"), parse(ib_path, "imgbake")
def facts(rows):
    # What scripts parse: everything but the ui lines, without the values that are
    # rightly different (artifact ids and descriptions, error texts, imgbake-only facts).
    out = []
    for target, typ, data in rows:
        if typ == "ui" or typ == "image":
            continue
        if typ == "artifact" and data[1] in ("id", "string"):
            data = data[:2]
        if typ == "error":
            data = []
        out.append((target, typ, tuple(data)))
    return out
assert facts(pk) == facts(ib), f"facts differ:\n packer:  {facts(pk)}\n imgbake: {facts(ib)}"
kinds = lambda rows: sorted({d[0] for t, typ, d in rows if typ == "ui"})
assert kinds(ib) and set(kinds(ib)) <= {"say", "message", "error"}, f"imgbake ui kinds {kinds(ib)}"
if mode == "ok":
    # The script output, with its comma escaped, as Packer shows it.
    want = "    f1: hello%!(PACKER_COMMA) world"
    for who, rows in (("packer", pk), ("imgbake", ib)):
        msgs = [d[1] for t, typ, d in rows if typ == "ui" and d[0] == "message"]
        assert want in msgs, f"{who}: no ui,message {want!r} in {msgs}"
        masked = [m for m in msgs if "token=" in m]
        if who == "imgbake":
            assert masked == ["    f1: token=<sensitive>"], f"{who}: masked output line {masked}"
        else:
            assert len(masked) == 1, f"{who}: output lines with the token {masked}"
if mode == "failed":
    for who, rows in (("packer", pk), ("imgbake", ib)):
        last = rows[-1]
        assert last == ("", "ui", ["say", "\\n==> Builds finished but no artifacts were created."]), f"{who}: last line {last}"
'

test_build_stream_matches_packer() {
  write_template
  run_packer build -machine-readable mr.json
  expect_eq "packer build exit status" 0 "$PK_RC"
  rm -f out.txt
  expect_exit 0 imgbake build -machine-readable mr.json || return
  py_check "the build's facts match packer's" "$COMPARE" "$PK_STDOUT" "$STDOUT" "$SECRET" ok
  expect_eq "stderr stays empty" "" "$(cat "$STDERR")"
  # imgbake's own fact: the image it committed.
  expect_match "$STDOUT" '^[0-9]+,f1,image,f1:[0-9]+$'
}

test_failed_build_stream_matches_packer() {
  write_file fail.json <<'EOF'
{
  "builders": [{"type": "null", "communicator": "none"}],
  "provisioners": [{"type": "shell-local", "inline": ["exit 3"]}]
}
EOF
  run_packer build -machine-readable fail.json
  expect_eq "packer build exit status" 1 "$PK_RC"
  expect_exit 1 imgbake build -machine-readable fail.json
  py_check "the failed build's facts match packer's" "$COMPARE" "$PK_STDOUT" "$STDOUT" "$SECRET" failed
  expect_match "$STDOUT" '^[0-9]+,null,error,.*status 3'
}

test_validate_matches_packer() {
  write_template
  run_packer validate -machine-readable mr.json
  expect_exit 0 imgbake validate -machine-readable mr.json
  expect_eq "packer: nothing when valid" "" "$(cat "$PK_STDOUT")"
  expect_eq "imgbake: nothing when valid" "" "$(cat "$STDOUT")"
  write_file bad.json <<'EOF'
{"builders": [{"type": "nope"}]}
EOF
  run_packer validate -machine-readable bad.json
  expect_eq "packer validate exit status" 1 "$PK_RC"
  expect_exit 1 imgbake validate -machine-readable bad.json
  expect_match "$PK_STDOUT" '^[0-9]+,,ui,error,Error: .*nope'
  expect_match "$STDOUT" '^[0-9]+,,ui,error,Error: .*nope'
}

test_version_matches_packer() {
  run_packer version -machine-readable
  expect_exit 0 imgbake version -machine-readable
  expect_eq "the same line types, in order" \
    "$(cut -d, -f2-3 "$PK_STDOUT" | tr '\n' ' ')" "$(cut -d, -f2-3 "$STDOUT" | tr '\n' ' ')"
  expect_match "$STDOUT" '^[0-9]+,,version,[0-9]+\.[0-9]+\.[0-9]+$'
}

run_test build_stream_matches_packer test_build_stream_matches_packer
run_test failed_build_stream_matches_packer test_failed_build_stream_matches_packer
run_test validate_matches_packer test_validate_matches_packer
run_test version_matches_packer test_version_matches_packer
summary
