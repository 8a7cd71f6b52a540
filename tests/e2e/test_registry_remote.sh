#!/usr/bin/env bash
# End-to-end: promote, history, rollback, verify and revoke on a registry (signed records as
# referrers of the image), pull/copy refusing revoked images, and copy without staging blobs.
# A real docker-registry on 127.0.0.1; skopeo is the independent reader of the tags.
. "$(dirname "$0")/lib.sh"

SRC=$IMGBAKE_SOURCE_DIR
require_tools docker-registry skopeo python3 bwrap busybox tar

. "$(dirname "$0")/registry_lib.sh"

start_registry "$E2E_ROOT/reg" || exit 1
PORT=$REGISTRY_PORT
REG=127.0.0.1:$PORT
INSECURE=(--insecure-registry "$REG")

# build_two: hello:1 and hello:2 in the store (two digests).
build_two() {
  expect_exit 0 imgbake build "$SRC/templates/hello.json" || return
  expect_exit 0 imgbake build "$SRC/templates/hello.json"
}
digest_of() { imgbake show "$1" --output json | json_get /dev/stdin 'd["digest"]'; }
# tag_digest REPO TAG: the digest skopeo sees behind the tag.
tag_digest() {
  skopeo inspect --tls-verify=false --raw "docker://$REG/$1:$2" | sha256sum | sed 's/^/sha256:/; s/ .*//'
}
# put_manifest REPO REF FILE MEDIATYPE: a raw PUT, as another tool (or an attacker) would do it.
put_manifest() {
  python3 -c 'import sys, urllib.request
req = urllib.request.Request(sys.argv[1], data=open(sys.argv[2], "rb").read(), method="PUT",
                             headers={"Content-Type": sys.argv[3]})
urllib.request.urlopen(req)' "http://$REG/v2/$1/manifests/$2" "$3" "$4"
}
# tag_digest and put_manifest use $REG: a test with its own registry sets a local REG.

test_promote_history_rollback() {
  build_two || return
  local d1 d2
  d1=$(digest_of hello:1)
  d2=$(digest_of hello:2)
  expect_exit 0 imgbake push hello:1 "$REG/team/hello" "${INSECURE[@]}" || return
  expect_exit 0 imgbake push hello:2 "$REG/team/hello" "${INSECURE[@]}" || return
  expect_exit 0 imgbake promote "$REG/team/hello:1" --channel staging --reason "smoke passed" "${INSECURE[@]}" || return
  expect_contains "$STDOUT" "$REG/team/hello:staging -> $d1"
  expect_eq "skopeo: staging after the first promotion" "$d1" "$(tag_digest team/hello staging)"
  expect_exit 0 imgbake promote "$REG/team/hello@$d2" --channel staging "${INSECURE[@]}" || return
  expect_eq "skopeo: staging after the second promotion" "$d2" "$(tag_digest team/hello staging)"
  expect_exit 1 imgbake promote "$REG/team/hello:2" --channel staging "${INSECURE[@]}"
  expect_contains "$STDERR" "already in channel 'staging'"

  expect_exit 0 imgbake history "$REG/team/hello" --channel staging "${INSECURE[@]}" --output json || return
  py_check "history: both promotions, newest first, verified" 'import json, sys
h = json.load(open(sys.argv[1]))
assert [(e["action"], e["to"], e["from"]) for e in h] == [("promote", sys.argv[3], sys.argv[2]), ("promote", sys.argv[2], "")], h
assert all(e["verified"] for e in h), h
assert h[0]["previous"] == h[1]["hash"], "the second record chains to the first"
assert h[1]["reason"] == "smoke passed"' "$STDOUT" "$d1" "$d2"
  expect_exit 0 imgbake history "$REG/team/hello" "${INSECURE[@]}"
  expect_match "$STDOUT" "promote staging +${d1:0:19} -> ${d2:0:19}"
  expect_not_contains "$STDOUT" "UNVERIFIED"

  expect_exit 0 imgbake rollback "$REG/team/hello" --channel staging --reason "5xx" "${INSECURE[@]}" || return
  expect_eq "skopeo: staging after the rollback" "$d1" "$(tag_digest team/hello staging)"
  expect_exit 0 imgbake history "$REG/team/hello" --channel staging "${INSECURE[@]}" --output json
  expect_eq "newest record" "rollback $d2 $d1" "$(json_get "$STDOUT" '" ".join([d[0]["action"], d[0]["from"], d[0]["to"]])')"
}

