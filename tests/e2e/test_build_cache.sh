#!/usr/bin/env bash
# End-to-end: the build cache shared through a registry (docs/build-cache.md) on the rootfs
# builder, with Debian's docker-registry on 127.0.0.1. A second store with the same template
# builds from the registry's entries without running the cached steps and gets the same image;
# an entry signed by an untrusted key, or swapped under another step's tag, is not used; an
# unreachable cache is a warning, never a failed build. (The qemu checkpoints through a registry:
# test_qemu_cache.sh.)
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/registry_lib.sh"
require_tools bwrap umoci busybox tar python3 docker-registry

start_registry "$E2E_ROOT/registry" || exit 1
REG=127.0.0.1:$REGISTRY_PORT
# The machine that builds first: its own store, and the signing key every store here trusts (the
# per-user default key of IMGBAKE_CONFIG_HOME).
STORE_A=$E2E_ROOT/store-a

# A machine: a store of its own (the config home, hence the key, is the suite's unless given).
on() {
  local store=$1
  shift
  IMGBAKE_HOME=$store run "$IMGBAKE" "$@"
}

write_template() {
  local last=${1:-'echo second'}
  echo "payload v1" >payload.txt
  write_file bb.json <<EOF
{
  "builders": [{"type": "rootfs", "source": "tar:bb.tar.gz"}],
  "provisioners": [
    {"type": "shell", "inline": ["echo hello > /etc/motd", "rm /etc/old.txt"]},
    {"type": "file", "source": "payload.txt", "destination": "/root/payload.txt"},
    {"type": "shell", "inline": ["$last > /root/last.txt"]}
  ],
  "imgbake": {"image": "bb"}
}
EOF
}

# The same scratch directory for every machine: the template's path is part of no key, but the
# tarball and the payload are, by content.
WORK=$E2E_ROOT/work
setup_work() {
  mkdir -p "$WORK"
  cd "$WORK" || return 1
  [ -f bb.tar.gz ] || TEST_DIR=$WORK busybox_tarball bb.tar.gz
  write_template "$@"
}

