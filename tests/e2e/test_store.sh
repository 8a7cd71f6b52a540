# End-to-end: the local image store, as a user drives it. `imgbake build` commits
# NAME:VERSION; images / show / label / promote / rollback / history / revoke /
# verify / export / keygen work on what it committed; skopeo reads the store as an
# OCI layout.
. "$(dirname "$0")/lib.sh"
require_tools skopeo python3

# Every test gets its own store and signing-key directory inside its scratch dir.
fresh_store() {
  export IMGBAKE_HOME="$TEST_DIR/store"
  export IMGBAKE_CONFIG_HOME="$TEST_DIR/config"
}

# write_app_template [IMGBAKE_SECTION_JSON]: app.json, the issue's small template.
write_app_template() {
  local section=${1:-'{"image": "app"}'}
  write_file app.json <<EOF
{
  "variables": {"n": "0"},
  "builders": [{"type": "file", "name": "app", "content": "v{{user \`n\`}}", "target": "out/app.txt"}],
  "imgbake": $section
}
EOF
}

have_git() { command -v git >/dev/null 2>&1; }

# git_commit_all: makes the test dir a git repository holding app.json (one commit).
git_commit_all() {
  local g=(git -c user.name="E2E Tester" -c user.email=e2e@example.invalid -c init.defaultBranch=main
    -c commit.gpgsign=false)
  "${g[@]}" init -q . && "${g[@]}" add app.json && "${g[@]}" commit -q -m "app template" >/dev/null
}

# build_app N [ARGS...]: imgbake build -var n=N ARGS app.json, expected to succeed.
build_app() {
  local n=$1
  shift
  expect_exit 0 imgbake build -var "n=$n" "$@" app.json
}

# image_of REF: prints the name:version that REF resolves to (from `show`).
image_of() {
  "$IMGBAKE" show "$1" 2>/dev/null | sed -n 's/^image: *//p'
}

# versions_json FILE: the versions listed in an `images --output json` document, space-separated.
versions_of() {
  python3 -c 'import json,sys; print(" ".join(i["version"] for i in json.load(open(sys.argv[1]))))' "$1"
}

WHO=""
set_who() { WHO="$USER@$(hostname)"; }

# ---------------------------------------------------------------------------

test_build_commits_versions() {
  fresh_store
  write_app_template
  build_app 1 || return
  expect_match "$STDOUT" '^==> app: committed app:1 \(sha256:[0-9a-f]{64}\) to the store '
  expect_match "$STDOUT" '^app +ok +[0-9.]+m?s +app:1 +file: '
  # The first build made the per-user default signing key (private: 0600) and said so.
  expect_contains "$STDERR" "created the per-user default key"
  expect_file "$IMGBAKE_CONFIG_HOME/signing.key" &&
    expect_eq "mode of the default signing key" "600" "$(stat -c %a "$IMGBAKE_CONFIG_HOME/signing.key")"
  expect_file "$IMGBAKE_CONFIG_HOME/signing.key.pub"
  expect_exit 0 imgbake images
  expect_match "$STDOUT" '^app:1 +sha256:[0-9a-f]{12} '
  expect_exit 0 imgbake images app
  expect_match "$STDOUT" '^app:1 '

  # A second build is the next version; the first one is unchanged.
  local d1
  d1=$(sed -n 's/^digest: *//p' < <("$IMGBAKE" show app:1))
  build_app 2 || return
  expect_match "$STDOUT" '^==> app: committed app:2 '
  expect_exit 0 imgbake images
  expect_match "$STDOUT" '^app:1 '
  expect_match "$STDOUT" '^app:2 '
  expect_eq "app:1's digest after app:2 was built" "$d1" "$(sed -n 's/^digest: *//p' < <("$IMGBAKE" show app:1))"
  # A bare name means the latest version.
  expect_eq "show app (no version) resolves to" "app:2" "$(image_of app)"

  # An explicit version.
  build_app 3 --version 7.0 || return
  expect_match "$STDOUT" '^==> app: committed app:7\.0 '
  expect_exit 0 imgbake show app:7.0
  expect_contains "$STDOUT" "image:      app:7.0"
  # Versions are immutable: the same version again fails, and the store keeps what it had.
  local d7
  d7=$(sed -n 's/^digest: *//p' < <("$IMGBAKE" show app:7.0))
  expect_exit 1 imgbake build -var n=4 --version 7.0 app.json
  expect_match "$STDERR" 'app:7\.0.*immutable'
  expect_eq "app:7.0's digest after the refused rebuild" "$d7" "$(sed -n 's/^digest: *//p' < <("$IMGBAKE" show app:7.0))"
  expect_exit 0 imgbake images app --output json || return
  cp "$STDOUT" images.json
  if have_python; then
    expect_eq "versions in the store" "1 2 7.0" "$(versions_of images.json)"
  fi
  py_check "images --output json: one entry per version, with its digest, builder and template" '
import json, sys, hashlib
imgs = json.load(open("images.json"))
assert [i["ref"] for i in imgs] == ["app:1", "app:2", "app:7.0"], [i["ref"] for i in imgs]
assert len({i["digest"] for i in imgs}) == 3, "digests are not unique"
tpl = "sha256:" + hashlib.sha256(open("app.json", "rb").read()).hexdigest()
for i in imgs:
    assert i["name"] == "app" and i["builder_type"] == "file", i
    assert i["template_digest"] == tpl, (i["template_digest"], tpl)
    assert i["revoked"] is False, i
    assert i["provenance"].startswith("sha256:"), i
'
  # Unknown names and versions fail with a message.
  expect_exit 1 imgbake show app:99
  expect_match "$STDERR" "app:99|'99'"
  expect_exit 1 imgbake show nosuchimage
  expect_contains "$STDERR" "nosuchimage"
}

