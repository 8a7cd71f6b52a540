# End-to-end: configuration management at bake time. The real puppet (7) and ansible-core
# (2.14) from Debian run inside rootfs builds: the Puppet and Ansible example templates, a
# changed role rerunning only its step (and --explain-cache naming the file), a sensitive
# variable echoed by the tools never reaching the log, the events, the provenance or the image,
# and failures that name the failing resource or task.
#
# One base image (templates/rootfs-config-mgmt-base.json: debootstrap minbase + puppet +
# ansible-core from the local apt mirror on 127.0.0.1) serves every test: it is committed once
# to the suite's store as cm-base:1. Building it takes minutes, so it is also kept, as an OCI
# layout, in /var/cache/imgbake-e2e (when writable, else e2e-cache/ next to the imgbake binary;
# $IMGBAKE_E2E_CACHE names another place), keyed by the base template and the mirror's package
# list; a later run imports it in a second.
. "$(dirname "$0")/lib.sh"
require_tools bwrap umoci skopeo debootstrap apt-ftparchive python3 tar

# The suite's store holds cm-base:1 for every test (no fresh_store).
export IMGBAKE_HOME="$E2E_ROOT/store"
CANARY="s3cr3t-canary-$$-q7"

both() {
  cat "$STDOUT" "$STDERR" >"$TEST_DIR/both.out"
  echo "$TEST_DIR/both.out"
}

# unpack REF DIR: the image's root filesystem, read by umoci (an independent reader).
unpack() {
  rm -rf "$2"
  check "umoci unpacks $1" umoci unpack --image "$IMGBAKE_HOME:$1" "$2" >/dev/null 2>"$TEST_DIR/umoci.err" || {
    e2e_show_file umoci "$TEST_DIR/umoci.err"
    return 1
  }
}

# provenance REF: the image's in-toto statement (the DSSE envelope's payload), on stdout.
provenance() {
  local digest
  digest=$("$IMGBAKE" show "$1" --output json | python3 -c 'import json,sys; print(json.load(sys.stdin)["provenance"])')
  python3 - "$IMGBAKE_HOME/blobs/sha256/${digest#sha256:}" <<'PY'
import base64, json, sys
env = json.load(open(sys.argv[1]))
print(base64.b64decode(env["payload"]).decode())
PY
}

# copy_example NAME...: the example templates and their files into the test's directory, so a
# test can change them.
copy_example() {
  local f
  for f in "$@"; do cp -r "$IMGBAKE_SOURCE_DIR/templates/$f" .; done
}

leftover_trees() { find "$IMGBAKE_HOME/tmp" -maxdepth 1 -name 'rootfs-*' 2>/dev/null | wc -l; }

# ---------------------------------------------------------------------------

test_base_image() {
  local debs=${IMGBAKE_TEST_DEBS:-/var/cache/imgbake-test-debs}
  if ! grep -qx '# packages: .*puppet ansible-core.*' "$debs/.fetch-test-debs.stamp" 2>/dev/null; then
    fail "the test packages (with puppet and ansible-core) are in $debs" \
      "tools/fetch-test-debs.sh $debs has run (tools/setup.sh does it)" "missing or older"
    return
  fi
  # Beside the test .debs when we may write there (CI machines keep /var/cache between runs, as
  # they keep the .debs), else in the build tree.
  local cache=${IMGBAKE_E2E_CACHE:-}
  if [ -z "$cache" ]; then
    cache=/var/cache/imgbake-e2e
    mkdir -p "$cache" 2>/dev/null && [ -w "$cache" ] || cache=$(dirname "$IMGBAKE")/e2e-cache
  fi
  local key
  key=$(cat "$IMGBAKE_SOURCE_DIR/templates/rootfs-config-mgmt-base.json" "$debs/.fetch-test-debs.stamp" | sha256sum | cut -c1-16)
  local layout="$cache/cm-base-$key"
  if [ -f "$layout/index.json" ]; then
    write_file import.json <<EOF
{"builders": [{"type": "rootfs", "name": "cm-base", "source": "oci:$layout:base"}], "imgbake": {"image": "cm-base"}}
EOF
    expect_exit 0 imgbake build import.json || return
  else
    . "$IMGBAKE_SOURCE_DIR/tests/fixtures/apt-mirror.sh"
    apt_mirror_start "$debs" "$TEST_DIR/mirror" || {
      fail "the local apt mirror starts"
      return
    }
    E2E_BG_PIDS+=("$APT_MIRROR_PID")
    E2E_TIMEOUT=900 expect_exit 0 imgbake build -var "mirror=$APT_MIRROR_URL" -var check_gpg=false \
      "$IMGBAKE_SOURCE_DIR/templates/rootfs-config-mgmt-base.json" || return
    apt_mirror_stop
    # Kept for the next run; older keys are dropped.
    mkdir -p "$cache"
    rm -rf "$cache"/cm-base-*
    skopeo copy -q "oci:$IMGBAKE_HOME:cm-base:1" "oci:$layout.tmp:base" && mv "$layout.tmp" "$layout"
  fi
  expect_match "$STDOUT" '^==> cm-base: committed cm-base:1 '
}

