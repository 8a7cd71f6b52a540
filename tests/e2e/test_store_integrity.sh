# End-to-end: tamper detection in the image store. After a good build, each test
# damages a fresh copy of the store (cp -a) the way a disk fault, a careless admin
# or an attacker would, and expects `imgbake verify` and `imgbake store check` to
# fail and to name what is wrong. Also `store gc` with stray blobs.
. "$(dirname "$0")/lib.sh"

write_app_template() {
  write_file app.json <<'EOF'
{
  "variables": {"n": "0"},
  "builders": [{"type": "file", "name": "app", "content": "v{{user `n`}}\n", "target": "out/app.txt"}],
  "imgbake": {"image": "app", "channels": ["dev"]}
}
EOF
}

# The pristine store: two builds (app:1, app:2) made once for the whole suite, with
# its signing key; every test works on its own copy.
PRISTINE="$E2E_ROOT/pristine"
PRISTINE_CONFIG="$E2E_ROOT/pristine-config"

make_pristine() {
  [ -e "$PRISTINE.ok" ] && return 0
  rm -rf "$PRISTINE" "$PRISTINE_CONFIG"
  (
    export IMGBAKE_HOME="$PRISTINE" IMGBAKE_CONFIG_HOME="$PRISTINE_CONFIG"
    mkdir -p "$E2E_ROOT/pristine-src" && cd "$E2E_ROOT/pristine-src" || exit 1
    write_app_template
    "$IMGBAKE" build -var n=1 app.json >build1.log 2>&1 || exit 1
    "$IMGBAKE" build -var n=2 app.json >build2.log 2>&1 || exit 1
  ) && touch "$PRISTINE.ok"
}

# use_copy: IMGBAKE_HOME becomes a fresh copy (cp -a) of the pristine store.
use_copy() {
  cp -a "$PRISTINE" "$TEST_DIR/store" || return 1
  export IMGBAKE_HOME="$TEST_DIR/store" IMGBAKE_CONFIG_HOME="$PRISTINE_CONFIG"
}

# Facts about an image, from the CLI (as a user would find them).
layer_digest() { "$IMGBAKE" show "$1" --output json | python3 -c 'import json,sys; print(json.load(sys.stdin)["manifest"]["layers"][0]["digest"])'; }
manifest_digest() { "$IMGBAKE" show "$1" --output json | python3 -c 'import json,sys; print(json.load(sys.stdin)["digest"])'; }
provenance_digest() { "$IMGBAKE" show "$1" --output json | python3 -c 'import json,sys; print(json.load(sys.stdin)["provenance"])'; }
blob_path() { echo "$IMGBAKE_HOME/blobs/sha256/${1#sha256:}"; }

# flip_byte FILE: flips the lowest bit of the byte in the middle of FILE.
flip_byte() {
  chmod u+w "$1" && python3 - "$1" <<'EOF'
import sys
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
i = len(b) // 2
b[i] ^= 0x01
open(p, "wb").write(b)
EOF
}

# sql STATEMENT: runs SQL on the store's catalog (python3's sqlite3; no sqlite3 CLI needed).
sql() {
  python3 - "$IMGBAKE_HOME/catalog.db" "$1" <<'EOF'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
cur = db.execute(sys.argv[2])
db.commit()
assert cur.rowcount != 0, "the statement changed no row: " + sys.argv[2]
EOF
}

# The suite needs python3 for tampering and for reading JSON.
need_python() {
  if ! have_python; then
    skip "python3 is not available: cannot tamper with the store"
    return 1
  fi
  make_pristine || { fail "building the pristine store" "2 builds succeed" "$(cat "$E2E_ROOT"/pristine-src/*.log)"; return 1; }
  use_copy
}

expect_check_fails_naming() {
  # expect_check_fails_naming WHAT TEXT...: store check exits 1 and its PROBLEM lines hold every TEXT.
  local what=$1 t
  shift
  expect_exit 1 imgbake store check || return 1
  grep '^PROBLEM: ' "$STDOUT" >problems.txt
  for t in "$@"; do
    expect_contains problems.txt "$t" || { e2e_show_file "store check ($what)" "$STDOUT"; return 1; }
  done
  expect_match "$STDOUT" ': [0-9]+ problem\(s\)$'
}

