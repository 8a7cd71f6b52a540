#!/usr/bin/env bash
# End-to-end: the qemu builder's step cache (docs/builders/qemu.md, "Step cache") on the disk test
# guest under TCG. A rebuild with nothing changed starts no qemu; a changed last provisioner
# resumes the VM from the checkpoint before it (no boot) and the output disk has every step's
# effect; a failed step, once fixed, resumes right before it; a damaged checkpoint is detected and
# not used, as is a disk level that names a host file; a second store builds from the checkpoints
# through a registry (--cache-to/--cache-from) without starting qemu; --no-cache boots; store check
# and gc --prune-cache know the checkpoints.
# The tests share one store and run in order: each starts from what the one before left.
. "$(dirname "$0")/lib.sh"

. "$(dirname "$0")/qemu_lib.sh"
. "$(dirname "$0")/registry_lib.sh"

# The template: the disk guest with three provisioners; -var three=… changes only the last.
TEMPLATE=$E2E_ROOT/cached.json
python3 - "$SRC/templates/qemu-disk.json" >"$TEMPLATE" <<'PY'
import json, sys
t = json.load(open(sys.argv[1]))
t["variables"]["three"] = "three-a"
t["variables"]["fail"] = "0"
t["imgbake"] = {"image": "cached-disk"}
t["provisioners"] = [
    {"type": "shell", "inline": ["mkdir -p /etc/steps", "echo one > /etc/steps/one", "date +%s%N > /etc/steps/boot-id"]},
    {"type": "file", "content": "two\n", "destination": "/etc/steps/two"},
    {"type": "shell", "environment_vars": ["THREE={{user `three`}}", "FAIL={{user `fail`}}"],
     "inline": ["test \"$FAIL\" = 0 || { echo step three fails; exit 3; }", "echo \"$THREE\" > /etc/steps/three",
                "sync"]},
]
print(json.dumps(t, indent=1))
PY

# guest_files DISK: boots an overlay of the output DISK and prints /etc/steps/{one,two,three}.
guest_files() {
  local overlay=$TEST_DIR/check-overlay.qcow2
  qemu-img create -q -f qcow2 -b "$(readlink -f "$1")" -F qcow2 "$overlay"
  GUEST_CMD='cat /etc/steps/one /etc/steps/two /etc/steps/three; echo "step-one-time=$(cat /etc/steps/boot-id)"' \
    expect_exit 0 "$SRC/tests/fixtures/boot-tiny-guest.sh" "$GUEST" "$overlay"
}

build() { expect_exit "$1" imgbake build -var "dir=$GUEST" "${@:2}" "$TEMPLATE"; }
checkpoint_blobs() {
  python3 - "$IMGBAKE_HOME" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1] + "/catalog.db")
print(db.execute("SELECT COUNT(*) FROM layer_cache WHERE state_digest != ''").fetchone()[0])
PY
}
DISK=output-disk/tiny-disk.qcow2

test_cold_build_keeps_a_checkpoint_per_step() {
  build 0 || return
  cp "$STDOUT" build.out
  expect_contains build.out "step cache: base disk sha256:"
  expect_contains build.out "starting qemu"
  expect_match build.out "checkpoint [0-9a-f]{12}: disk .*, VM state "
  # Steps 1 and 2; the last step's changes are in the shut-down disk.
  expect_eq "checkpoints in the catalog" 2 "$(checkpoint_blobs)"
  expect_contains build.out "step cache: shut-down disk sha256:"
  expect_file "$DISK"
  run qemu-img check "$DISK"
  expect_eq "qemu-img check of the output" 0 "$RC"
  expect_eq "no backing file in the output" "" \
    "$(qemu-img info --output=json "$DISK" | json_get /dev/stdin 'd.get("backing-filename", "")')"
  sha256sum "$DISK" | cut -d' ' -f1 >"$E2E_ROOT/cold.sha256"
  guest_files "$DISK"
  expect_contains "$STDOUT" "one"
  expect_contains "$STDOUT" "two"
  expect_contains "$STDOUT" "three-a"
  grep -o 'step-one-time=[0-9]*' "$STDOUT" >"$E2E_ROOT/boot-id"
  expect_match "$E2E_ROOT/boot-id" 'step-one-time=[0-9]{10,}'
  expect_no_qemu
}

test_unchanged_rebuild_starts_no_vm() {
  build 0 || return
  expect_contains "$STDOUT" "every step is cached"
  expect_not_contains "$STDOUT" "starting qemu"
  expect_not_contains "$STDOUT" "connected to SSH"
  # Not even the chain is converted again: the cold build's output disk is copied.
  expect_contains "$STDOUT" "the cached output disk sha256:"
  expect_not_contains "$STDOUT" "from the step cache's disk chain"
  expect_eq "the output disk is the cold build's, byte for byte" "$(cat "$E2E_ROOT/cold.sha256")" \
    "$(sha256sum "$DISK" | cut -d' ' -f1)"
  expect_contains "$STDOUT" "artifact qemu: sha256:$(cat "$E2E_ROOT/cold.sha256")"
  expect_no_qemu
}