test_template_channels_promote_every_build() {
  fresh_store
  set_who
  write_app_template '{"image": "app", "channels": ["dev"]}'
  build_app 1 || return
  expect_contains "$STDOUT" "channel 'dev' now points at app:1"
  expect_eq "app:dev after the first build" "app:1" "$(image_of app:dev)"
  build_app 2 || return
  expect_eq "app:dev after the second build" "app:2" "$(image_of app:dev)"
  build_app 3 --version 3.1 || return
  expect_eq "app:dev after the third build" "app:3.1" "$(image_of app:dev)"
  expect_exit 0 imgbake images app
  expect_match "$STDOUT" '^app:3\.1 .* dev *$'
  expect_no_match "$STDOUT" '^app:(1|2) .*dev'
  expect_exit 0 imgbake history app --channel dev --output json || return
  cp "$STDOUT" dev.json
  py_check "history of dev: one promotion per build, in order, by $WHO" '
import json, sys
h = json.load(open("dev.json"))
moves = [(e["action"], e["channel"], e["from"], e["to"]) for e in h]
assert moves == [("promote", "dev", "", "app:1"), ("promote", "dev", "app:1", "app:2"),
                 ("promote", "dev", "app:2", "app:3.1")], moves
assert all(e["who"] == sys.argv[1] for e in h), [e["who"] for e in h]
' "$WHO"
}

