# End-to-end: the rootfs builder. Real sandboxes (bubblewrap), real layers read back by
# umoci and skopeo, the layer cache across builds, reproducible digests, export, and a
# debootstrap base from a local apt mirror on 127.0.0.1 with a package installed by apt.
. "$(dirname "$0")/lib.sh"
require_tools bwrap umoci skopeo podman runc debootstrap apt-ftparchive busybox tar python3

fresh_store() {
  export IMGBAKE_HOME="$TEST_DIR/store"
  export IMGBAKE_CONFIG_HOME="$TEST_DIR/config"
}

# write_bb_template [SECOND_LINE]: bb.json, a busybox base, a shell step, a file step.
write_bb_template() {
  local line=${1:-'echo second'}
  echo "payload v1" >payload.txt
  write_file bb.json <<EOF
{
  "builders": [{"type": "rootfs", "source": "tar:bb.tar.gz"}],
  "provisioners": [
    {"type": "shell", "inline": ["echo hello > /etc/motd", "rm /etc/old.txt", "rm -r /var/cache/junk",
                                 "echo \$GREETING > /etc/greeting"]},
    {"type": "file", "source": "payload.txt", "destination": "/root/payload.txt"},
    {"type": "shell", "inline": ["$line > /root/last.txt"]}
  ],
  "imgbake": {"image": "bb", "config": {"Env": {"GREETING": "hey"}, "Cmd": ["/bin/sh"], "WorkingDir": "/root",
                                        "ExposedPorts": ["8080/tcp"]}}
}
EOF
}

# both: stdout and stderr of the last command, in one file; prints its name.
both() {
  cat "$STDOUT" "$STDERR" >"$TEST_DIR/both.out"
  echo "$TEST_DIR/both.out"
}

# podman_run IMAGE_REF [CMD...]: runs an image of the store with podman (runc, cgroupfs, the
# low ulimits notes/env.md names), its storage inside the test's directory, no network.
podman_run() {
  local ref=$1
  shift
  cat >"$TEST_DIR/containers.conf" <<'CONF'
[containers]
default_ulimits=["nofile=1024:1024","nproc=1024:1024"]
[engine]
runtime="runc"
cgroup_manager="cgroupfs"
events_logger="file"
CONF
  # podman names the image after the layout's path, and names must be lower case: a
  # lower-case link to the store (the scratch directory's name has capitals).
  local layout="/tmp/imgbake-e2e-oci-$$-$RANDOM"
  ln -s "$IMGBAKE_HOME" "$layout"
  # vfs: no overlay mounts left behind under the test's directory.
  # podman refuses a runroot longer than 50 characters.
  local runroot
  runroot=$(mktemp -d /tmp/ibpod.XXXXXX)
  CONTAINERS_CONF="$TEST_DIR/containers.conf" run podman --root "$TEST_DIR/podman/root" \
    --runroot "$runroot" --storage-driver vfs run --rm --network none "oci:$layout:$ref" "$@"
  [ "$RC" -eq 0 ] || e2e_show_file stderr "$STDERR"
  rm -rf "$layout" "$runroot"
}

count_lines() { grep -c -- "$1" "$2" || true; }

manifest_digest() { "$IMGBAKE" show "$1" 2>/dev/null | sed -n 's/^digest: *//p'; }

# ---------------------------------------------------------------------------

