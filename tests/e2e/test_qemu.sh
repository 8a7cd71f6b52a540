#!/usr/bin/env bash
# End-to-end: the qemu builder boots real guests (the tiny test guest of tests/fixtures, under
# TCG), provisions them over SSH with the shell and file provisioners, shuts them down and
# leaves a disk image; then the *output* image is booted and checked for what was baked in.
# Failures, Ctrl-C and Packer compatibility (../shared/bench/packer-tiny.json unchanged) too.
. "$(dirname "$0")/lib.sh"

. "$(dirname "$0")/qemu_lib.sh"

expect_no_work_dirs() {
  expect_eq "imgbake-qemu-* temporary directories left in $TMPDIR" "" \
    "$(ls -A "$TMPDIR" 2>/dev/null | grep '^imgbake-qemu-' || true)"
}

# boot_output DISK CMD: boots a copy-on-write overlay of DISK as the guest's root disk and runs
# CMD over ssh; its output goes to $STDOUT.
boot_output() {
  local disk=$1 cmd=$2 overlay=$TEST_DIR/check-overlay.qcow2
  qemu-img create -q -f qcow2 -b "$disk" -F qcow2 "$overlay"
  GUEST_CMD="$cmd" expect_exit 0 "$SRC/tests/fixtures/boot-tiny-guest.sh" "$GUEST" "$overlay"
}

test_disk_guest_is_baked_and_boots() {
  mkdir -p files/conf.d
  printf 'key=value\n' >files/conf.d/app.conf
  printf '#!/bin/sh\necho "script ran as $(id -u) with MODE=$MODE"\necho "$MODE" > /etc/imgbake-demo/mode\n' >setup.sh
  chmod 0750 setup.sh
  printf '#!/bin/sh\nprintf tool\n' >tool.sh
  chmod 0755 tool.sh
  python3 - "$SRC/templates/qemu-disk.json" <<'PY' >t.json
import json, sys
t = json.load(open(sys.argv[1]))
t["provisioners"] += [
    {"type": "shell", "script": "setup.sh", "environment_vars": ["MODE=it's baked"]},
    {"type": "file", "source": "files/conf.d", "destination": "/etc/app/"},
    {"type": "file", "source": "tool.sh", "destination": "/opt/tools/"},
    {"type": "file", "direction": "download", "source": "/etc/imgbake-demo/greeting", "destination": "downloaded/"},
]
print(json.dumps(t, indent=1))
PY
  expect_exit 0 imgbake build -var "dir=$GUEST" t.json || return
  expect_contains "$STDOUT" "connected to SSH as root"
  expect_contains "$STDOUT" "script ran as 0 with MODE=it's baked"
  expect_contains "$STDOUT" "the guest powered off"
  cp "$STDOUT" build.out
  local disk=output-disk/tiny-disk.qcow2
  expect_file "$disk"
  expect_eq "output format" "qcow2" "$(qemu-img info --output=json "$disk" | json_get /dev/stdin 'd["format"]')"
  expect_eq "virtual size is disk_size (256M)" "268435456" \
    "$(qemu-img info --output=json "$disk" | json_get /dev/stdin 'd["virtual-size"]')"
  run qemu-img check "$disk"
  expect_eq "qemu-img check of the output" 0 "$RC"
  # The artifact id printed is the disk's sha256.
  local sum
  sum=$(sha256sum "$disk" | cut -d' ' -f1)
  expect_contains build.out "artifact qemu: sha256:$sum"
  expect_file_content downloaded/greeting "hello from imgbake"
  expect_no_qemu
  expect_no_work_dirs
  # The image is in the store with the disk as a qcow2 layer.
  expect_exit 0 imgbake show tiny-disk:1 --output json
  expect_contains "$STDOUT" "application/vnd.imgbake.disk.v1.qcow2"

  # Boot the output and look at what was baked in.
  boot_output "$PWD/$disk" 'cat /etc/imgbake-demo/greeting /etc/imgbake-demo/motd /etc/imgbake-demo/mode /etc/app/conf.d/app.conf; /opt/tools/tool.sh; echo; stat -c "%a %n" /opt/tools/tool.sh'
  expect_contains "$STDOUT" "hello from imgbake"
  expect_contains "$STDOUT" "baked by disk"
  expect_contains "$STDOUT" "it's baked"
  expect_contains "$STDOUT" "key=value"
  expect_contains "$STDOUT" "tool"
  expect_contains "$STDOUT" "755 /opt/tools/tool.sh"
}