test_puppet_example() {
  copy_example rootfs-puppet.json puppet
  expect_exit 0 imgbake build rootfs-puppet.json || return
  expect_match "$STDOUT" 'Notice: /Stage\[main\]/Main/User\[deploy\]/ensure: created'
  expect_contains "$STDOUT" "puppet applied changes (exit status 2)"
  unpack web-puppet:1 bundle || return
  expect_file_content bundle/rootfs/etc/motd "baked by puppet for web-puppet"
  expect_file_content bundle/rootfs/etc/server-role "role=web
listen=8080"
  expect_match bundle/rootfs/etc/passwd '^deploy:x:1500:1500::/srv/deploy:/bin/sh$'
  # Nothing of the run itself is left in the image: no staging directory, no puppet reports.
  expect_eq "staging directory in the image" "" "$(ls bundle/rootfs/tmp/ 2>/dev/null)"
  expect_eq "puppet reports in the image" "" "$(ls bundle/rootfs/var/cache/puppet/reports 2>/dev/null)"
  # The provenance lists every file puppet read, with its digest.
  provenance web-puppet:1 >prov.json
  local digest
  digest=$(sha256sum puppet/modules/motd/data/common.yaml | cut -d' ' -f1)
  expect_contains prov.json "\"name\":\"$TEST_DIR/puppet/modules/motd/data/common.yaml\""
  expect_contains prov.json "$digest"
  expect_contains prov.json "\"name\":\"$TEST_DIR/puppet/manifests/site.pp\""
  # Unchanged: a cache hit, nothing unpacked, nothing run.
  expect_exit 0 imgbake build rootfs-puppet.json || return
  expect_contains "$STDOUT" "unchanged: web-puppet:1"
  expect_not_contains "$STDOUT" "unpacking layer"
  expect_not_contains "$STDOUT" "running puppet"
}

test_ansible_example_role_change_and_secret() {
  copy_example rootfs-ansible.json ansible
  expect_exit 0 imgbake build -var "deploy_token=$CANARY" rootfs-ansible.json || return
  expect_match "$STDOUT" 'TASK \[web : write the web server.s configuration\]'
  # The playbook printed the token; the log shows it masked.
  expect_match "$STDOUT" '"msg": "deploying with token <sensitive>"'
  unpack web-ansible:1 bundle || return
  expect_file_content bundle/rootfs/etc/web.conf "# written by the web role
port=8080
user=www"
  expect_match bundle/rootfs/etc/passwd '^www:x:1600:1600::/home/www:/usr/sbin/nologin$'
  expect_eq "ansible's state (~/.ansible) in the image" "" "$(ls -A bundle/rootfs/root/ 2>/dev/null | grep ansible)"
  provenance web-ansible:1 >prov.json
  expect_contains prov.json "\"name\":\"$TEST_DIR/ansible/roles/web/templates/web.conf.j2\""
  expect_contains prov.json "\"name\":\"$TEST_DIR/ansible/group_vars/webservers.yml\""
  # The secret is nowhere: not in the output, the provenance, the image or the store's catalog.
  expect_not_contains "$(both)" "$CANARY"
  expect_not_contains prov.json "$CANARY"
  check "the token is not in the image" test -z "$(grep -rl -- "$CANARY" bundle/rootfs 2>/dev/null)"
  check "the token is not in the store's catalog" test -z "$(grep -rla -- "$CANARY" "$IMGBAKE_HOME"/*.db* 2>/dev/null)"

  # One role changes: only its step runs again, and --explain-cache names the file.
  sed -i 's/^user=www$/user=www-data/' ansible/roles/web/templates/web.conf.j2
  expect_exit 0 imgbake build --explain-cache -var "deploy_token=$CANARY" rootfs-ansible.json || return
  expect_contains "$STDOUT" "provisioner 1 (ansible-local): hit"
  expect_match "$STDOUT" "provisioner 2 \\(ansible-local\\): miss"
  expect_match "$STDOUT" "step\\.config\\.inputs\\.$TEST_DIR/ansible/roles/web/templates/web\\.conf\\.j2: \"[0-9a-f]{64}\" -> \"[0-9a-f]{64}\""
  expect_eq "playbooks run" 1 "$(grep -c 'running ansible-playbook' "$STDOUT")"
  expect_contains "$STDOUT" "running ansible-playbook $TEST_DIR/ansible/web.yml"
  expect_not_contains "$(both)" "$CANARY"
  unpack web-ansible:2 bundle2 || return
  expect_file_content bundle2/rootfs/etc/web.conf "# written by the web role
port=8080
user=www-data"
}