test_build_layers_read_back() {
  fresh_store
  busybox_tarball bb.tar.gz
  write_bb_template
  expect_exit 0 imgbake build bb.json || return
  expect_match "$STDOUT" '^==> rootfs: committed bb:1 \(sha256:[0-9a-f]{64}\)'
  # umoci, an independent reader, unpacks the store's OCI layout.
  check "umoci unpacks bb:1" umoci unpack --image "$IMGBAKE_HOME:bb:1" bundle >/dev/null 2>umoci.err || {
    cat umoci.err
    return
  }
  expect_file_content bundle/rootfs/etc/motd "hello"
  expect_file_content bundle/rootfs/etc/greeting "hey"
  expect_file_content bundle/rootfs/root/payload.txt "payload v1"
  expect_file_content bundle/rootfs/root/last.txt "second"
  expect_no_file bundle/rootfs/etc/old.txt
  expect_no_file bundle/rootfs/var/cache/junk
  expect_file bundle/rootfs/bin/busybox
  # skopeo: four layers (base + three steps), the runtime config from the template.
  run skopeo inspect --config "oci:$IMGBAKE_HOME:bb:1"
  cp "$STDOUT" config.json
  expect_eq "diff_ids" 4 "$(json_get config.json 'len(d["rootfs"]["diff_ids"])')"
  expect_eq "Env" '["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "GREETING=hey"]' \
    "$(json_get config.json 'd["config"]["Env"]')"
  expect_eq "Cmd" '["/bin/sh"]' "$(json_get config.json 'd["config"]["Cmd"]')"
  expect_eq "WorkingDir" "/root" "$(json_get config.json 'd["config"]["WorkingDir"]')"
  expect_eq "ExposedPorts" '{"8080/tcp": {}}' "$(json_get config.json 'd["config"]["ExposedPorts"]')"
  expect_eq "history" 4 "$(json_get config.json 'len(d["history"])')"
  run skopeo inspect "oci:$IMGBAKE_HOME:bb:1"
  cp "$STDOUT" inspect.json
  expect_eq "layers" 4 "$(json_get inspect.json 'len(d["Layers"])')"
  # The deletions are whiteouts in the first step's layer.
  local l2
  l2=$(json_get inspect.json 'd["Layers"][1]')
  run tar -tzf "$IMGBAKE_HOME/blobs/sha256/${l2#sha256:}"
  expect_contains "$STDOUT" "etc/.wh.old.txt"
  expect_contains "$STDOUT" "var/cache/.wh.junk"
  expect_exit 0 imgbake verify bb:1
  expect_exit 0 imgbake store check
  # Nothing is left of the build tree.
  expect_eq "files left in the store's tmp" "" "$(ls -A "$IMGBAKE_HOME/tmp" 2>/dev/null)"
}

test_podman_runs_the_image() {
  fresh_store
  busybox_tarball bb.tar.gz
  write_bb_template
  expect_exit 0 imgbake build bb.json || return
  # The image's Cmd (/bin/sh), Env and WorkingDir as podman applies them.
  podman_run bb:1 sh -c 'cat /etc/motd; echo "$GREETING"; pwd; cat payload.txt'
  expect_eq "podman run: exit status" 0 "$RC"
  expect_eq "podman run: output" "hello
hey
/root
payload v1" "$(cat "$STDOUT")"
}

test_cache_hits_and_misses() {
  fresh_store
  busybox_tarball bb.tar.gz
  write_bb_template
  expect_exit 0 imgbake build bb.json || return
  local d1
  d1=$(manifest_digest bb:1)
  # Nothing changed: every step is a cache hit, no step runs, and the image is the same.
  expect_exit 0 imgbake build bb.json || return
  cp "$STDOUT" second.out
  expect_eq "cached steps" 3 "$(count_lines 'cached: ' second.out)"
  expect_contains second.out "base: cached layer"
  expect_not_contains second.out "running inline script"
  expect_not_contains second.out "uploading payload.txt"
  expect_contains second.out "unchanged: bb:1 ($d1)"
  # The last step changed: only it runs again; the earlier ones come from the cache.
  write_bb_template 'echo changed'
  expect_exit 0 imgbake build --explain-cache bb.json || return
  cp "$STDOUT" third.out
  expect_eq "cached steps after changing the last one" 2 "$(count_lines 'cached: ' third.out)"
  expect_contains third.out "running inline script \"echo changed > /root/last.txt\""
  expect_match third.out 'cache: provisioner 3 \(shell\): miss; last time this step had key [0-9a-f]{16}, changed:'
  expect_match third.out 'step\.config\.inline\[0\]: "echo second > /root/last.txt" -> "echo changed > /root/last.txt"'
  expect_match "$STDOUT" '^==> rootfs: committed bb:2 '
  run umoci unpack --image "$IMGBAKE_HOME:bb:2" bundle
  expect_file_content bundle/rootfs/root/last.txt "changed"
  # The file a step uploads is part of its key: a new payload reruns that step and the next.
  echo "payload v2" >payload.txt
  expect_exit 0 imgbake build bb.json || return
  expect_eq "cached steps after changing the payload" 1 "$(count_lines 'cached: ' "$STDOUT")"
  # --no-cache runs everything.
  expect_exit 0 imgbake build --no-cache bb.json || return
  expect_eq "cached steps with --no-cache" 0 "$(count_lines 'cached' "$STDOUT")"
  expect_contains "$STDOUT" "running inline script"
  # gc keeps the cache; --prune-cache forgets it, and the images stay whole.
  expect_exit 0 imgbake store gc
  expect_exit 0 imgbake build bb.json
  expect_eq "cached steps after gc" 3 "$(count_lines 'cached: ' "$STDOUT")"
  expect_exit 0 imgbake store gc --prune-cache
  expect_match "$STDOUT" '^gc: forgot [0-9]+ build cache entries'
  expect_exit 0 imgbake store check
  expect_exit 0 imgbake build bb.json
  expect_eq "cached steps after --prune-cache" 0 "$(count_lines 'cached: ' "$STDOUT")"
}