test_packer_template_builds_unchanged() {
  # The same command line as for packer: only -var dir and -var kernel.
  cp "$SRC/../shared/bench/packer-tiny.json" . 2>/dev/null || {
    skip "../shared/bench/packer-tiny.json is not there"
    return
  }
  mkdir -p pk
  cp "$GUEST/base.qcow2" "$GUEST/initramfs.cpio.gz" "$GUEST/key" "$GUEST/key.pub" pk/
  expect_exit 0 imgbake build -var "dir=$PWD/pk" -var "kernel=$GUEST/vmlinuz" packer-tiny.json || return
  expect_contains "$STDOUT" "hello"
  expect_contains "$STDOUT" "ssh-ed25519"
  expect_file pk/out-packer/packer-tiny
  expect_eq "output format" "qcow2" "$(qemu-img info --output=json pk/out-packer/packer-tiny | json_get /dev/stdin 'd["format"]')"
  # Packer resizes a disk_image to disk_size (default 40960M).
  expect_eq "resized to the default disk_size" "42949672960" \
    "$(qemu-img info --output=json pk/out-packer/packer-tiny | json_get /dev/stdin 'd["virtual-size"]')"
  expect_no_qemu

  # A second build refuses the existing output directory, and -force replaces it.
  expect_exit 1 imgbake build -var "dir=$PWD/pk" -var "kernel=$GUEST/vmlinuz" packer-tiny.json
  expect_contains "$STDERR" "already exists"
  expect_contains "$STDERR" "-force"
  expect_file pk/out-packer/packer-tiny
  expect_no_qemu
}

test_boot_command_and_http_server() {
  # The guest runs a root shell on tty1 (the VGA console): what boot_command types over QMP runs
  # there. The line is typed three times (12-34 s after qemu starts), appending: a line typed before
  # the shell opened tty1 (a loaded 2-core machine boots the guest in 15 s and more), or while the
  # guest was starved (qemu's PS/2 queue holds 16 bytes; more are dropped), arrives incomplete, and
  # the test looks for one intact copy.
  python3 - "$SRC/templates/qemu-tiny.json" <<'PY' >t.json
import json, sys
t = json.load(open(sys.argv[1]))
b = t["builders"][0]
b["boot_wait"] = "12s"
line = "echo typed-over-qmp:{{ .HTTPPort }} >> /tmp/typed<enter>"
b["boot_command"] = [line, "<wait5>", line, "<wait5>", line]
b["http_content"] = {"/hello.txt": "served by imgbake\n"}
b["http_directory"] = "www"
t["provisioners"] = [{"type": "shell", "inline": [
    "want=typed-over-qmp:${PACKER_HTTP_ADDR##*:}",
    "i=0; while ! grep -qx $want /tmp/typed 2>/dev/null && [ $i -lt 60 ]; do sleep 1; i=$((i+1)); done",
    "echo typed: $(grep -x $want /tmp/typed | head -1)",
    "echo http: $(wget -qO- http://$PACKER_HTTP_ADDR/hello.txt) $(wget -qO- http://$PACKER_HTTP_ADDR/dir/page.txt)",
    "echo addr: $PACKER_HTTP_ADDR"]}]
print(json.dumps(t))
PY
  mkdir -p www/dir
  echo "from the directory" >www/dir/page.txt
  expect_exit 0 imgbake build -var "dir=$GUEST" t.json || return
  local port
  port=$(sed -n 's/.*serving .* on 127.0.0.1:\([0-9]*\) .*/\1/p' "$STDOUT" | head -1)
  expect_match "$STDOUT" "typing the boot command \\([0-9]+ key events\\)"
  expect_contains "$STDOUT" "typed: typed-over-qmp:$port"
  expect_contains "$STDOUT" "http: served by imgbake from the directory"
  expect_contains "$STDOUT" "addr: 10.0.2.2:$port"
  expect_contains "$STDOUT" "GET /hello.txt 200"
  expect_no_qemu
}

test_download_cache_backing_file_and_temporary_key() {
  # The source disk over HTTP with a SHA256SUMS file; no key in the template: imgbake makes a
  # temporary key pair, and the guest fetches a script that authorizes it from the HTTP server.
  mkdir -p srv
  cp "$GUEST/base.qcow2" srv/base.qcow2
  (cd srv && sha256sum base.qcow2 >SHA256SUMS)
  local port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  python3 -m http.server --bind 127.0.0.1 --directory srv "$port" >http.log 2>&1 &
  local server=$!
  E2E_BG_PIDS+=("$server")
  wait_for 10 python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1])' \
    "http://127.0.0.1:$port/SHA256SUMS" 2>/dev/null
  python3 - "$SRC/templates/qemu-tiny.json" "$port" <<'PY' >t.json