# ---------------------------------------------------------------------------

test_check_ok_after_build() {
  need_python || return 0
  expect_exit 0 imgbake store check || return
  expect_match "$STDOUT" '^store .*: 2 images, [0-9]+ blobs checked, [0-9]+ audit entries: OK$'
  expect_no_match "$STDOUT" '^PROBLEM'
  expect_exit 0 imgbake store check --output json
  cp "$STDOUT" check.json
  py_check "store check --output json says ok" '
import json
d = json.load(open("check.json"))
assert d["ok"] is True and d["problems"] == [] and d["images"] == 2, d
assert d["audit_entries"] == 4, d  # 2 commits + 2 promotions to dev
'
  expect_exit 0 imgbake verify app:1
  expect_exit 0 imgbake verify app:2
  # The blobs are read-only on disk.
  local l
  l=$(layer_digest app:2)
  expect_eq "mode of a layer blob" "444" "$(stat -c %a "$(blob_path "$l")")"
}

test_layer_blob_flipped() {
  need_python || return 0
  local l
  l=$(layer_digest app:2)
  flip_byte "$(blob_path "$l")" || return
  expect_exit 1 imgbake verify app:2
  expect_match "$STDOUT" '^NOT VERIFIED app:2 '
  expect_contains "$STDOUT" "$l"
  expect_contains "$STDOUT" "corrupt"
  expect_check_fails_naming "flipped layer" "app:2: blob $l is corrupt"
  # The other image is untouched and still verifies.
  expect_exit 0 imgbake verify app:1
  # The corrupt content is not handed out as the image.
  expect_exit 1 imgbake export app:2 --format tar -o x.tar
  expect_no_file x.tar
}

# rewrite_payload IN OUT: the DSSE envelope IN with one byte of its decoded payload
# changed (the template path app.json -> app.jsoN), re-encoded, written to OUT.
rewrite_payload() {
  python3 - "$1" "$2" <<'EOF'
import base64, json, sys
env = json.load(open(sys.argv[1]))
payload = base64.b64decode(env["payload"])
i = payload.index(b'"app.json"') + len(b'"app.jso')
payload = payload[:i] + b"N" + payload[i + 1:]
json.loads(payload)  # still a valid statement: only the signature can tell
env["payload"] = base64.b64encode(payload).decode()
with open(sys.argv[2], "w") as f:
    f.write(json.dumps(env, separators=(",", ":")))
EOF
}

test_envelope_payload_changed_in_place() {
  need_python || return 0
  local p file
  p=$(provenance_digest app:2)
  file=$(blob_path "$p")
  chmod u+w "$file"
  rewrite_payload "$file" "$TEST_DIR/env.json" || return
  cat "$TEST_DIR/env.json" >"$file"
  expect_exit 1 imgbake verify app:2
  expect_match "$STDOUT" '^NOT VERIFIED app:2 '
  expect_contains "$STDOUT" "$p"
  expect_match "$STDOUT" 'provenance|signature'
  expect_check_fails_naming "envelope changed in place" "app:2" "$p"
  expect_exit 0 imgbake verify app:1
}

test_envelope_replaced_consistently() {
  need_python || return 0
  # The altered envelope stored as a proper new blob (its name is its digest), and the
  # catalog pointed at it: every digest is consistent, only the signature is not.
  local p new
  p=$(provenance_digest app:2)
  rewrite_payload "$(blob_path "$p")" "$TEST_DIR/env.json" || return
  new="sha256:$(sha256sum "$TEST_DIR/env.json" | cut -d' ' -f1)"
  cp "$TEST_DIR/env.json" "$(blob_path "$new")"
  chmod 444 "$(blob_path "$new")"
  sql "UPDATE images SET provenance_digest = '$new' WHERE name = 'app' AND version = '2'" || return
  expect_eq "show reports the new envelope" "$new" "$(provenance_digest app:2)"
  expect_exit 1 imgbake verify app:2
  expect_match "$STDOUT" '^NOT VERIFIED app:2 '
  expect_contains "$STDOUT" "signature"
  expect_check_fails_naming "envelope replaced" "app:2: provenance:" "signature"
  # A protected channel refuses it.
  expect_exit 1 imgbake promote app:2 --channel prod --protect
  expect_contains "$STDERR" "signature"
  expect_exit 0 imgbake verify app:1
}