test_host_steps_run_on_cache_hits() {
  # A download and a shell-local step change the host, not the image: a rebuild whose layers all
  # come from the cache still runs them (the walk-through's "boot the result" recipe broke here).
  busybox_tarball bb.tar.gz
  write_file host.json <<'EOF'
{
  "builders": [{"type": "rootfs", "source": "tar:bb.tar.gz"}],
  "provisioners": [
    {"type": "shell", "inline": ["echo kernel-bits > /root/vmlinuz"]},
    {"type": "file", "direction": "download", "source": "/root/vmlinuz", "destination": "out/vmlinuz"},
    {"type": "shell-local", "inline": ["echo ran >> host-runs.txt"]},
    {"type": "shell", "inline": ["echo last > /root/last.txt"]}
  ],
  "imgbake": {"image": "hostfx"}
}
EOF
  expect_exit 0 imgbake build host.json || return
  expect_file_content out/vmlinuz "kernel-bits"
  expect_eq "shell-local runs" 1 "$(wc -l <host-runs.txt)"
  rm -rf out
  expect_exit 0 imgbake build host.json || return
  cp "$STDOUT" second.out
  # The image's steps come from the cache; the host's run again, the download from the tree
  # brought up from the cached layers.
  expect_eq "steps skipped by the cache" 2 "$(grep -c '; not run$' second.out)"
  expect_eq "host steps that ran on cache hits" 2 "$(grep -c 'it runs anyway: its effect is on the host' second.out)"
  expect_file_content out/vmlinuz "kernel-bits"
  expect_eq "shell-local runs after the rebuild" 2 "$(wc -l <host-runs.txt)"
  expect_contains second.out "unchanged: hostfx:1"
  # For CI: each step_end says whether the step came from the cache, with the key its message shows.
  expect_exit 0 imgbake build --output json host.json || return
  py_check "step_end carries the cache hit and key" '
import json, re, sys
events = [json.loads(l) for l in open(sys.argv[1])]
ends = [e for e in events if e["event"] == "step_end" and "cache" in e]
assert len(ends) == 4, ends
shown = [re.search(r"step key ([0-9a-f]{12})", e["text"]).group(1) for e in events
         if e["event"] == "message" and "step key" in e.get("text", "")]
assert [e["cache"]["hit"] for e in ends] == [True] * 4, ends
assert [e["cache"]["key"][:12] for e in ends] == shown, (ends, shown)
# The commit event of a rebuild that gave the same digest: no new version.
c = [e for e in events if e["event"] == "commit"]
assert len(c) == 1 and c[0]["ref"] == "hostfx:1" and c[0]["new_version"] is False, c
' "$STDOUT"
}