import json, sys
t = json.load(open(sys.argv[1]))
b = t["builders"][0]
port = sys.argv[2]
b["iso_url"] = f"http://127.0.0.1:{port}/base.qcow2"
b["iso_checksum"] = f"file:http://127.0.0.1:{port}/SHA256SUMS"
b["use_backing_file"] = True
del b["ssh_private_key_file"]
# The key reaches the guest in a script served by the HTTP server (http_content is rendered when
# the build runs); the kernel command line names it, as an installer's names its preseed file
# (qemuargs are rendered with HTTPIP and HTTPPort). Typing it would depend on the machine's load:
# keys typed faster than a starved TCG guest reads its 16-byte PS/2 queue are dropped.
b["http_content"] = {"/authorize": "mkdir -p /root/.ssh; echo '{{ .SSHPublicKey }}' >> /root/.ssh/authorized_keys\n"}
for arg in b["qemuargs"]:
    if arg[0] == "-append":
        arg[1] += " imgbake.authorize=http://{{ .HTTPIP }}:{{ .HTTPPort }}/authorize"
t["provisioners"] = [{"type": "shell", "inline": ["echo logged in with $(tail -c 30 /root/.ssh/authorized_keys | head -c 8)..."]}]
print(json.dumps(t))
PY
  expect_exit 0 imgbake build -var "dir=$GUEST" t.json || return
  expect_contains "$STDOUT" "sha256 verified"
  expect_contains "$STDOUT" "GET /authorize 200"
  expect_contains "$STDOUT" "logged in with"
  expect_contains "$STDOUT" "use_backing_file: not converting"
  local cached
  cached=$(ls "$IMGBAKE_CACHE_DIR"/downloads/ | grep -v '\.lock$' | head -1)
  expect_eq "cache entry is named by the checksum" "$(sha256sum srv/base.qcow2 | cut -d' ' -f1).iso" "$cached"
  expect_eq "the output is an overlay on the cached source" "$IMGBAKE_CACHE_DIR/downloads/$cached" \
    "$(qemu-img info --output=json output-tiny/packer-tiny | json_get /dev/stdin 'd["backing-filename"]')"
  # The temporary key is gone with the build's temp dir; it never reaches the output or the log.
  expect_no_work_dirs
  expect_not_contains "$STDOUT" "PRIVATE KEY"
  # A second build takes the source from the cache: the server is not asked for it again.
  local gets
  gets=$(grep -c 'GET /base.qcow2' http.log)
  rm -rf output-tiny
  expect_exit 0 imgbake build -var "dir=$GUEST" t.json
  expect_contains "$STDOUT" "from the cache"
  expect_eq "GET /base.qcow2 requests after the second build" "$gets" "$(grep -c 'GET /base.qcow2' http.log)"
  expect_no_qemu
  kill "$server" 2>/dev/null
  wait "$server" 2>/dev/null || true
}

test_raw_output_and_shutdown_without_a_command() {
  # Without shutdown_command imgbake asks for an ACPI power-down; the tiny guest ignores it, so
  # after shutdown_timeout qemu is killed and the build fails, saying so.
  python3 - "$SRC/templates/qemu-tiny.json" <<'PY' >t.json
import json, sys
t = json.load(open(sys.argv[1]))
b = t["builders"][0]
del b["shutdown_command"]
b["shutdown_timeout"] = "3s"
t["provisioners"] = [{"type": "shell", "inline": ["echo up"]}]
print(json.dumps(t))
PY
  expect_exit 1 imgbake build -var "dir=$GUEST" t.json
  expect_contains "$STDOUT" "asking the guest to power off (ACPI"
  expect_contains "$STDERR" "did not power off within shutdown_timeout (3.000s)"
  expect_contains "$STDERR" "qemu was killed"
  expect_no_qemu
  expect_no_file output-tiny

  # format raw, with a shutdown command: a raw disk of disk_size.
  python3 - "$SRC/templates/qemu-tiny.json" <<'PY' >raw.json
import json, sys
t = json.load(open(sys.argv[1]))
b = t["builders"][0]
b["format"] = "raw"
b["disk_size"] = "100M"
b["output_directory"] = "output-raw"
t["provisioners"] = [{"type": "shell", "inline": ["echo up"]}]
print(json.dumps(t))
PY
  expect_exit 0 imgbake build -var "dir=$GUEST" raw.json || return
  expect_eq "raw output format" "raw" "$(qemu-img info --output=json output-raw/packer-tiny | json_get /dev/stdin 'd["format"]')"
  expect_eq "raw output size" "104857600" "$(stat -c %s output-raw/packer-tiny)"
  expect_no_qemu
}

test_failing_script_runs_error_cleanup_provisioner() {
  python3 - "$SRC/templates/qemu-tiny.json" "$PWD" <<'PY' >t.json
import json, sys
t = json.load(open(sys.argv[1]))
t["provisioners"] = [
    {"type": "shell", "inline": ["echo about to fail", "exit 7"]},
    {"type": "shell", "inline": ["echo never runs"]},
]
t["error-cleanup-provisioner"] = {"type": "shell-local", "inline": ["echo cleaned > " + sys.argv[2] + "/cleanup-ran"]}
print(json.dumps(t))
PY
  expect_exit 1 imgbake build -var "dir=$GUEST" t.json
  expect_contains "$STDOUT" "about to fail"
  expect_not_contains "$STDOUT" "never runs"
  expect_contains "$STDERR" "status 7"
  expect_file_content cleanup-ran "cleaned"
  expect_no_qemu
  expect_no_work_dirs
  expect_no_file output-tiny
}