test_a_second_store_builds_from_the_registry_cache() {
  start_registry "$TEST_DIR/registry" || return
  local reg=127.0.0.1:$REGISTRY_PORT
  build 0 --cache-to "$reg/ci/qemu" --insecure-registry "$reg" || return
  cat "$STDOUT" "$STDERR" >a.out
  expect_contains a.out "every step is cached"
  # The base disk, the checkpoints after steps 1 and 2, the shut-down disk, the output disk.
  expect_contains a.out "cache: exported 5 steps to $reg/ci/qemu"
  mkdir -p b && cd b || return
  IMGBAKE_HOME=$TEST_DIR/store-b build 0 --cache-from "$reg/ci/qemu" --insecure-registry "$reg" || return
  cat "$STDOUT" "$STDERR" >b.out
  # The base disk and the output disk: no checkpoint is needed (or downloaded) for a full hit.
  expect_eq "entries fetched from the registry" 2 "$(grep -c "from $reg/ci/qemu (" b.out)"
  expect_contains b.out "every step is cached"
  expect_not_contains b.out "starting qemu"
  expect_eq "the second store's output disk is the first's, byte for byte" "$(cat "$E2E_ROOT/cold.sha256")" \
    "$(sha256sum "$DISK" | cut -d' ' -f1)"
  IMGBAKE_HOME=$TEST_DIR/store-b run imgbake store check
  expect_eq "store check of the second store" 0 "$RC"
  # A third store with the last step changed: the checkpoints (disk levels and the VM state after
  # step 2) come from the registry, and the VM resumes from them without booting.
  mkdir -p ../c && cd ../c || return
  IMGBAKE_HOME=$TEST_DIR/store-c build 0 -var three=three-r --cache-from "$reg/ci/qemu" --insecure-registry "$reg" ||
    return
  cat "$STDOUT" "$STDERR" >c.out
  expect_eq "entries fetched for a resume" 3 "$(grep -c "from $reg/ci/qemu (" c.out)"
  expect_contains c.out "resuming the VM after step 2 of 3"
  expect_not_contains c.out "typing the boot command"
  guest_files "$DISK"
  expect_contains "$STDOUT" "three-r"
  expect_eq "step one's file is the first store's" "$(cat "$E2E_ROOT/boot-id")" \
    "$(grep -o 'step-one-time=[0-9]*' "$STDOUT")"
  expect_no_qemu
}

test_a_level_naming_a_host_file_is_not_used() {
  # The checkpoint after step 2 replaced by a qcow2 whose backing file is a file of the host: what
  # a bad cache entry would try (its digest is right: it is the blob the catalog names). The last
  # step changed, so the VM would resume from that level.
  qemu-img create -q -f qcow2 -u -b /etc/hostname -F raw evil.qcow2 64M
  python3 - "$IMGBAKE_HOME" evil.qcow2 <<'PY'
import hashlib, shutil, sqlite3, sys
home, evil = sys.argv[1], sys.argv[2]
data = open(evil, "rb").read()
hexd = hashlib.sha256(data).hexdigest()
shutil.copy(evil, f"{home}/blobs/sha256/{hexd}")
db = sqlite3.connect(home + "/catalog.db")
key = db.execute("SELECT key FROM layer_cache WHERE state_digest != '' AND created_by LIKE '%(file)%'").fetchone()[0]
db.execute("UPDATE layer_cache SET digest = ?, size = ? WHERE key = ?", ("sha256:" + hexd, len(data), key))
db.commit()
PY
  build 0 -var three=three-e || return
  cat "$STDOUT" "$STDERR" >all.out
  expect_contains all.out "is not a disk level of this chain: its backing file is '/etc/hostname'"
  expect_contains all.out "resuming the VM after step 1 of 3"
  guest_files "$DISK"
  expect_contains "$STDOUT" "three-e"
  expect_no_qemu
}

test_last_step_changed_resumes_without_booting() {
  build 0 -var three=three-b --explain-cache || return
  cp "$STDOUT" build.out
  expect_contains build.out "resuming the VM after step 2 of 3"
  # --explain-cache names the input that changed, as for the rootfs builder.
  expect_match build.out 'cache: provisioner 3 \(shell\): miss; last time this step had key [0-9a-f]{16}, changed:'
  expect_match build.out 'THREE=three-[a-z]" -> "THREE=three-b'
  expect_match build.out 'cache: provisioner 1 \(shell\): hit'
  expect_contains build.out "resumed the VM from its checkpoint"
  expect_not_contains build.out "typing the boot command"
  expect_contains build.out "connected to SSH"
  guest_files "$DISK"
  expect_contains "$STDOUT" "one"
  expect_contains "$STDOUT" "two"
  expect_contains "$STDOUT" "three-b"
  expect_not_contains "$STDOUT" "three-a"
  # Step one did not run again: the file it wrote holds the cold build's time.
  expect_eq "step one's file is the cold build's" "$(cat "$E2E_ROOT/boot-id")" \
    "$(grep -o 'step-one-time=[0-9]*' "$STDOUT")"
  expect_no_qemu
}

test_failed_step_resumes_after_the_fix() {
  build 1 -var three=three-c -var fail=1 || return
  cat "$STDOUT" "$STDERR" >all.out
  expect_contains all.out "step three fails"
  expect_no_qemu
  build 0 -var three=three-c || return
  expect_contains "$STDOUT" "resuming the VM after step 2 of 3"
  expect_no_qemu
}

test_damaged_checkpoint_is_not_used() {
  # The VM state saved after step 2: damage it in place (the store made it read-only).
  local state
  state=$(python3 - "$IMGBAKE_HOME" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1] + "/catalog.db")
rows = db.execute("SELECT state_digest FROM layer_cache WHERE state_digest != '' AND created_by LIKE '%(file)%'").fetchall()
print(rows[0][0].split(":")[1])
PY
)
  local blob=$IMGBAKE_HOME/blobs/sha256/$state
  expect_file "$blob"
  chmod u+w "$blob"
  printf 'garbage' | dd of="$blob" bs=1 seek=1000 conv=notrunc status=none
  run imgbake store check
  expect_eq "store check fails" 1 "$RC"
  cat "$STDOUT" "$STDERR" >check.out
  expect_contains check.out "build cache entry"
  build 0 -var three=three-d || return
  cat "$STDOUT" "$STDERR" >all.out
  expect_contains all.out "is damaged"
  expect_contains "$STDOUT" "resuming the VM after step 1 of 3"
  guest_files "$DISK"
  expect_contains "$STDOUT" "three-d"
  expect_no_qemu
}