test_a_record_signed_by_another_key_is_flagged_and_ignored() {
  build_two || return
  local d1 d2
  d1=$(digest_of hello:1)
  d2=$(digest_of hello:2)
  expect_exit 0 imgbake push hello:1 "$REG/tamper/hello" "${INSECURE[@]}" || return
  expect_exit 0 imgbake push hello:2 "$REG/tamper/hello" "${INSECURE[@]}" || return
  expect_exit 0 imgbake promote "$REG/tamper/hello:1" --channel staging "${INSECURE[@]}" || return
  expect_exit 0 imgbake promote "$REG/tamper/hello:2" --channel staging "${INSECURE[@]}" || return
  # Someone with another key records a promotion of 1; the tag itself is put back.
  expect_exit 0 imgbake keygen -o "$TEST_DIR/intruder.key" || return
  expect_exit 0 imgbake promote "$REG/tamper/hello:1" --channel staging --signing-key "$TEST_DIR/intruder.key" \
    "${INSECURE[@]}" || return
  expect_exit 0 skopeo copy --src-tls-verify=false --dest-tls-verify=false \
    "docker://$REG/tamper/hello@$d2" "docker://$REG/tamper/hello:staging" || return
  expect_exit 0 imgbake history "$REG/tamper/hello" --channel staging "${INSECURE[@]}"
  expect_match "$STDOUT" "^ +3 .*promote staging .*UNVERIFIED: signature"
  expect_eq "records shown" 3 "$(wc -l <"$STDOUT")"
  expect_exit 0 imgbake history "$REG/tamper/hello" --channel staging "${INSECURE[@]}" --output json
  expect_eq "verified flags, newest first" "[false, true, true]" "$(json_get "$STDOUT" '[e["verified"] for e in d]')"
  # Rollback replays only trusted records: staging goes back from 2 to 1 (trusting the
  # forged record would have meant going back to 2, where it is now).
  expect_exit 0 imgbake rollback "$REG/tamper/hello" --channel staging "${INSECURE[@]}" || return
  expect_eq "skopeo: staging after the rollback" "$d1" "$(tag_digest tamper/hello staging)"
}

test_verify_remote() {
  # Its own registry: the builds are reproducible, and this test damages a blob in storage.
  local port REG INSECURE
  start_registry "$TEST_DIR/reg" || return
  port=$REGISTRY_PORT
  REG=127.0.0.1:$port
  INSECURE=(--insecure-registry "$REG")
  build_two || return
  local d1 d2
  d1=$(digest_of hello:1)
  d2=$(digest_of hello:2)
  expect_exit 0 imgbake push hello:1 "$REG/verify/hello" "${INSECURE[@]}" || return
  expect_exit 0 imgbake push hello:2 "$REG/verify/hello" "${INSECURE[@]}" || return
  expect_exit 0 imgbake verify "$REG/verify/hello:1" "${INSECURE[@]}" || return
  expect_contains "$STDOUT" "VERIFIED $REG/verify/hello:1 ($d1)"
  expect_contains "$STDOUT" "signed by:  sha256:"
  expect_exit 0 imgbake verify "$REG/verify/hello@$d2" "${INSECURE[@]}" --output json
  expect_eq "verified (json)" "True" "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["verified"])' "$STDOUT")"

  # The provenance envelope of 1 changes in the registry's storage.
  local ref_digest env_digest blob
  ref_digest=$(skopeo inspect --tls-verify=false --raw "docker://$REG/verify/hello:${d1/:/-}" |
    json_get /dev/stdin '[m["digest"] for m in d["manifests"] if m["artifactType"] == "application/vnd.in-toto+json"][0]')
  env_digest=$(skopeo inspect --tls-verify=false --raw "docker://$REG/verify/hello@$ref_digest" |
    json_get /dev/stdin 'd["layers"][0]["digest"]')
  blob=$TEST_DIR/reg/data/docker/registry/v2/blobs/sha256/${env_digest:7:2}/${env_digest:7}/data
  expect_file "$blob" || return
  python3 -c 'import sys
b = bytearray(open(sys.argv[1], "rb").read()); i = b.index(b"\"payload\":\"") + 12
b[i] = ord("A") if b[i] != ord("A") else ord("B"); open(sys.argv[1], "wb").write(b)' "$blob"
  expect_exit 1 imgbake verify "$REG/verify/hello:1" "${INSECURE[@]}"
  expect_contains "$STDOUT" "NOT VERIFIED $REG/verify/hello:1"
  expect_contains "$STDOUT" "problem: provenance envelope:"

  # The referrer of 2 is swapped for the one of 1 (the referrers tag of 2 lists 1's index).
  skopeo inspect --tls-verify=false --raw "docker://$REG/verify/hello:${d1/:/-}" >index1.json
  put_manifest verify/hello "${d2/:/-}" index1.json application/vnd.oci.image.index.v1+json || return
  expect_exit 1 imgbake verify "$REG/verify/hello:2" "${INSECURE[@]}"
  expect_contains "$STDOUT" "problem: the provenance referrer $ref_digest is about $d1, not $d2"
}