test_secrets_stay_out_of_the_cache_and_the_image() {
  # A sensitive variable with a quote and a backslash, in an inline command (longer than a log
  # line shows of it) and in environment_vars: the cache's key material holds its digest, and no
  # log line, --explain-cache output or file of the store holds it in any encoding.
  fresh_store
  busybox_tarball bb.tar.gz
  local secret='ghp_TOP"SECRET\abcdefghijklmnopqrstuvwxyz0123456789'
  write_file sec.json <<'EOF'
{
  "variables": {"token": ""},
  "sensitive-variables": ["token"],
  "builders": [{"type": "rootfs", "source": "tar:bb.tar.gz"}],
  "provisioners": [
    {"type": "shell", "inline": ["echo 'Authorization: Bearer {{user `token`}} for https://example.invalid/x' > /root/cmd.txt"],
     "environment_vars": ["TOKEN={{user `token`}}"]},
    {"type": "shell", "inline": ["echo \"$TOKEN\" | wc -c > /root/len.txt"], "environment_vars": ["TOKEN={{user `token`}}"]}
  ],
  "imgbake": {"image": "sec"}
}
EOF
  expect_exit 0 imgbake build sec.json -var "token=$secret" || return
  cp "$STDOUT" first.out
  expect_contains first.out "<sensitive>"
  expect_exit 0 imgbake build --explain-cache sec.json -var "token=${secret}2" || return
  cp "$STDOUT" second.out
  expect_contains second.out "<sensitive sha256:"
  local prefix=${secret:0:12}
  local hits
  hits=$(grep -rlaF -e "$prefix" -e 'TOP\"SECRET' "$IMGBAKE_HOME" first.out second.out "$STDERR" 2>/dev/null || true)
  expect_eq "files holding (a prefix of) the secret" "" "$hits"
  # The image config ships with the image: a sensitive value there is refused before anything runs.
  write_file env.json <<'EOF'
{
  "variables": {"token": ""},
  "sensitive-variables": ["token"],
  "builders": [{"type": "rootfs", "source": "tar:bb.tar.gz"}],
  "imgbake": {"image": "envsec", "config": {"Env": {"TOKEN": "{{user `token`}}"}}}
}
EOF
  expect_exit 1 imgbake build env.json -var "token=$secret"
  expect_contains "$(both)" "imgbake.config.Env holds a sensitive value"
  expect_not_contains "$(both)" "$prefix"
}

test_reproducible_digests() {
  busybox_tarball bb.tar.gz
  write_bb_template
  local a b
  # Two clean builds (fresh stores, no cache), a minute's worth of mtimes apart.
  IMGBAKE_HOME="$TEST_DIR/s1" SOURCE_DATE_EPOCH=1700000000 expect_exit 0 imgbake build --no-cache bb.json || return
  a=$(IMGBAKE_HOME="$TEST_DIR/s1" manifest_digest bb:1)
  touch -d "2020-01-01" payload.txt
  IMGBAKE_HOME="$TEST_DIR/s2" SOURCE_DATE_EPOCH=1700000000 expect_exit 0 imgbake build --no-cache bb.json || return
  b=$(IMGBAKE_HOME="$TEST_DIR/s2" manifest_digest bb:1)
  check "a digest was printed" test -n "$a"
  expect_eq "manifest digest of two clean builds" "$a" "$b"
  # Every mtime is clamped to SOURCE_DATE_EPOCH and `created` is that time.
  IMGBAKE_HOME="$TEST_DIR/s1" run skopeo inspect --config "oci:$TEST_DIR/s1:bb:1"
  cp "$STDOUT" config.json
  expect_eq "created" "2023-11-14T22:13:20Z" "$(json_get config.json 'd["created"]')"
  local l
  for l in $(json_get <(skopeo inspect "oci:$TEST_DIR/s1:bb:1") '" ".join(d["Layers"])'); do
    tar --numeric-owner -tvzf "$TEST_DIR/s1/blobs/sha256/${l#sha256:}" | awk '{print $4" "$5}' >>mtimes.txt
  done
  expect_eq "mtimes later than SOURCE_DATE_EPOCH" "" "$(awk '$1" "$2 > "2023-11-14 22:13"' mtimes.txt)"
}

test_reproducible_by_default() {
  # No SOURCE_DATE_EPOCH, no source_date_epoch, no git repository: the time comes from the
  # inputs (the tarball's newest entry), so two clean builds still give one digest.
  unset SOURCE_DATE_EPOCH
  busybox_tarball bb.tar.gz
  write_bb_template
  check "the scratch directory is not in a git repository" bash -c '! git rev-parse --git-dir >/dev/null 2>&1'
  local a b newest
  IMGBAKE_HOME="$TEST_DIR/s1" expect_exit 0 imgbake build --no-cache bb.json || return
  expect_contains "$STDOUT" "SOURCE_DATE_EPOCH "
  expect_match "$STDOUT" "SOURCE_DATE_EPOCH [0-9]+ .*: the newest file time in .*bb.tar.gz"
  a=$(IMGBAKE_HOME="$TEST_DIR/s1" manifest_digest bb:1)
  sleep 1.1  # the provisioned files of the second build are written a second later
  touch payload.txt
  IMGBAKE_HOME="$TEST_DIR/s2" expect_exit 0 imgbake build --no-cache bb.json || return
  b=$(IMGBAKE_HOME="$TEST_DIR/s2" manifest_digest bb:1)
  check "a digest was printed" test -n "$a"
  expect_eq "manifest digest of two clean builds without SOURCE_DATE_EPOCH" "$a" "$b"
  # `created` is the tarball's newest entry time.
  newest=$(TZ=UTC tar --full-time -tvzf bb.tar.gz | awk '{print $4"T"$5"Z"}' | sort | tail -n 1)
  run skopeo inspect --config "oci:$TEST_DIR/s1:bb:1"
  cp "$STDOUT" config.json
  expect_eq "created is the newest time in the tarball" "$newest" "$(json_get config.json 'd["created"]')"
}