test_promote_rollback_history_revoke() {
  fresh_store
  set_who
  write_app_template
  build_app 1 || return
  build_app 2 || return
  expect_exit 0 imgbake promote app:1 --channel staging --reason "passed QA"
  expect_match "$STDOUT" '^app:staging -> app:1 \(sha256:[0-9a-f]{64}\)$'
  expect_exit 0 imgbake promote app:1 --channel production --reason "release 1"
  expect_exit 0 imgbake promote app:2 --channel production --reason "release 2"
  expect_match "$STDOUT" '^app:production -> app:2 '
  expect_eq "app:production after promoting app:2" "app:2" "$(image_of app:production)"
  expect_exit 0 imgbake rollback app --channel production --reason "errors in release 2"
  expect_match "$STDOUT" '^app:production -> app:1 \(sha256:[0-9a-f]{64}\), the image the channel held before app:2$'
  # A second rollback: the channel held nothing before app:1, so nothing moves (it never goes to
  # an image the channel did not hold).
  expect_exit 1 imgbake rollback app --channel production --reason "again"
  expect_contains "$STDERR" "has held only app:1"
  expect_eq "app:production after the refused rollback" "app:1" "$(image_of app:production)"
  expect_exit 0 imgbake show app:production
  expect_contains "$STDOUT" "image:      app:1"
  expect_eq "app:staging is untouched by the rollback" "app:1" "$(image_of app:staging)"
  # Channels are tags in the OCI layout too.
  py_check "index.json tags the channels" '
import json, sys
idx = json.load(open(sys.argv[1] + "/index.json"))
refs = {m.get("annotations", {}).get("org.opencontainers.image.ref.name"): m["digest"] for m in idx["manifests"]}
for r in ("app:1", "app:2", "app:staging", "app:production"):
    assert r in refs, (r, sorted(k for k in refs if k))
assert refs["app:production"] == refs["app:1"], "app:production is not tagged as app:1 in index.json"
' "$IMGBAKE_HOME"

  # The audit history, for people and as JSON.
  expect_exit 0 imgbake history app || return
  cp "$STDOUT" history.txt
  expect_match history.txt "^ +1 +[0-9T:Z-]+ +$WHO +commit +app:1\$"
  expect_match history.txt "^ +2 +[0-9T:Z-]+ +$WHO +commit +app:2\$"
  expect_match history.txt "^ +3 +[0-9T:Z-]+ +$WHO +promote staging +app:1  \(passed QA\)\$"
  expect_match history.txt "^ +4 +[0-9T:Z-]+ +$WHO +promote production +app:1  \(release 1\)\$"
  expect_match history.txt "^ +5 +[0-9T:Z-]+ +$WHO +promote production +app:1 -> app:2  \(release 2\)\$"
  expect_match history.txt "^ +6 +[0-9T:Z-]+ +$WHO +rollback production +app:2 -> app:1  \(errors in release 2\)\$"
  expect_exit 0 imgbake history app --channel production
  expect_eq "history --channel production: entries" "3" "$(grep -c 'production' "$STDOUT")"
  expect_not_contains "$STDOUT" "staging"

  # Revocation: kept in the list, refused by promote.
  expect_exit 0 imgbake revoke app:1 --reason CVE-2026-0001
  expect_contains "$STDOUT" "revoked app:1"
  # Both channels point at app:1: said at once, with how to move them.
  expect_contains "$STDERR" "warning: channel 'production' of app points at app:1, which is now revoked; move it with \`imgbake rollback app --channel production\`"
  expect_contains "$STDERR" "warning: channel 'staging' of app points at app:1, which is now revoked"
  expect_exit 0 imgbake images app
  expect_match "$STDOUT" '^app:1 .*REVOKED: CVE-2026-0001'
  expect_no_match "$STDOUT" '^app:2 .*REVOKED'
  expect_exit 0 imgbake show app:1
  expect_contains "$STDOUT" "REVOKED:    CVE-2026-0001"
  expect_exit 1 imgbake promote app:1 --channel staging --reason "again"
  expect_contains "$STDERR" "revoked"
  expect_contains "$STDERR" "CVE-2026-0001"
  expect_exit 1 imgbake promote app:1 --channel qa
  expect_contains "$STDERR" "revoked"
  expect_eq "app:qa was not created by the refused promotion" "" "$(image_of app:qa)"
  # A revocation needs a reason (a usage error, status 2).
  expect_exit 2 imgbake revoke app:2
  expect_contains "$STDERR" "--reason"
  expect_exit 0 imgbake images app --output json
  cp "$STDOUT" images.json
  py_check "app:2 is not revoked by a revoke without --reason" '
import json
imgs = {i["ref"]: i for i in json.load(open("images.json"))}
assert imgs["app:2"]["revoked"] is False, imgs["app:2"]
assert imgs["app:1"]["revoked"] is True and imgs["app:1"]["revoked_reason"] == "CVE-2026-0001", imgs["app:1"]
'

  expect_exit 0 imgbake history app --output json || return
  cp "$STDOUT" history.json
  py_check "history --output json: commit, promote, rollback, revoke in order, with who and reasons" '
import json, sys
h = json.load(open("history.json"))
got = [(e["action"], e["channel"], e["from"], e["to"], e["reason"]) for e in h]
want = [("commit", "", "", "app:1", ""),
        ("commit", "", "", "app:2", ""),
        ("promote", "staging", "", "app:1", "passed QA"),
        ("promote", "production", "", "app:1", "release 1"),
        ("promote", "production", "app:1", "app:2", "release 2"),
        ("rollback", "production", "app:2", "app:1", "errors in release 2"),
        ("revoke", "", "", "app:1", "CVE-2026-0001")]
assert got == want, "\n got: %r\nwant: %r" % (got, want)
seqs = [e["seq"] for e in h]
assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), seqs
assert all(e["who"] == sys.argv[1] for e in h), [e["who"] for e in h]
assert all(e["hash"].startswith("sha256:") for e in h)
' "$WHO"
  expect_exit 0 imgbake store check
  expect_match "$STDOUT" ': OK$'
}

