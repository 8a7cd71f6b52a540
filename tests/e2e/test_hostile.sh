# End-to-end: hostile inputs as a user meets them through the CLI (issue 13's probe): tarball
# bases that try to write outside the tree or delete it, a header with a size it lacks, OCI
# layouts with bad digests, wrong sizes, missing blobs and malformed JSON, and a registry on
# 127.0.0.1 that serves corrupt, oversized or missing blobs, a wrong diff_id, endless errors and a
# 64 MiB manifest. Each case: a non-zero exit, a message that says what is wrong, nothing written
# outside, and a store that still checks clean and holds nothing half-written (no image, an empty
# tmp/). The unit tests (test_registry_hostile.cpp, test_layers_apply.cpp) cover the parsers.
. "$(dirname "$0")/lib.sh"
require_tools python3 bwrap

HOSTILE="$IMGBAKE_SOURCE_DIR/tests/e2e/hostile_inputs.py"

fresh_store() {
  export IMGBAKE_HOME="$TEST_DIR/store"
  export IMGBAKE_CONFIG_HOME="$TEST_DIR/config"
}

both() {
  cat "$STDOUT" "$STDERR" >"$TEST_DIR/both.out"
  echo "$TEST_DIR/both.out"
}

# expect_store_clean: `store check` passes, no image was committed, nothing is left in tmp/.
expect_store_clean() {
  if [ -d "$IMGBAKE_HOME" ]; then
    expect_exit 0 imgbake store check
    expect_no_match "$STDOUT" '^PROBLEM'
    local left
    left=$(find "$IMGBAKE_HOME/tmp" -mindepth 1 2>/dev/null | head -n 3)
    expect_eq "nothing half-written in the store's tmp/" "" "$left"
  fi
  expect_exit 0 imgbake images
  expect_no_match "$STDOUT" '[a-z]+:[0-9]+'
}

# build_from SOURCE: builds a one-step rootfs template on SOURCE.
build_from() {
  write_file hostile.json <<EOF
{
  "builders": [{"type": "rootfs", "source": "$1"}],
  "provisioners": [{"type": "shell", "inline": ["echo never > /never"]}],
  "imgbake": {"image": "hostile"}
}
EOF
  run imgbake build hostile.json
}

# ---- tarball bases -------------------------------------------------------------------------

# tar_case KIND MESSAGE: a tarball base of KIND fails the build naming MESSAGE; nothing reaches
# the directory the entries aim at.
tar_case() {
  local kind=$1 message=$2 outside="$TEST_DIR/outside"
  mkdir -p "$outside"
  echo "host file" >"$outside/hardlink-target"
  python3 "$HOSTILE" tar "$kind" evil.tar "$outside"
  build_from "tar:evil.tar"
  expect_eq "build on a '$kind' tarball fails" 1 "$RC"
  expect_contains "$(both)" "$message"
  expect_eq "nothing written outside ($kind)" "hardlink-target" "$(ls "$outside")"
  expect_eq "the host file is untouched ($kind)" "host file" "$(cat "$outside/hardlink-target")"
  expect_store_clean
}

test_tar_dotdot() { fresh_store && tar_case dotdot "contains '..' and could land outside the root"; }
test_tar_absolute() { fresh_store && tar_case absolute "has an absolute path; refusing to extract it"; }
test_tar_symlink_then_write() { fresh_store && tar_case symlink-write "'esc/through-link' would be written outside"; }
test_tar_hardlink_outside() { fresh_store && tar_case hardlink-outside "contains '..' and could land outside the root"; }
test_tar_whiteout_dot() { fresh_store && tar_case whiteout-dot "whiteout 'etc/.wh..' names '.', which the OCI image spec forbids"; }
test_tar_whiteout_dotdot() { fresh_store && tar_case whiteout-dotdot "whiteout 'etc/.wh...' names '..'"; }