test_export_formats() {
  fresh_store
  busybox_tarball bb.tar.gz
  write_bb_template
  expect_exit 0 imgbake build bb.json || return
  expect_exit 0 imgbake export bb:1 --format tar -o root.tar
  run tar -xOf root.tar etc/motd
  expect_eq "etc/motd in the flattened tar" "hello" "$(cat "$STDOUT")"
  run tar -tf root.tar
  expect_not_contains "$STDOUT" ".wh."
  expect_not_contains "$STDOUT" "etc/old.txt"
  expect_exit 0 imgbake export bb:1 --format raw -o root.raw
  run debugfs -R "cat /root/payload.txt" root.raw
  expect_eq "payload in the ext4 disk" "payload v1" "$(cat "$STDOUT")"
  expect_exit 0 imgbake export bb:1 --format qcow2 --size 128M -o root.qcow2
  run qemu-img info --output json root.qcow2
  cp "$STDOUT" info.json
  expect_eq "qcow2 format" "qcow2" "$(json_get info.json 'd["format"]')"
  expect_eq "qcow2 virtual size" "134217728" "$(json_get info.json 'd["virtual-size"]')"
  expect_exit 2 imgbake export bb:1 --format raw --size lots -o bad.raw
  expect_no_file bad.raw
}

# same_regions A B: same size, and the same bytes in 64 KiB at the start, in the middle (the
# data at 2 GiB + 12345), 1 GiB in (a hole) and at the end; cheaper than cmp over 4 GiB of zeros.
same_regions() {
  [ "$(stat -c %s "$1")" = "$(stat -c %s "$2")" ] || return 1
  local at
  for at in 0 16384 32768 65535; do  # in 64 KiB blocks: 0, 1 GiB, 2 GiB, 4 GiB - 64 KiB
    [ "$(dd if="$1" bs=65536 skip="$at" count=1 status=none | sha256sum)" = \
      "$(dd if="$2" bs=65536 skip="$at" count=1 status=none | sha256sum)" ] || return 1
  done
}

# A 4 GiB sparse file with a few bytes of data (issue 13, item 22: 16 GiB took 128 s and gave a
# 72.5 MiB layer). Its holes must stay holes in the layers, in the export and on disk.
test_sparse_file_in_a_tarball_base() {
  fresh_store
  local root="$TEST_DIR/sparse-root" size=$((4 * 1024 * 1024 * 1024)) mid=$((2 * 1024 * 1024 * 1024 + 12345))
  mkdir -p "$root/bin" "$root/var/lib"
  cp /bin/busybox "$root/bin/busybox"
  ln -sf busybox "$root/bin/sh"
  # The reference: truncate + dd, data at the start, in the middle and at the very end.
  truncate -s "$size" reference.img
  printf 'head of the disk' | dd of=reference.img conv=notrunc status=none
  printf 'middle' | dd of=reference.img bs=1 seek="$mid" conv=notrunc status=none
  printf 'tail' | dd of=reference.img bs=1 seek=$((size - 4)) conv=notrunc status=none
  cp --sparse=always reference.img "$root/var/lib/disk.img"
  tar -C "$root" --sparse -czf sparse.tar.gz .
  write_file sparse.json <<'EOF'
{
  "builders": [{"type": "rootfs", "source": "tar:sparse.tar.gz"}],
  "provisioners": [{"type": "shell", "inline": ["echo step > /var/lib/step.txt"]}],
  "imgbake": {"image": "sparse"}
}
EOF
  local started elapsed
  started=$(now_ms)
  expect_exit 0 imgbake build sparse.json || return
  elapsed=$(($(now_ms) - started))
  check "the build takes seconds, not minutes (took ${elapsed} ms)" test "$elapsed" -lt 30000
  # The base layer holds what the tarball holds (busybox, a few bytes of the disk), not the holes.
  local biggest limit=$(($(stat -c %s sparse.tar.gz) + 65536))
  biggest=$(find "$IMGBAKE_HOME/blobs/sha256" -type f -printf '%s\n' | sort -n | tail -n 1)
  check "no blob holds the holes (largest: $biggest bytes, the tarball + 64 KiB: $limit)" test "$biggest" -lt "$limit"

  # The flattened export keeps the file sparse; GNU tar extracts it with its holes.
  expect_exit 0 imgbake export sparse:1 --format tar -o root.tar || return
  limit=$(($(stat -c %s /bin/busybox) + 65536))
  check "the exported tar holds no holes ($(stat -c %s root.tar) bytes, busybox + 64 KiB: $limit)" \
    test "$(stat -c %s root.tar)" -lt "$limit"
  mkdir out && tar -C out -xf root.tar
  check "the exported file has the reference's content" same_regions out/var/lib/disk.img reference.img
  check "the exported file is sparse on disk ($(du -k out/var/lib/disk.img | cut -f1) KiB)" \
    test "$(du -k out/var/lib/disk.img | cut -f1)" -lt 1024
  expect_file_content out/var/lib/step.txt "step"

  # umoci, an independent reader of the store's layout, gets the same bytes.
  run umoci unpack --image "$IMGBAKE_HOME:sparse:1" bundle
  expect_eq "umoci unpacks sparse:1" 0 "$RC"
  check "umoci's copy has the reference's content" same_regions bundle/rootfs/var/lib/disk.img reference.img
}