test_verify_provenance_and_git() {
  fresh_store
  write_app_template
  local commit=""
  if have_git; then
    check "git init + commit of the template" git_commit_all || return
    commit=$(git rev-parse HEAD)
  else
    skip "git is not installed: the git commit in the provenance is not checked"
  fi
  build_app 1 || return
  build_app 2 || return
  local tdigest
  tdigest=$(sha256sum app.json | cut -d' ' -f1)
  expect_exit 0 imgbake verify app:2 || return
  expect_match "$STDOUT" '^VERIFIED app:2 \(sha256:[0-9a-f]{64}\)$'
  expect_match "$STDOUT" '^  signed by: +sha256:[0-9a-f]{64}$'
  expect_match "$STDOUT" '^  builder: +[^ -]'
  expect_contains "$STDOUT" "  template:   sha256:$tdigest"
  expect_no_match "$STDOUT" 'problem:'
  if [ -n "$commit" ]; then
    expect_contains "$STDOUT" "  git commit: $commit"
    expect_exit 0 imgbake show app:2
    expect_contains "$STDOUT" "git commit: $commit"
    expect_contains "$STDOUT" "org.opencontainers.image.revision=$commit"
    # The store lives in the repository's directory, untracked: the tree is clean.
    expect_contains "$STDOUT" "io.imgbake.git.dirty=false"
  fi
  expect_exit 0 imgbake show app:2
  expect_contains "$STDOUT" "template:   sha256:$tdigest"
  expect_contains "$STDOUT" "builder:    file"
  expect_match "$STDOUT" '^provenance: sha256:[0-9a-f]{64} \(signature verifies, key sha256:[0-9a-f]{64}\)$'
  # The key verify names is the default key's id (keygen prints the same form).
  local keyid
  keyid=$(sed -n 's/^  signed by: *//p' < <("$IMGBAKE" verify app:2))
  expect_exit 0 imgbake verify app:2 --output json || return
  cp "$STDOUT" verify.json
  py_check "verify --output json" '
import json, sys
v = json.load(open("verify.json"))
assert v["verified"] is True and v["problems"] == [], v
assert v["ref"] == "app:2", v["ref"]
assert v["template_sha256"] == sys.argv[1], (v["template_sha256"], sys.argv[1])
assert v["git_commit"] == sys.argv[2], (v["git_commit"], sys.argv[2])
assert v["builder"], "no builder in the provenance"
assert v["keyid"] == sys.argv[3], (v["keyid"], sys.argv[3])
' "$tdigest" "$commit" "$keyid"
  # Both versions verify, and the store check agrees.
  expect_exit 0 imgbake verify app:1
  expect_exit 0 imgbake store check
  expect_match "$STDOUT" ': OK$'
}

test_skopeo_reads_the_store() {
  fresh_store
  write_app_template '{"image": "app", "labels": {"team": "web"}, "channels": ["dev"]}'
  build_app 1 || return
  build_app 2 || return
  cp out/app.txt app-v2.txt
  local d2
  d2=$(sed -n 's/^digest: *//p' < <("$IMGBAKE" show app:2))
  expect_exit 0 skopeo inspect "oci:$IMGBAKE_HOME:app:2" || return
  cp "$STDOUT" inspect2.json
  py_check "skopeo inspect oci:STORE:app:2 shows the labels and the digest" '
import json, sys, hashlib
d = json.load(open("inspect2.json"))
l = d["Labels"]
assert l.get("org.opencontainers.image.version") == "2", l
assert l.get("team") == "web", l
assert l.get("io.imgbake.build") == "app", l
assert d["Digest"] == sys.argv[1], (d["Digest"], sys.argv[1])
layer = "sha256:" + hashlib.sha256(open("app-v2.txt", "rb").read()).hexdigest()
# The artifact, then build-info.json (the image carries its own pedigree).
assert len(d["Layers"]) == 2 and d["Layers"][0] == layer, (d["Layers"], layer)
' "$d2"
  expect_exit 0 skopeo inspect "oci:$IMGBAKE_HOME:app:1"
  expect_contains "$STDOUT" '"org.opencontainers.image.version": "1"'
  # A channel is a tag too.
  expect_exit 0 skopeo inspect "oci:$IMGBAKE_HOME:app:dev"
  expect_contains "$STDOUT" "\"Digest\": \"$d2\""
  expect_exit 0 skopeo --insecure-policy copy "oci:$IMGBAKE_HOME:app:2" "dir:$TEST_DIR/copy" || return
  expect_file "$TEST_DIR/copy/manifest.json" || return
  local layer
  layer=$(json_get "$TEST_DIR/copy/manifest.json" 'd["layers"][0]["digest"]')
  expect_file "$TEST_DIR/copy/${layer#sha256:}" || return
  check "the copied layer equals out/app.txt of build 2 (cmp)" cmp "$TEST_DIR/copy/${layer#sha256:}" app-v2.txt
  expect_file_content "$TEST_DIR/copy/${layer#sha256:}" "v2"
}