test_catalog_manifest_swapped() {
  need_python || return 0
  local m1
  m1=$(manifest_digest app:1)
  sql "UPDATE images SET manifest_digest = '$m1' WHERE name = 'app' AND version = '2'" || return
  expect_check_fails_naming "manifest swapped" "app:2" "$m1"
  # The signed provenance of app:2 does not name app:1's manifest either.
  expect_exit 1 imgbake verify app:2
  expect_match "$STDOUT" '^NOT VERIFIED app:2 '
}

test_audit_entry_altered() {
  need_python || return 0
  sql "UPDATE audit SET reason = 'x' WHERE seq = 1" || return
  expect_check_fails_naming "audit reason altered" "audit: entry 1"
  expect_contains problems.txt "altered"
  # The images themselves are fine.
  expect_exit 0 imgbake verify app:2
}

test_audit_entry_deleted() {
  need_python || return 0
  sql "DELETE FROM audit WHERE seq = 2" || return
  expect_check_fails_naming "audit entry removed" "entry 2"
}

test_catalog_rewritten_consistently() {
  need_python || return 0
  # Someone with write access to the catalog points app:2 at app:1's manifest and
  # rewrites the audit log to match, recomputing the whole hash chain. The entries'
  # signatures and the signed provenance tell: store check must still fail for app:2.
  local m1
  m1=$(manifest_digest app:1)
  python3 - "$IMGBAKE_HOME/catalog.db" "$m1" >rewrite.out 2>&1 <<'EOF2'
import hashlib, json, sqlite3, sys
db = sqlite3.connect(sys.argv[1])
cols = ["seq", "time", "who", "action", "name", "channel", "from_ref", "to_ref", "reason", "detail", "prev_hash", "hash"]
rows = [dict(zip(cols, r)) for r in db.execute("SELECT " + ", ".join(cols) + " FROM audit ORDER BY seq")]
def entry_hash(e):
    j = {"seq": e["seq"], "time": e["time"], "who": e["who"], "action": e["action"], "name": e["name"],
         "channel": e["channel"], "from": e["from_ref"], "to": e["to_ref"], "reason": e["reason"],
         "detail": e["detail"], "prev": e["prev_hash"]}
    return "sha256:" + hashlib.sha256(json.dumps(j, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()).hexdigest()
if entry_hash(rows[0]) != rows[0]["hash"]:
    print("cannot recompute the audit hash (its format changed)")
    sys.exit(3)
prev = ""
for e in rows:
    if e["action"] == "commit" and e["to_ref"] == "app:2":
        d = json.loads(e["detail"])
        d["manifest"] = sys.argv[2]
        e["detail"] = json.dumps(d)
    if e["action"] == "promote" and e["to_ref"] == "app:2":
        e["detail"] = "{}"
    e["prev_hash"] = prev
    e["hash"] = entry_hash(e)
    prev = e["hash"]
    db.execute("UPDATE audit SET detail = ?, prev_hash = ?, hash = ? WHERE seq = ?", (e["detail"], e["prev_hash"], e["hash"], e["seq"]))
db.execute("UPDATE images SET manifest_digest = ? WHERE name = 'app' AND version = '2'", (sys.argv[2],))
db.commit()
EOF2
  local rc=$?
  if [ "$rc" -eq 3 ]; then
    skip "$(cat rewrite.out)"
    return 0
  fi
  expect_eq "rewriting the catalog (python3 sqlite3)" "0" "$rc" || { cat rewrite.out; return; }
  expect_check_fails_naming "catalog rewritten with a recomputed chain" "app:2: provenance:" \
    "audit: entry 3 (commit app:2): its signature does not verify"
  # Entries before the rewritten one still verify.
  expect_no_match problems.txt 'audit: entry [12] '
  expect_exit 1 imgbake verify app:2
  expect_match "$STDOUT" '^NOT VERIFIED app:2 '
  expect_contains "$STDOUT" "app:2"
  expect_exit 0 imgbake verify app:1
}

test_blob_deleted() {
  need_python || return 0
  local l
  l=$(layer_digest app:1)
  rm -f "$(blob_path "$l")"
  expect_check_fails_naming "layer deleted" "app:1: blob $l is missing"
  expect_exit 1 imgbake verify app:1
  expect_contains "$STDOUT" "$l"
  expect_contains "$STDOUT" "missing"
  # The manifest blob, too.
  local m
  m=$(manifest_digest app:2)
  rm -f "$(blob_path "$m")"
  expect_check_fails_naming "manifest deleted" "app:2: blob $m is missing"
}

test_gc_removes_stray_blob() {
  need_python || return 0
  local stray=stray.bin d
  echo "not part of any image $RANDOM" >"$stray"
  d="sha256:$(sha256sum "$stray" | cut -d' ' -f1)"
  cp "$stray" "$(blob_path "$d")"
  expect_exit 0 imgbake store check
  expect_match "$STDOUT" ': OK$'
  expect_contains "$STDOUT" "note: unreferenced blob $d"
  local before
  before=$(ls "$IMGBAKE_HOME/blobs/sha256" | wc -l)
  expect_exit 0 imgbake store gc || return
  expect_match "$STDOUT" '^gc: removed 1 unreferenced blobs and 0 temporary files \([0-9]+ bytes\), kept [0-9]+ blobs$'
  expect_no_file "$(blob_path "$d")"
  expect_eq "blobs after gc" "$((before - 1))" "$(ls "$IMGBAKE_HOME/blobs/sha256" | wc -l)"
  expect_exit 0 imgbake verify app:1
  expect_exit 0 imgbake verify app:2
  expect_exit 0 imgbake store check
  expect_match "$STDOUT" ': OK$'
  expect_not_contains "$STDOUT" "unreferenced blob"
  # A second gc has nothing to do.
  expect_exit 0 imgbake store gc
  expect_match "$STDOUT" '^gc: removed 0 '
  expect_exit 0 imgbake export app:2 --format tar -o x.tar
  expect_eq "app.txt of app:2 after gc" "v2" "$(tar -xOf x.tar app.txt)"
}

test_gc_interrupted_small_blob_write() {
  need_python || return 0
  # What a crash (kill -9, power loss) in the middle of writing a manifest, config or
  # envelope blob leaves: the temporary file of that write, next to the blobs
  # (".<hex>.tmp-XXXXXX", as the store's atomic write names it).
  local m left
  m=$(manifest_digest app:2)
  left="$IMGBAKE_HOME/blobs/sha256/.${m#sha256:}.tmp-Ab12Cd"
  echo '{"schemaVersion": 2, "partial' >"$left"
  expect_exit 0 imgbake store check
  expect_match "$STDOUT" ': OK$'
  expect_exit 0 imgbake store gc
  expect_no_file "$left"
  expect_exit 0 imgbake verify app:1
  expect_exit 0 imgbake verify app:2
  expect_exit 0 imgbake store check
  expect_match "$STDOUT" ': OK$'
}

test_blob_replaced_by_a_fifo() {
  need_python || return 0
  local l
  l=$(layer_digest app:2)
  rm -f "$(blob_path "$l")" && mkfifo "$(blob_path "$l")" || return
  # Every reader says what is wrong instead of waiting on the FIFO forever.
  expect_exit 1 timeout 60 "$IMGBAKE" export app:2 --format tar -o x.tar
  expect_contains "$STDERR" "FIFO"
  expect_no_file x.tar
  expect_exit 1 timeout 60 "$IMGBAKE" verify app:2
  expect_check_fails_naming "a FIFO in a blob's place" "app:2: blob $l is a FIFO"
}

# own_config: this test's own copy of the user's configuration (keys, trusted/, witnesses).
own_config() {
  cp -a "$PRISTINE_CONFIG" "$TEST_DIR/config" || return 1
  export IMGBAKE_CONFIG_HOME="$TEST_DIR/config"
}

test_trust_anchor_planted_in_the_store() {
  need_python || return 0
  own_config || return
  # Someone who can write the store but not the user's configuration builds an image signed
  # with a key of their own, and puts its public half into the store's trusted/ directory.
  local attacker="$TEST_DIR/attacker"
  mkdir -p "$attacker" src || return
  (cd src && write_app_template && IMGBAKE_CONFIG_HOME="$attacker" "$IMGBAKE" build -var n=3 app.json) >attacker.log 2>&1 ||
    { fail "the attacker's build" "exit 0" "$(cat attacker.log)"; return; }
  mkdir -p "$IMGBAKE_HOME/trusted" && cp "$attacker/signing.key.pub" "$IMGBAKE_HOME/trusted/team.pub" || return
  expect_exit 1 imgbake verify app:3
  expect_match "$STDOUT" '^NOT VERIFIED app:3 '
  expect_check_fails_naming "a key planted in the store" "app:3: provenance:" \
    "audit: entry 5 (commit app:3) is signed by sha256:" "which is not a trusted key"
  expect_contains "$STDOUT" "note: the keys in $IMGBAKE_HOME/trusted are not trusted"
  expect_contains "$STDOUT" "trusted key: sha256:"
  expect_contains "$STDOUT" "($IMGBAKE_CONFIG_HOME/signing.key.pub)"
  expect_exit 0 imgbake verify app:1
  # The user's own trust, outside the store, makes the key trusted.
  mkdir -p "$IMGBAKE_CONFIG_HOME/trusted" && cp "$attacker/signing.key.pub" "$IMGBAKE_CONFIG_HOME/trusted/team.pub"
  expect_exit 0 imgbake verify app:3
  expect_exit 0 imgbake store check
  expect_contains "$STDOUT" "($IMGBAKE_CONFIG_HOME/trusted/team.pub)"
  # An anchor that other users can write anchors nothing.
  chmod 0666 "$IMGBAKE_CONFIG_HOME/trusted/team.pub"
  expect_exit 1 imgbake verify app:3
  expect_exit 1 imgbake store check
  expect_contains "$STDOUT" "not trusting $IMGBAKE_CONFIG_HOME/trusted/team.pub: $IMGBAKE_CONFIG_HOME/trusted/team.pub can be written by other users (mode 0666)"
}

test_audit_tail_removed() {
  need_python || return 0
  own_config || return
  expect_exit 0 imgbake label app:2 stage=beta || return
  # Entry 5 (the label) and the label itself go, leaving a log and catalog that agree.
  sql "DELETE FROM audit WHERE seq = 5" || return
  sql "DELETE FROM labels WHERE key = 'stage'" || return
  expect_check_fails_naming "the log's last entry removed" "audit: the log ends at entry 4 but this user saw entry 5"
  expect_exit 1 imgbake verify app:1
  expect_contains "$STDOUT" "the log ends at entry 4"
}

test_older_catalog_put_back() {
  need_python || return 0
  own_config || return
  expect_exit 0 imgbake store check || return
  expect_contains "$STDOUT" "note: this user had not seen this store's audit log before"
  expect_exit 0 imgbake store check || return
  expect_contains "$STDOUT" "witness: this user last saw audit entry 4 (sha256:"
  # A consistent copy of the catalog before the revocation, put back after it.
  python3 -c 'import sqlite3, sys; sqlite3.connect(sys.argv[1]).backup(sqlite3.connect(sys.argv[2]))' \
    "$IMGBAKE_HOME/catalog.db" "$TEST_DIR/old-catalog.db" || return
  expect_exit 0 imgbake revoke app:1 --reason "CVE-2026-0001" || return
  rm -f "$IMGBAKE_HOME/catalog.db-wal" "$IMGBAKE_HOME/catalog.db-shm"
  cp "$TEST_DIR/old-catalog.db" "$IMGBAKE_HOME/catalog.db" || return
  expect_check_fails_naming "an older catalog put back" "the log ends at entry 4 but this user saw entry 5" \
    "an older copy of the catalog was put back"
  expect_exit 1 imgbake verify app:1
  expect_match "$STDOUT" '^NOT VERIFIED app:1 '
}

test_revocation_cleared_in_the_catalog() {
  need_python || return 0
  own_config || return
  expect_exit 0 imgbake revoke app:1 --reason "CVE-2026-0001" || return
  sql "UPDATE images SET revoked = 0, revoked_reason = '' WHERE name = 'app' AND version = '1'" || return
  expect_check_fails_naming "revocation cleared" \
    "app:1: audit entry 5 revoked it (CVE-2026-0001) but the catalog says it is not revoked"
  expect_exit 1 imgbake verify app:1
  expect_match "$STDOUT" '^NOT VERIFIED app:1 '
  expect_contains "$STDOUT" "revoked it (CVE-2026-0001)"
  expect_exit 0 imgbake verify app:2
}

test_channel_repointed_in_the_catalog() {
  need_python || return 0
  own_config || return
  sql "UPDATE channels SET image_id = (SELECT id FROM images WHERE name = 'app' AND version = '1') WHERE name = 'app' AND channel = 'dev'" || return
  expect_check_fails_naming "channel re-pointed" "channel 'dev' of app points at app:1 but audit entry 4 says it holds app:2"
  sql "UPDATE channels SET protected = 1 WHERE channel = 'dev'" || return
  expect_check_fails_naming "channel protected" "channel 'dev' of app is protected in the catalog but audit entry 4 says it is not protected"
}

test_label_edited_in_the_catalog() {
  need_python || return 0
  own_config || return
  expect_exit 0 imgbake label app:2 owner=web-team || return
  expect_exit 0 imgbake store check || return
  sql "UPDATE labels SET value = 'mallory' WHERE key = 'owner'" || return
  expect_check_fails_naming "label edited" "app:2: label owner is 'mallory' in the catalog but 'web-team' per the audit log"
  sql "DELETE FROM labels WHERE key = 'owner'" || return
  expect_check_fails_naming "label removed" "app:2: label owner='web-team' (per the audit log) is missing from the catalog"
}

run_test check_ok_after_build test_check_ok_after_build
run_test layer_blob_flipped test_layer_blob_flipped
run_test envelope_payload_changed_in_place test_envelope_payload_changed_in_place
run_test envelope_replaced_consistently test_envelope_replaced_consistently
run_test catalog_manifest_swapped test_catalog_manifest_swapped
run_test audit_entry_altered test_audit_entry_altered
run_test audit_entry_deleted test_audit_entry_deleted
run_test catalog_rewritten_consistently test_catalog_rewritten_consistently
run_test blob_deleted test_blob_deleted
run_test gc_removes_stray_blob test_gc_removes_stray_blob
run_test gc_interrupted_small_blob_write test_gc_interrupted_small_blob_write
run_test trust_anchor_planted_in_the_store test_trust_anchor_planted_in_the_store
run_test audit_tail_removed test_audit_tail_removed
run_test older_catalog_put_back test_older_catalog_put_back
run_test revocation_cleared_in_the_catalog test_revocation_cleared_in_the_catalog
run_test channel_repointed_in_the_catalog test_channel_repointed_in_the_catalog
run_test label_edited_in_the_catalog test_label_edited_in_the_catalog
run_test blob_replaced_by_a_fifo test_blob_replaced_by_a_fifo
summary