test_store_image_as_base() {
  fresh_store
  busybox_tarball bb.tar.gz
  write_bb_template
  expect_exit 0 imgbake build bb.json || return
  local base
  base=$(manifest_digest bb:1)
  write_file child.json <<'EOF'
{
  "builders": [{"type": "rootfs", "source": "bb:1"}],
  "provisioners": [{"type": "shell", "inline": ["cat /etc/motd > /root/from-base.txt", "echo $GREETING >> /root/from-base.txt"]}],
  "imgbake": {"image": "child"}
}
EOF
  expect_exit 0 imgbake build child.json || return
  run umoci unpack --image "$IMGBAKE_HOME:child:1" bundle
  expect_file_content bundle/rootfs/root/from-base.txt "hello
hey"
  run skopeo inspect --config "oci:$IMGBAKE_HOME:child:1"
  cp "$STDOUT" config.json
  expect_eq "layers of child" 5 "$(json_get config.json 'len(d["rootfs"]["diff_ids"])')"
  expect_eq "the base's Cmd is inherited" '["/bin/sh"]' "$(json_get config.json 'd["config"]["Cmd"]')"
  run "$IMGBAKE" show child:1
  expect_contains "$STDOUT" "$base"
  # A revoked base is refused.
  expect_exit 0 imgbake revoke bb:1 --reason "test"
  expect_exit 1 imgbake build --no-cache child.json
  expect_contains "$(both)" "revoked"
}

test_oci_layout_and_archive_sources() {
  fresh_store
  busybox_tarball bb.tar.gz
  write_bb_template
  expect_exit 0 imgbake build bb.json || return
  # skopeo writes the image as an OCI layout and as an OCI archive; both are bases.
  run skopeo copy "oci:$IMGBAKE_HOME:bb:1" "oci:$TEST_DIR/layout:base"
  expect_eq "skopeo copy to a layout" 0 "$RC"
  run skopeo copy "oci:$IMGBAKE_HOME:bb:1" "oci-archive:$TEST_DIR/base.tar:base"
  expect_eq "skopeo copy to an archive" 0 "$RC"
  local src
  for src in "oci:$TEST_DIR/layout:base" "oci-archive:$TEST_DIR/base.tar:base"; do
    write_file from-oci.json <<EOF
{
  "builders": [{"type": "rootfs", "source": "$src"}],
  "provisioners": [{"type": "shell", "inline": ["cat /root/payload.txt /etc/motd > /root/seen.txt"]}],
  "imgbake": {"image": "from-oci"}
}
EOF
    expect_exit 0 imgbake build from-oci.json || return
    expect_contains "$STDOUT" "base: $src (sha256:"
  done
  rm -rf bundle
  run umoci unpack --image "$IMGBAKE_HOME:from-oci:1" bundle
  expect_file_content bundle/rootfs/root/seen.txt "payload v1
hello"
  # A tag the layout does not have: the error lists what it has.
  write_file bad-tag.json <<EOF
{"builders": [{"type": "rootfs", "source": "oci:$TEST_DIR/layout:nope"}]}
EOF
  expect_exit 1 imgbake build bad-tag.json
  expect_contains "$(both)" "no image 'nope' in the OCI layout"
  expect_contains "$(both)" "it has: base"
}