test_export_tar() {
  fresh_store
  write_app_template
  build_app 1 || return
  build_app 2 || return
  cp out/app.txt app-v2.txt
  build_app 3 || return
  expect_exit 0 imgbake export app:2 --format tar -o x.tar || return
  expect_contains "$STDOUT" "exported app:2"
  expect_file x.tar || return
  expect_no_file x.tar.imgbake-tmp
  tar -xOf x.tar app.txt >extracted.txt 2>tar.err
  expect_eq "tar -xOf x.tar app.txt exit status" "0" "$?"
  check "the exported app.txt equals build 2's artifact (cmp)" cmp extracted.txt app-v2.txt
  expect_eq "files in x.tar" "app.txt build-info.json" "$(tar -tf x.tar | tr '\n' ' ' | sed 's/ $//')"
  py_check "build-info.json names the image, version and template digest" '
import json, subprocess, sys
info = json.loads(subprocess.run(["tar", "-xOf", "x.tar", "build-info.json"], capture_output=True).stdout)
assert info["image"] == "app" and info["version"] == "2", info
assert info["template_digest"].startswith("sha256:") and len(info["template_digest"]) == 71, info
' 
  # A file image has no disk to convert.
  expect_exit 1 imgbake export app:2 --format raw -o x.raw
  expect_match "$STDERR" 'not a disk|tar'
  expect_no_file x.raw
}

test_labels() {
  fresh_store
  set_who
  write_app_template '{"image": "app", "labels": {"team": "core", "owner": "ops"}}'
  build_app 1 --label team=web --label cost-center=42 || return
  build_app 2 --label team=web || return
  expect_exit 0 imgbake label app:2 tier=gold region=eu-1
  expect_contains "$STDOUT" "labelled app:2"
  expect_exit 2 imgbake label app:2 not-a-pair
  expect_contains "$STDERR" "key=value"
  expect_exit 1 imgbake label app:9 tier=gold
  expect_exit 0 imgbake show app:2 --output json || return
  cp "$STDOUT" show2.json
  py_check "show --output json: template labels, --label (overriding the template) and label" '
import json
d = json.load(open("show2.json"))
l = d["labels"]
for k, v in {"owner": "ops", "team": "web", "tier": "gold", "region": "eu-1"}.items():
    assert l.get(k) == v, (k, l)
assert "cost-center" not in l, "a --label of another build leaked into app:2: %r" % l
assert d["ref"] == "app:2" and d["provenance_verified"] is True, d
'
  expect_exit 0 imgbake show app:1 --output json || return
  cp "$STDOUT" show1.json
  py_check "app:1 keeps its own labels (label app:2 does not touch it)" '
import json
l = json.load(open("show1.json"))["labels"]
assert l.get("cost-center") == "42" and l.get("team") == "web" and l.get("owner") == "ops", l
assert "tier" not in l, l
'
  expect_exit 0 imgbake show app:2
  expect_contains "$STDOUT" "  tier=gold"
  expect_contains "$STDOUT" "  team=web"
  # Relabelling is audited, with the old value.
  expect_exit 0 imgbake label app:2 tier=platinum
  expect_exit 0 imgbake history app --output json
  cp "$STDOUT" h.json
  py_check "label changes are in the history" '
import json, sys
h = [e for e in json.load(open("h.json")) if e["action"] == "label"]
assert len(h) == 3, h
assert all(e["to"] == "app:2" and e["who"] == sys.argv[1] for e in h), h
' "$WHO"
  # The image itself (its signed manifest and config) does not change with a label.
  expect_exit 0 imgbake verify app:2
  expect_exit 0 imgbake store check
}