test_revoked_images_are_refused() {
  expect_exit 0 imgbake build "$SRC/templates/hello.json" || return
  local d1
  d1=$(digest_of hello:1)
  # A local promotion goes along with the push as a signed record, imported from the store.
  expect_exit 0 imgbake promote hello:1 --channel qa || return
  expect_exit 0 imgbake push hello:1 "$REG/rev/hello" "${INSECURE[@]}" --output json || return
  expect_eq "records pushed" 1 "$(json_get <(tail -n 1 "$STDOUT") 'len(d["records"])')"
  expect_exit 0 imgbake history "$REG/rev/hello" "${INSECURE[@]}"
  expect_contains "$STDOUT" "promote qa"
  expect_contains "$STDOUT" "[imported from the local store: hello]"

  expect_exit 0 imgbake revoke "$REG/rev/hello@$d1" --reason "CVE-2026-1 in openssl" "${INSECURE[@]}" || return
  expect_contains "$STDOUT" "revoked $REG/rev/hello@$d1"
  expect_exit 0 imgbake revoke "$REG/rev/hello:1" --reason "again" "${INSECURE[@]}"
  expect_contains "$STDOUT" "already revoked"

  export IMGBAKE_HOME=$TEST_DIR/other-store
  expect_exit 1 imgbake pull "$REG/rev/hello:1" "${INSECURE[@]}"
  expect_contains "$STDERR" "is revoked: CVE-2026-1 in openssl (revocation record sha256:"
  expect_contains "$STDERR" "--allow-revoked"
  expect_exit 1 imgbake copy "$REG/rev/hello:1" "$REG/rev-copy/hello:1" "${INSECURE[@]}"
  expect_contains "$STDERR" "is revoked: CVE-2026-1 in openssl"
  expect_exit 1 imgbake verify "$REG/rev/hello:1" "${INSECURE[@]}"
  expect_contains "$STDOUT" "problem: the image is revoked: CVE-2026-1 in openssl"

  expect_exit 0 imgbake pull "$REG/rev/hello:1" --allow-revoked "${INSECURE[@]}" || return
  expect_exit 0 imgbake show hello:1 --output json
  expect_eq "revoked in the local store" "True CVE-2026-1 in openssl" \
    "$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["revoked"], d["revoked_reason"])' "$STDOUT")"
  expect_exit 0 imgbake copy "$REG/rev/hello:1" "$REG/rev-copy/hello:1" --allow-revoked "${INSECURE[@]}"
}