test_failure_and_interrupt_clean_up() {
  fresh_store
  busybox_tarball bb.tar.gz
  write_file fail.json <<'EOF'
{
  "builders": [{"type": "rootfs", "source": "tar:bb.tar.gz"}],
  "provisioners": [{"type": "shell", "inline": ["echo about to fail", "exit 3"]}]
}
EOF
  expect_exit 1 imgbake build fail.json
  expect_contains "$(both)" "exited with status 3"
  expect_eq "files left in the store's tmp" "" "$(ls -A "$IMGBAKE_HOME/tmp" 2>/dev/null)"
  write_file slow.json <<'EOF'
{
  "builders": [{"type": "rootfs", "source": "tar:bb.tar.gz"}],
  "provisioners": [{"type": "shell", "inline": ["echo sleeping", "sleep 60"]}]
}
EOF
  "$IMGBAKE" build slow.json >slow.out 2>&1 &
  local pid=$!
  wait_for 30 grep -q "sleeping" slow.out || fail "the sandboxed command started"
  # gc while the build runs: the build's tree in the store's tmp/ is work in progress, not a leftover.
  expect_exit 0 imgbake store gc
  expect_contains "$STDOUT" "another imgbake process has the store open"
  check "the running build's tree is still there" bash -c "ls -d '$IMGBAKE_HOME'/tmp/rootfs-*/root/bin >/dev/null"
  expect_eq "mode of the running build's directory" 700 "$(stat -c %a "$IMGBAKE_HOME"/tmp/rootfs-*)"
  local t0 rc=0
  t0=$(now_ms)
  kill -INT "$pid"
  wait "$pid" || rc=$?
  expect_eq "exit status after Ctrl-C" 130 "$rc"
  check "stopped within 5 s" test $(($(now_ms) - t0)) -lt 5000
  check "no sandbox left" bash -c "! pgrep -f '^bwrap .*$IMGBAKE_HOME' >/dev/null"
  expect_eq "files left in the store's tmp" "" "$(ls -A "$IMGBAKE_HOME/tmp" 2>/dev/null)"
  # What a second Ctrl-C (an immediate exit) can leave: a tree directory. gc, alone, removes it.
  mkdir -p "$IMGBAKE_HOME/tmp/rootfs-left/etc"
  echo leftover >"$IMGBAKE_HOME/tmp/rootfs-left/etc/motd"
  expect_exit 0 imgbake store gc
  expect_match "$STDOUT" '^gc: removed 0 unreferenced blobs and 1 temporary files \(9 bytes\)'
  expect_not_contains "$STDOUT" "another imgbake process"
  expect_eq "entries left in the store's tmp after gc" "" "$(ls -A "$IMGBAKE_HOME/tmp" 2>/dev/null)"
}

test_bad_options() {
  fresh_store
  write_file bad.json <<'EOF'
{
  "builders": [{"type": "rootfs",
                "source": "tar:missing.tar",
                "layer_compression": "bzip2"}]
}
EOF
  expect_exit 1 imgbake validate bad.json
  expect_match "$(both)" 'bad.json:3:[0-9]+: .*the rootfs tarball .missing.tar. does not exist'
  expect_match "$(both)" 'bad.json:4:[0-9]+: .*layer_compression .bzip2. is not gzip, zstd or none'
}