test_tar_huge_size_header() {
  fresh_store
  python3 "$HOSTILE" tar huge-size evil.tar /nonexistent
  local started
  started=$(now_ms)
  build_from "tar:evil.tar"
  expect_eq "build on a tarball that claims an 8 GiB entry fails" 1 "$RC"
  expect_match "$(both)" "[Tt]runcated"
  check "it fails at once ($(($(now_ms) - started)) ms)" test $(($(now_ms) - started)) -lt 20000
  expect_store_clean
}

# ---- OCI layouts ---------------------------------------------------------------------------

# layout_case KIND MESSAGE: a base OCI layout broken as KIND fails the build naming MESSAGE.
layout_case() {
  fresh_store
  python3 "$HOSTILE" layout "$1" layout
  build_from "oci:$TEST_DIR/layout:base"
  expect_eq "build on a '$1' layout fails" 1 "$RC"
  expect_contains "$(both)" "$2"
  expect_store_clean
}

test_layout_bad_digest() { layout_case bad-digest "digest"; }
test_layout_wrong_size() { layout_case wrong-size "size"; }
test_layout_missing_blob() { layout_case missing-blob "blobs/sha256/"; }
test_layout_bad_diff_id() { layout_case bad-diff-id "diff_id"; }
test_layout_bad_index_json() { layout_case bad-index-json "index.json"; }
test_layout_bad_manifest_json() { layout_case bad-manifest-json "manifest"; }

# ---- a hostile registry --------------------------------------------------------------------

start_hostile_registry() {
  python3 "$HOSTILE" registry "$TEST_DIR/registry.port" >"$TEST_DIR/registry.log" 2>&1 &
  E2E_BG_PIDS+=($!)
  wait_for 10 test -s "$TEST_DIR/registry.port" || {
    fail "the hostile registry did not start" "" "$(cat "$TEST_DIR/registry.log")"
    return 1
  }
  REG="127.0.0.1:$(cat "$TEST_DIR/registry.port")"
}

# pull_case SCENARIO MESSAGE: pulling REG/SCENARIO/app:v1 fails naming MESSAGE, in bounded time.
pull_case() {
  fresh_store
  start_hostile_registry || return
  local started
  started=$(now_ms)
  run imgbake pull "$REG/$1/app:v1" --insecure-registry "$REG" --allow-untrusted
  expect_eq "pull from a '$1' registry fails" 1 "$RC"
  expect_contains "$(both)" "$2"
  check "it gives up in bounded time ($(($(now_ms) - started)) ms)" test $(($(now_ms) - started)) -lt 60000
  expect_store_clean
}

test_registry_corrupt_blob() { pull_case bad-blob "sha256"; }
test_registry_blob_longer_than_its_size() { pull_case long-blob "sent more than the"; }
test_registry_missing_blob() { pull_case missing-blob "404"; }
test_registry_wrong_diff_id() { pull_case bad-diff-id "diff_id"; }
test_registry_always_failing() { pull_case server-error "500"; }
test_registry_huge_manifest() { pull_case huge-manifest "MiB"; }

run_test tar_dotdot test_tar_dotdot
run_test tar_absolute test_tar_absolute
run_test tar_symlink_then_write test_tar_symlink_then_write
run_test tar_hardlink_outside test_tar_hardlink_outside
run_test tar_whiteout_dot test_tar_whiteout_dot
run_test tar_whiteout_dotdot test_tar_whiteout_dotdot
run_test tar_huge_size_header test_tar_huge_size_header
run_test layout_bad_digest test_layout_bad_digest
run_test layout_wrong_size test_layout_wrong_size
run_test layout_missing_blob test_layout_missing_blob
run_test layout_bad_diff_id test_layout_bad_diff_id
run_test layout_bad_index_json test_layout_bad_index_json
run_test layout_bad_manifest_json test_layout_bad_manifest_json
run_test registry_corrupt_blob test_registry_corrupt_blob
run_test registry_blob_longer_than_its_size test_registry_blob_longer_than_its_size
run_test registry_missing_blob test_registry_missing_blob
run_test registry_wrong_diff_id test_registry_wrong_diff_id
run_test registry_always_failing test_registry_always_failing
run_test registry_huge_manifest test_registry_huge_manifest
summary