# build_from STORE OUT FETCHED CACHED: a build in STORE with --cache-from ci/cache; its output in
# OUT; FETCHED entries came from the registry and CACHED provisioner steps were not run.
build_from() {
  on "$1" build --cache-from "$REG/ci/cache" --insecure-registry "$REG" bb.json
  expect_eq "exit status of the build in $(basename "$1")" 0 "$RC" || return
  cat "$STDOUT" "$STDERR" >"$2"
  expect_eq "steps fetched from the registry into $(basename "$1")" "$3" "$(count "from $REG/ci/cache (" "$2")"
  expect_eq "steps taken from the cache in $(basename "$1")" "$4" "$(count 'cached: ' "$2")"
}

digest_of() { IMGBAKE_HOME=$1 "$IMGBAKE" show "$2" 2>/dev/null | sed -n 's/^digest: *//p'; }
count() { grep -c -- "$1" "$2" || true; }
tags_of() {
  python3 - "$REG" "$1" <<'PY'
import json, sys, urllib.request
with urllib.request.urlopen(f"http://{sys.argv[1]}/v2/{sys.argv[2]}/tags/list") as r:
    print("\n".join(sorted(json.load(r).get("tags") or [])))
PY
}

# ---------------------------------------------------------------------------

test_second_store_builds_from_the_registry() {
  setup_work || return
  on "$STORE_A" build --cache-to "$REG/ci/cache" --insecure-registry "$REG" bb.json
  expect_eq "exit status of the first build" 0 "$RC" || return
  cat "$STDOUT" "$STDERR" >"$TEST_DIR/a.out"
  expect_contains "$TEST_DIR/a.out" "cache: exported 4 steps to $REG/ci/cache"
  expect_contains "$TEST_DIR/a.out" "running inline script"
  tags_of ci/cache >"$TEST_DIR/tags"
  expect_eq "cache tags in the registry (base and three steps)" 4 "$(count '^cache-[0-9a-f]\{64\}$' "$TEST_DIR/tags")"

  build_from "$E2E_ROOT/store-b" "$TEST_DIR/b.out" 4 3 || return
  expect_contains "$TEST_DIR/b.out" "base: cached layer"
  expect_not_contains "$TEST_DIR/b.out" "running inline script"
  expect_not_contains "$TEST_DIR/b.out" "unpacking"
  expect_eq "the second machine's image is the first's, digest for digest" "$(digest_of "$STORE_A" bb:1)" \
    "$(digest_of "$E2E_ROOT/store-b" bb:1)"
  on "$E2E_ROOT/store-b" store check
  expect_eq "store check of the second machine's store" 0 "$RC"
  run umoci unpack --image "$E2E_ROOT/store-b:bb:1" "$TEST_DIR/bundle"
  expect_file_content "$TEST_DIR/bundle/rootfs/etc/motd" "hello"
  expect_file_content "$TEST_DIR/bundle/rootfs/root/last.txt" "second"

  # The last step changed: the earlier ones come from the registry, only it runs.
  setup_work 'echo third' || return
  build_from "$E2E_ROOT/store-c" "$TEST_DIR/c.out" 3 2 || return
  expect_contains "$TEST_DIR/c.out" 'running inline script "echo third > /root/last.txt"'
  # A second build there needs the registry no more: the entries are in its store now.
  on "$E2E_ROOT/store-c" build bb.json
  expect_eq "cached steps of the rebuild without --cache-from" 3 "$(count 'cached: ' "$STDOUT")"
}

test_untrusted_or_swapped_entries_are_not_used() {
  setup_work || return
  [ -n "$(tags_of ci/cache)" ] || on "$STORE_A" build --cache-to "$REG/ci/cache" --insecure-registry "$REG" bb.json
  # Another machine that does not trust the first one's key.
  IMGBAKE_CONFIG_HOME=$TEST_DIR/other-config on "$TEST_DIR/store-u" build --cache-from "$REG/ci/cache" \
    --insecure-registry "$REG" bb.json
  expect_eq "exit status with untrusted entries" 0 "$RC" || return
  cat "$STDOUT" "$STDERR" >"$TEST_DIR/u.out"
  expect_contains "$TEST_DIR/u.out" "is not used: its signature is not from a trusted key"
  expect_eq "steps taken from the cache without trusting its signer" 0 "$(count 'cached: ' "$TEST_DIR/u.out")"
  expect_contains "$TEST_DIR/u.out" "running inline script"
  # Trusting the key (the first machine's public key in trusted/) makes the same entries usable.
  mkdir -p "$TEST_DIR/other-config/trusted"
  cp "$IMGBAKE_CONFIG_HOME/signing.key.pub" "$TEST_DIR/other-config/trusted/ci.pub"
  IMGBAKE_CONFIG_HOME=$TEST_DIR/other-config on "$TEST_DIR/store-t" build --cache-from "$REG/ci/cache" \
    --insecure-registry "$REG" bb.json
  expect_eq "steps taken from the cache once its signer is trusted" 3 "$(count 'cached: ' "$STDOUT")"

  # Someone who can push swaps the first step's tag for the second step's (validly signed) entry
  # (in a repository of its own: the other tests read ci/cache).
  on "$STORE_A" build --cache-to "$REG/ci/swapped" --insecure-registry "$REG" bb.json
  expect_contains "$STDOUT" "cache: exported 4 steps to $REG/ci/swapped"
  python3 - "$REG" "$E2E_ROOT/store-a" >"$TEST_DIR/keys" <<'PY'
import json, sqlite3, sys, urllib.request
reg, store = sys.argv[1], sys.argv[2]
db = sqlite3.connect(store + "/catalog.db")
rows = db.execute("SELECT key, created_by FROM layer_cache").fetchall()
first = [k for k, c in rows if "provisioner 1" in c][0]
second = [k for k, c in rows if "provisioner 2" in c][0]
accept = "application/vnd.oci.image.manifest.v1+json"
req = urllib.request.Request(f"http://{reg}/v2/ci/swapped/manifests/cache-{second}", headers={"Accept": accept})
body = urllib.request.urlopen(req).read()
put = urllib.request.Request(f"http://{reg}/v2/ci/swapped/manifests/cache-{first}", data=body, method="PUT",
                             headers={"Content-Type": accept})
urllib.request.urlopen(put).read()
print(first[:12])
PY
  expect_eq "the tag was swapped" 0 "$?"
  on "$TEST_DIR/store-s" build --cache-from "$REG/ci/swapped" --insecure-registry "$REG" bb.json
  expect_eq "exit status with a swapped entry" 0 "$RC" || return
  cat "$STDOUT" "$STDERR" >"$TEST_DIR/s.out"
  expect_contains "$TEST_DIR/s.out" "the entry for step $(cat "$TEST_DIR/keys") in $REG/ci/swapped is not used: it is the entry of key"
  expect_contains "$TEST_DIR/s.out" 'running inline script "echo hello > /etc/motd'
  expect_eq "the image is still the first machine's" "$(digest_of "$STORE_A" bb:1)" \
    "$(digest_of "$TEST_DIR/store-s" bb:1)"
}

test_unreachable_cache_is_a_warning() {
  setup_work || return
  local closed
  closed=$(free_port)
  on "$TEST_DIR/store" build --cache-from "127.0.0.1:$closed/ci/cache" --cache-to "127.0.0.1:$closed/ci/cache" \
    --insecure-registry "127.0.0.1:$closed" bb.json
  expect_eq "exit status with an unreachable cache" 0 "$RC" || return
  cat "$STDOUT" "$STDERR" >"$TEST_DIR/all.out"
  expect_eq "warnings that the cache cannot be read (once)" 1 "$(count 'cannot be read' "$TEST_DIR/all.out")"
  expect_contains "$TEST_DIR/all.out" "cache: not exported: step "
  expect_match "$TEST_DIR/all.out" 'committed bb:1 '
}

test_template_and_environment_settings() {
  setup_work || return
  # The template names the cache; $IMGBAKE_CACHE_FROM wins over it.
  python3 - "$REG" <<'PY' >cached.json
import json, sys
t = json.load(open("bb.json"))
t["imgbake"]["cache"] = {"from": [sys.argv[1] + "/nowhere/else"], "to": sys.argv[1] + "/ci/from-template"}
print(json.dumps(t, indent=1))
PY
  IMGBAKE_CACHE_FROM="$REG/ci/cache" on "$TEST_DIR/store" build --insecure-registry "$REG" cached.json
  expect_eq "exit status with the template's cache" 0 "$RC" || return
  cat "$STDOUT" "$STDERR" >"$TEST_DIR/all.out"
  expect_eq "steps fetched through IMGBAKE_CACHE_FROM" 4 "$(count "from $REG/ci/cache (" "$TEST_DIR/all.out")"
  expect_contains "$TEST_DIR/all.out" "cache: exported 4 steps to $REG/ci/from-template"
  expect_eq "cache tags in the template's repository" 4 "$(tags_of ci/from-template | count '^cache-' /dev/stdin)"
  # "cache": false is --no-cache.
  python3 -c 'import json; t = json.load(open("bb.json")); t["imgbake"]["cache"] = False; print(json.dumps(t))' >off.json
  on "$TEST_DIR/store" build off.json
  expect_eq "cached steps with \"cache\": false" 0 "$(count 'cached' "$STDOUT")"
  # Mistakes: a misspelt key (file:line:col), a tag on the repository.
  write_file bad.json <<'EOF'
{
  "builders": [{"type": "rootfs", "source": "tar:bb.tar.gz"}],
  "imgbake": {"cache": {"form": "x"}}
}
EOF
  expect_exit 1 imgbake validate bad.json
  expect_match "$STDERR" 'bad\.json:3:[0-9]+: .*form'
  on "$TEST_DIR/store" build --cache-from "$REG/ci/cache:latest" --insecure-registry "$REG" bb.json
  expect_eq "exit status of --cache-from with a tag" 2 "$RC"
  expect_contains "$STDERR" "without a tag or digest"
}

run_test second_store_builds_from_the_registry test_second_store_builds_from_the_registry
run_test untrusted_or_swapped_entries_are_not_used test_untrusted_or_swapped_entries_are_not_used
run_test unreachable_cache_is_a_warning test_unreachable_cache_is_a_warning
run_test template_and_environment_settings test_template_and_environment_settings
summary