test_protected_channel() {
  fresh_store
  write_app_template
  build_app 1 || return
  build_app 2 || return
  build_app 3 || return
  expect_exit 0 imgbake promote app:2 --channel prod --protect --reason "first release"
  expect_match "$STDOUT" '^app:prod -> app:2 '
  expect_not_contains "$STDERR" "not verified"
  expect_eq "app:prod" "app:2" "$(image_of app:prod)"

  # Without the signing key (another user, a CI runner without it): no trusted key,
  # so nothing can be promoted into the protected channel.
  local saved_config=$IMGBAKE_CONFIG_HOME
  mkdir -p "$TEST_DIR/empty-config"
  export IMGBAKE_CONFIG_HOME="$TEST_DIR/empty-config"
  expect_no_file "$IMGBAKE_HOME/trusted"
  expect_exit 1 imgbake promote app:3 --channel prod --reason "next release"
  expect_contains "$STDERR" "signature"
  expect_contains "$STDERR" "prod"
  expect_eq "app:prod after the refused promotion" "app:2" "$(image_of app:prod)"
  # Refusal did not create a key either.
  expect_no_file "$TEST_DIR/empty-config/signing.key"
  # An unprotected channel still takes it, with a warning; its audit entry is signed, so this
  # user gets a key of their own.
  expect_exit 0 imgbake promote app:3 --channel qa
  expect_contains "$STDERR" "not verified"
  expect_file "$TEST_DIR/empty-config/signing.key"
  export IMGBAKE_CONFIG_HOME=$saved_config

  # With the key back, the same promotion works: the refusal was about the signature.
  expect_exit 0 imgbake promote app:3 --channel prod --reason "next release"
  expect_eq "app:prod with the key back" "app:3" "$(image_of app:prod)"

  # An image signed by a key the store does not trust is refused too ...
  expect_exit 0 imgbake keygen -o "$TEST_DIR/other.pem" || return
  build_app 4 --signing-key "$TEST_DIR/other.pem" || return
  expect_exit 1 imgbake promote app:4 --channel prod
  expect_contains "$STDERR" "signature"
  expect_eq "app:prod after refusing app:4" "app:3" "$(image_of app:prod)"
  # ... until the user trusts its public key (in their configuration, not in the store).
  mkdir -p "$IMGBAKE_CONFIG_HOME/trusted"
  cp "$TEST_DIR/other.pem.pub" "$IMGBAKE_CONFIG_HOME/trusted/other.pub"
  expect_exit 0 imgbake promote app:4 --channel prod --reason "other team's key is trusted now"
  expect_eq "app:prod with the other key trusted" "app:4" "$(image_of app:prod)"
  expect_exit 0 imgbake history app --channel prod --output json
  cp "$STDOUT" prod.json
  py_check "the protected channel's history has only the accepted promotions" '
import json
h = json.load(open("prod.json"))
assert [(e["action"], e["to"]) for e in h] == [("promote", "app:2"), ("promote", "app:3"), ("promote", "app:4")], h
'
}

test_keygen_and_signing_key() {
  fresh_store
  write_app_template
  expect_exit 0 imgbake keygen -o keys/release.pem || return
  expect_match "$STDOUT" '^keyid: +sha256:[0-9a-f]{64}$'
  local keyid
  keyid=$(sed -n 's/^keyid: *//p' "$STDOUT")
  expect_file keys/release.pem || return
  expect_eq "mode of keys/release.pem" "600" "$(stat -c %a keys/release.pem)"
  expect_file keys/release.pem.pub || return
  expect_contains keys/release.pem "PRIVATE KEY"
  expect_contains keys/release.pem.pub "PUBLIC KEY"
  expect_not_contains keys/release.pem.pub "PRIVATE"
  # An existing key is not replaced without --force.
  cp keys/release.pem before.pem
  expect_exit 1 imgbake keygen -o keys/release.pem
  expect_contains "$STDERR" "exists"
  check "keygen without --force left the key as it was" cmp -s before.pem keys/release.pem
  expect_exit 0 imgbake keygen -o keys/other.pem || return

  build_app 1 --signing-key keys/release.pem || return
  expect_contains "$STDOUT" "provenance signed by $keyid"
  # A key given on the command line: no default key is made.
  expect_no_file "$IMGBAKE_CONFIG_HOME/signing.key"
  expect_not_contains "$STDERR" "created the per-user default key"
  expect_exit 0 imgbake verify app:1 --key keys/release.pem.pub
  expect_match "$STDOUT" '^VERIFIED app:1 '
  expect_contains "$STDOUT" "signed by:  $keyid"
  expect_exit 1 imgbake verify app:1 --key keys/other.pem.pub
  expect_match "$STDOUT" '^NOT VERIFIED app:1 '
  expect_contains "$STDOUT" "signature"
  # Without --key (no default key, nothing trusted) it cannot verify either.
  expect_exit 1 imgbake verify app:1
  # keygen with no -o writes the per-user default key, mode 0600.
  expect_exit 0 imgbake keygen || return
  expect_file "$IMGBAKE_CONFIG_HOME/signing.key" &&
    expect_eq "mode of the default key" "600" "$(stat -c %a "$IMGBAKE_CONFIG_HOME/signing.key")"
  expect_file "$IMGBAKE_CONFIG_HOME/signing.key.pub"
  build_app 2 || return
  expect_exit 0 imgbake verify app:2
  expect_exit 1 imgbake verify app:2 --key keys/release.pem.pub
}