test_copy_mounts_or_streams() {
  expect_exit 0 imgbake build "$SRC/templates/hello.json" || return
  local d1
  d1=$(digest_of hello:1)
  expect_exit 0 imgbake push hello:1 "$REG/copy-src/hello" "${INSECURE[@]}" || return
  # One registry: every blob is mounted, none streamed.
  expect_exit 0 imgbake copy "$REG/copy-src/hello:1" "$REG/copy-dst/hello:1" "${INSECURE[@]}" --output json || return
  py_check "mounted, 0 bytes" 'import json, sys
r = json.loads(open(sys.argv[1]).read().splitlines()[-1])
assert r["digest"] == sys.argv[2], r
assert r["blob_bytes"] == 0 and r["blobs_sent"] == 0 and r["blobs_mounted"] >= 2, r' "$STDOUT" "$d1"
  expect_eq "skopeo: copied digest" "$d1" "$(tag_digest copy-dst/hello 1)"
  expect_exit 0 imgbake verify "$REG/copy-dst/hello:1" "${INSECURE[@]}"

  # Two registries: streamed through memory; TMPDIR does not even exist.
  local port2
  start_registry "$TEST_DIR/reg2" || return
  port2=$REGISTRY_PORT
  TMPDIR=$TEST_DIR/no-such-dir expect_exit 0 imgbake copy "$REG/copy-src/hello:1" "127.0.0.1:$port2/mirror/hello:1" \
    "${INSECURE[@]}" --insecure-registry "127.0.0.1:$port2" --output json || return
  py_check "streamed, nothing staged" 'import json, sys
r = json.loads(open(sys.argv[1]).read().splitlines()[-1])
assert r["digest"] == sys.argv[2], r
assert r["blobs_staged"] == 0 and r["blobs_mounted"] == 0 and r["blobs_sent"] >= 2 and r["blob_bytes"] > 0, r' \
    "$STDOUT" "$d1"
  expect_exit 0 skopeo inspect --tls-verify=false --raw "docker://127.0.0.1:$port2/mirror/hello:1"
  expect_eq "skopeo: mirrored digest" "$d1" "sha256:$(sha256sum <"$STDOUT" | cut -d' ' -f1)"
  expect_exit 0 imgbake verify "127.0.0.1:$port2/mirror/hello:1" --insecure-registry "127.0.0.1:$port2"
}

test_rootfs_image_round_trip() {
  # A rootfs image has untitled container layers (named "layer N" by its provenance): push, verify
  # on the registry, pull into another store, verify there (the walk-through's remote verify of a
  # rootfs image failed with "subject 'layer 1' is not part of …").
  local root="$TEST_DIR/bb-root"
  mkdir -p "$root/bin" "$root/etc" "$root/tmp" "$root/proc" "$root/dev" "$root/root"
  cp /bin/busybox "$root/bin/busybox"
  local c
  for c in sh echo cat; do ln -sf busybox "$root/bin/$c"; done
  tar -C "$root" -czf bb.tar.gz .
  write_file rootfs.json <<'EOF'
{
  "builders": [{"type": "rootfs", "source": "tar:bb.tar.gz"}],
  "provisioners": [{"type": "shell", "inline": ["echo hi > /etc/motd"]}],
  "imgbake": {"image": "rt"}
}
EOF
  expect_exit 0 imgbake build rootfs.json || return
  local d
  d=$(digest_of rt:1)
  expect_exit 0 imgbake push rt:1 "$REG/rootfs/rt" "${INSECURE[@]}" || return
  expect_exit 0 imgbake verify "$REG/rootfs/rt:1" "${INSECURE[@]}"
  expect_contains "$STDOUT" "VERIFIED $REG/rootfs/rt:1 ($d)"
  expect_not_contains "$STDOUT" "is not part of"
  expect_exit 0 imgbake promote "$REG/rootfs/rt:1" --channel prod "${INSECURE[@]}"
  export IMGBAKE_HOME=$TEST_DIR/other-store
  expect_exit 0 imgbake pull "$REG/rootfs/rt:1" "${INSECURE[@]}" || return
  expect_exit 0 imgbake verify rt:1
  expect_contains "$STDOUT" "VERIFIED rt:1"
}

run_test promote_history_rollback test_promote_history_rollback
run_test a_record_signed_by_another_key_is_flagged_and_ignored test_a_record_signed_by_another_key_is_flagged_and_ignored
run_test verify_remote test_verify_remote
run_test revoked_images_are_refused test_revoked_images_are_refused
run_test copy_mounts_or_streams test_copy_mounts_or_streams
run_test rootfs_image_round_trip test_rootfs_image_round_trip
summary