test_a_step_with_cache_false_runs_every_time() {
  python3 - "$TEMPLATE" <<'PY' >uncached.json
import json, sys
t = json.load(open(sys.argv[1]))
t["provisioners"][1]["cache"] = False
print(json.dumps(t, indent=1))
PY
  expect_exit 0 imgbake build -var "dir=$GUEST" -var three=three-d uncached.json || return
  expect_contains "$STDOUT" "resuming the VM after step 1 of 3"
  expect_contains "$STDOUT" "writing 4 bytes of content to /etc/steps/two"
  expect_contains "$STDOUT" 'running inline script "test'
  expect_exit 0 imgbake build -force -var "dir=$GUEST" -var three=three-d uncached.json || return
  expect_contains "$STDOUT" "resuming the VM after step 1 of 3"
  expect_no_qemu
}

test_no_cache_boots_and_gc_prune_cache_forgets_checkpoints() {
  build 0 --no-cache || return
  expect_contains "$STDOUT" "step cache: off (--no-cache)"
  expect_contains "$STDOUT" "starting qemu"
  expect_no_match "$STDOUT" "checkpoint [0-9a-f]{12}: disk"
  expect_no_qemu
  local before after
  before=$(find "$IMGBAKE_HOME/blobs/sha256" -type f | wc -l)
  expect_exit 0 imgbake store gc --prune-cache
  after=$(find "$IMGBAKE_HOME/blobs/sha256" -type f | wc -l)
  expect_eq "checkpoints left in the catalog" 0 "$(checkpoint_blobs)"
  check "gc --prune-cache removed the checkpoint blobs ($before -> $after)" [ "$after" -lt "$before" ]
  run imgbake store check
  expect_eq "store check after gc" 0 "$RC"
}

run_test cold_build_keeps_a_checkpoint_per_step test_cold_build_keeps_a_checkpoint_per_step
run_test unchanged_rebuild_starts_no_vm test_unchanged_rebuild_starts_no_vm
run_test a_second_store_builds_from_the_registry_cache test_a_second_store_builds_from_the_registry_cache
run_test a_level_naming_a_host_file_is_not_used test_a_level_naming_a_host_file_is_not_used
run_test last_step_changed_resumes_without_booting test_last_step_changed_resumes_without_booting
run_test failed_step_resumes_after_the_fix test_failed_step_resumes_after_the_fix
run_test damaged_checkpoint_is_not_used test_damaged_checkpoint_is_not_used
run_test a_step_with_cache_false_runs_every_time test_a_step_with_cache_false_runs_every_time
run_test no_cache_boots_and_gc_prune_cache_forgets_checkpoints test_no_cache_boots_and_gc_prune_cache_forgets_checkpoints
summary