# debootstrap from the local mirror, apt-get install from it, and a file: the issue's
# "done when" template. The .debs come from tools/fetch-test-debs.sh (run by tools/setup.sh).
test_debootstrap_install_and_cache() {
  local debs=${IMGBAKE_TEST_DEBS:-/var/cache/imgbake-test-debs}
  if [ ! -f "$debs/.fetch-test-debs.stamp" ]; then
    fail "the test packages are in $debs" "tools/fetch-test-debs.sh $debs has run (tools/setup.sh does it)" "missing"
    return
  fi
  . "$IMGBAKE_SOURCE_DIR/tests/fixtures/apt-mirror.sh"
  apt_mirror_start "$debs" "$TEST_DIR/mirror" || {
    fail "the local apt mirror starts"
    return
  }
  E2E_BG_PIDS+=("$APT_MIRROR_PID")  # stopped with the test's other background processes
  fresh_store
  export SOURCE_DATE_EPOCH=1700000000
  # Copies outside the repository: a template in a git checkout labels its image with the
  # commit and whether the tree is dirty, which may change between the builds below.
  cp "$IMGBAKE_SOURCE_DIR/templates/rootfs-debian.json" "$IMGBAKE_SOURCE_DIR/templates/rootfs-debian.pkr.hcl" .
  local vars=(-var "mirror=$APT_MIRROR_URL" -var check_gpg=false -var "apt_options=[trusted=yes]")
  E2E_TIMEOUT=400 expect_exit 0 imgbake build "${vars[@]}" rootfs-debian.json || return
  cp "$STDOUT" first.out
  expect_match first.out '^==> debian: committed debian-hello:1 '
  run umoci unpack --image "$IMGBAKE_HOME:debian-hello:1" bundle
  expect_file bundle/rootfs/usr/bin/hello
  run chroot bundle/rootfs /usr/bin/hello
  expect_eq "hello, run from the unpacked image" "Hello, world!" "$(cat "$STDOUT")"
  expect_file_content bundle/rootfs/etc/motd "baked by imgbake"
  # The apt lists and caches the install step made are not in the image.
  expect_eq "apt lists left in the image" "" "$(ls bundle/rootfs/var/lib/apt/lists/ 2>/dev/null | grep -v -e '^partial$' -e '^lock$')"
  # The template's Cmd is /usr/bin/hello.
  podman_run debian-hello:1
  expect_eq "podman run debian-hello:1" "Hello, world!" "$(cat "$STDOUT")"
  # Unchanged: every step is a cache hit and nothing is unpacked or run.
  expect_exit 0 imgbake build "${vars[@]}" rootfs-debian.json
  expect_eq "cached steps" 2 "$(count_lines 'cached: ' "$STDOUT")"
  expect_contains "$STDOUT" "base: cached layer"
  expect_not_contains "$STDOUT" "debootstrap bookworm"
  expect_not_contains "$STDOUT" "unpacking layer"
  expect_contains "$STDOUT" "unchanged: debian-hello:1"
  # A second clean build (another store, so no cache) gives the same digest: debootstrap's
  # logs are dropped, the template removes apt's, and every mtime is clamped. It builds the
  # template's HCL2 twin, so the same digest also says that rootfs-debian.pkr.hcl makes the
  # same image as rootfs-debian.json (issue 18; one debootstrap less than testing it apart).
  local d1 d2
  d1=$(manifest_digest debian-hello:1)
  IMGBAKE_HOME="$TEST_DIR/store2" E2E_TIMEOUT=400 expect_exit 0 imgbake build "${vars[@]}" rootfs-debian.pkr.hcl || return
  expect_match "$STDOUT" '^==> rootfs\.debian: committed debian-hello:1 '
  d2=$(IMGBAKE_HOME="$TEST_DIR/store2" manifest_digest debian-hello:1)
  check "a digest was printed" test -n "$d1"
  expect_eq "manifest digest of rootfs-debian.json and, in a clean store, of rootfs-debian.pkr.hcl" "$d1" "$d2"
  apt_mirror_stop
}

run_test build_layers_read_back test_build_layers_read_back
run_test podman_runs_the_image test_podman_runs_the_image
run_test cache_hits_and_misses test_cache_hits_and_misses
run_test host_steps_run_on_cache_hits test_host_steps_run_on_cache_hits
run_test secrets_stay_out_of_the_cache_and_the_image test_secrets_stay_out_of_the_cache_and_the_image
run_test reproducible_digests test_reproducible_digests
run_test reproducible_by_default test_reproducible_by_default
run_test export_formats test_export_formats
run_test store_image_as_base test_store_image_as_base
run_test sparse_file_in_a_tarball_base test_sparse_file_in_a_tarball_base
run_test oci_layout_and_archive_sources test_oci_layout_and_archive_sources
run_test failure_and_interrupt_clean_up test_failure_and_interrupt_clean_up
run_test bad_options test_bad_options
run_test debootstrap_install_and_cache test_debootstrap_install_and_cache
summary