test_secrets_never_in_store() {
  fresh_store
  local secret='tok-Zq81-sup3r-s3cret'
  write_file app.json <<'EOF'
{
  "variables": {"n": "1", "api_token": ""},
  "sensitive-variables": ["api_token"],
  "builders": [{"type": "file", "name": "app", "content": "v{{user `n`}}", "target": "out/app.txt"}],
  "provisioners": [{"type": "shell-local", "inline": ["echo deploying with $T"],
                    "environment_vars": ["T={{user `api_token`}}"]}],
  "imgbake": {"image": "app", "labels": {"token": "{{user `api_token`}}", "team": "web"}, "channels": ["dev"]}
}
EOF
  build_app 1 -var "api_token=$secret" --label "note=uses $secret" || return
  echo "{\"api_token\": \"$secret\"}" >vars.json
  build_app 2 -var-file=vars.json || return
  # Not in any file of the store: blobs, catalog (and its WAL), index.json.
  local hits
  hits=$(grep -rlaF -- "$secret" "$IMGBAKE_HOME" 2>/dev/null || true)
  expect_eq "files under \$IMGBAKE_HOME holding the secret (as sensitive template variable)" "" \
    "$(echo "$hits" | grep -v -e '^$' || true)"
  py_check "no DSSE payload (base64) and no catalog row holds the template's sensitive variable" '
import base64, json, os, sqlite3, sys
home, secret = sys.argv[1], sys.argv[2]
blobs = os.path.join(home, "blobs", "sha256")
envelopes = 0
for name in os.listdir(blobs):
    data = open(os.path.join(blobs, name), "rb").read()
    try:
        doc = json.loads(data)
    except Exception:
        continue
    if isinstance(doc, dict) and "payload" in doc:
        envelopes += 1
        payload = base64.b64decode(doc["payload"]).decode()
        assert secret not in payload, "the provenance payload of blob %s holds the secret" % name
        assert "<sensitive>" in payload, "the sensitive variable is not recorded as <sensitive>"
assert envelopes >= 2, "expected the 2 provenance envelopes, found %d" % envelopes
db = sqlite3.connect("file:" + os.path.join(home, "catalog.db") + "?mode=ro", uri=True)
for table in ("images", "labels", "channels", "audit"):
    for row in db.execute("SELECT * FROM " + table):
        assert secret not in json.dumps(row), "catalog table %s holds the secret: %r" % (table, row)
labels = dict(db.execute("SELECT key, value FROM labels l JOIN images i ON l.image_id = i.id WHERE i.version = \"1\""))
assert labels.get("team") == "web" and "token" in labels, labels
' "$IMGBAKE_HOME" "$secret"
}

run_test build_commits_versions test_build_commits_versions
run_test template_channels_promote_every_build test_template_channels_promote_every_build
run_test promote_rollback_history_revoke test_promote_rollback_history_revoke
run_test verify_provenance_and_git test_verify_provenance_and_git
run_test skopeo_reads_the_store test_skopeo_reads_the_store
run_test export_tar test_export_tar
run_test labels test_labels
run_test protected_channel test_protected_channel
run_test keygen_and_signing_key test_keygen_and_signing_key
run_test secrets_never_in_store test_secrets_never_in_store
summary