test_ctrl_c_while_a_remote_command_runs() {
  python3 - "$SRC/templates/qemu-tiny.json" <<'PY' >t.json
import json, sys
t = json.load(open(sys.argv[1]))
t["provisioners"] = [{"type": "shell", "inline": ["echo sleeping now", "sleep 120", "echo woke up"]}]
print(json.dumps(t))
PY
  interrupt_when "sleeping now" 120 build -var "dir=$GUEST" t.json || return
  local pid=$INTERRUPTED_PID t0
  t0=$(now_ms)
  E2E_CHECKS=$((E2E_CHECKS + 1))
  wait_for 10 pid_gone "$pid" || fail "imgbake exits within 10 s of Ctrl-C" "exit" "still running"
  local rc=0
  wait "$pid" || rc=$?
  expect_eq "exit status after Ctrl-C" 130 "$rc"
  echo "  (Ctrl-C to exit: $(($(now_ms) - t0)) ms)"
  expect_not_contains "$STDOUT" "woke up"
  expect_no_qemu
  expect_no_work_dirs
  expect_no_file output-tiny
}

test_qemu_that_cannot_start_is_reported() {
  python3 - "$SRC/templates/qemu-tiny.json" <<'PY' >t.json
import json, sys
t = json.load(open(sys.argv[1]))
t["builders"][0]["qemuargs"].append(["-no-such-qemu-flag"])
print(json.dumps(t))
PY
  expect_exit 1 imgbake build -var "dir=$GUEST" t.json
  expect_contains "$STDERR" "no-such-qemu-flag"
  expect_no_qemu
  expect_no_file output-tiny
}

test_bad_options_are_named_with_their_position() {
  cat >t.json <<'EOF'
{"builders": [{"type": "qemu", "iso_url": "x.qcow2", "iso_checksum": "sha256:abc",
  "format": "vmdk", "disk_size": "12Q", "ssh_username": "root", "acclerator": "tcg"}]}
EOF
  expect_exit 1 imgbake validate t.json
  expect_match "$STDERR" "t.json:1:[0-9]+: .*checksum 'sha256:abc'"
  expect_match "$STDERR" "t.json:2:13: .*'vmdk' must be qcow2 or raw"
  expect_match "$STDERR" "t.json:2:34: .*'12Q' is not a size"
  expect_contains "$STDERR" "did you mean 'accelerator'"
}

test_accelerator_auto_never_hangs() {
  if [ ! -e /dev/kvm ]; then
    skip "no /dev/kvm here: auto means tcg, nothing to probe"
    return
  fi
  python3 - "$SRC/templates/qemu-tiny.json" <<'PY' >t.json
import json, sys
t = json.load(open(sys.argv[1]))
b = t["builders"][0]
b["accelerator"] = "auto"
b["accelerator_probe_timeout"] = "15s"
t["provisioners"] = [{"type": "shell", "inline": ["echo booted"]}]
print(json.dumps(t))
PY
  expect_exit 0 imgbake build -var "dir=$GUEST" t.json || return
  expect_contains "$STDOUT" "booted"
  if grep -q "made no progress under kvm" "$STDOUT" "$STDERR"; then
    # The verdict is remembered: the next build goes straight to tcg.
    rm -rf output-tiny
    expect_exit 0 imgbake build -var "dir=$GUEST" t.json
    expect_contains "$STDOUT" "an earlier build found that guests make no progress under kvm"
    expect_not_contains "$STDERR" "made no progress under kvm"
  fi
  expect_no_qemu
}

run_test disk_guest_is_baked_and_boots test_disk_guest_is_baked_and_boots
run_test packer_template_builds_unchanged test_packer_template_builds_unchanged
run_test boot_command_and_http_server test_boot_command_and_http_server
run_test download_cache_backing_file_and_temporary_key test_download_cache_backing_file_and_temporary_key
run_test raw_output_and_shutdown_without_a_command test_raw_output_and_shutdown_without_a_command
run_test failing_script_runs_error_cleanup_provisioner test_failing_script_runs_error_cleanup_provisioner
run_test ctrl_c_while_a_remote_command_runs test_ctrl_c_while_a_remote_command_runs
run_test qemu_that_cannot_start_is_reported test_qemu_that_cannot_start_is_reported
run_test bad_options_are_named_with_their_position test_bad_options_are_named_with_their_position
run_test accelerator_auto_never_hangs test_accelerator_auto_never_hangs
summary