test_puppet_failure_names_the_resource() {
  mkdir manifests
  write_file manifests/site.pp <<'EOF'
notify { "token is ${facts['token']}": }
file { '/etc/before-failure': ensure => file, content => "x\n" }
exec { 'fail-on-purpose':
  command => '/bin/false',
  require => File['/etc/before-failure'],
}
EOF
  write_file fail.json <<EOF
{
  "variables": {"token": ""},
  "sensitive-variables": ["token"],
  "builders": [{"type": "rootfs", "name": "cm", "source": "cm-base:1"}],
  "provisioners": [{"type": "puppet-masterless", "manifest_file": "manifests", "facter": {"token": "{{user \`token\`}}"}}],
  "error-cleanup-provisioner": {"type": "shell-local", "inline": ["touch $TEST_DIR/cleanup-ran"]},
  "imgbake": {"image": "cm-fail"}
}
EOF
  expect_exit 1 imgbake build -var "token=$CANARY" fail.json
  expect_match "$STDERR" 'puppet apply failed with exit status (4|6) \(.*failures\): resource Exec\[fail-on-purpose\] failed'
  expect_contains "$STDOUT" "Notice: token is <sensitive>"
  expect_not_contains "$(both)" "$CANARY"
  expect_file cleanup-ran
  expect_eq "rootfs trees left in the store" 0 "$(leftover_trees)"
  check "no image was committed" sh -c "! '$IMGBAKE' show cm-fail >/dev/null 2>&1"
}

test_ansible_failure_names_the_task() {
  write_file fail.yml <<'EOF'
- hosts: all
  tasks:
    - name: a task that works
      command: /bin/true
    - name: refuse the token
      fail:
        msg: "token {{ token }} refused"
EOF
  write_file fail.json <<EOF
{
  "variables": {"token": ""},
  "sensitive-variables": ["token"],
  "builders": [{"type": "rootfs", "name": "cm", "source": "cm-base:1"}],
  "provisioners": [{"type": "ansible-local", "playbook_file": "fail.yml",
                    "extra_arguments": ["--extra-vars", "token={{user \`token\`}}"]}],
  "error-cleanup-provisioner": {"type": "shell-local", "inline": ["touch $TEST_DIR/cleanup-ran"]},
  "imgbake": {"image": "cm-fail"}
}
EOF
  expect_exit 1 imgbake build --output json -var "token=$CANARY" fail.json
  expect_contains "$STDOUT" "ansible-playbook fail.yml failed with exit status 2: task 'refuse the token' failed on 127.0.0.1: token <sensitive> refused"
  expect_not_contains "$(both)" "$CANARY"
  expect_file cleanup-ran
  expect_eq "rootfs trees left in the store" 0 "$(leftover_trees)"
}

test_bad_options() {
  write_file bad.json <<'EOF'
{
  "builders": [{"type": "null"}],
  "provisioners": [
    {"type": "puppet-masterless", "manifest_file": "nope.pp", "facter": {"bad-name": "x"}},
    {"type": "ansible-local", "playbook_file": "site.yml", "playbook_files": ["a.yml"], "role_path": ["r"]}
  ]
}
EOF
  expect_exit 1 imgbake validate bad.json
  expect_contains "$STDERR" "bad.json:4:52: provisioner 1 (puppet-masterless): 'nope.pp' does not exist"
  expect_contains "$STDERR" "fact name 'bad-name' must be letters, digits and '_'"
  expect_contains "$STDERR" "give either 'playbook_file' or 'playbook_files', not both"
  expect_match "$STDERR" "bad.json:5:[0-9]+: provisioner 2 \\(ansible-local\\): unknown option 'role_path' \\(did you mean 'role_paths'\\?\\)"
}

run_test base_image test_base_image
run_test puppet_example test_puppet_example
run_test ansible_example_role_change_and_secret test_ansible_example_role_change_and_secret
run_test puppet_failure_names_the_resource test_puppet_failure_names_the_resource
run_test ansible_failure_names_the_task test_ansible_failure_names_the_task
run_test bad_options test_bad_options
summary
