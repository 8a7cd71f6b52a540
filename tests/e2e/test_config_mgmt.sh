# End-to-end: configuration management at bake time. The real puppet (7) and ansible-core
# (2.14) from Debian run inside rootfs builds: the Puppet and Ansible example templates, a
# changed role rerunning only its step (and --explain-cache naming the file), a sensitive
# variable echoed by the tools never reaching the log, the events, the provenance or the image,
# and failures that name the failing resource or task. Also: the host's ansible-playbook against
# a rootfs build (through the imgbake connection and the exec sandbox) and against a qemu build
# of the tiny test guest (over its SSH endpoint); manifest_dir, puppet_bin_dir, a package puppet
# installs, galaxy_file from local tarballs; chef-solo and chef-client against a recording
# stand-in (Chef is not packaged for Debian 12), their files loaded with Chef's own
# configuration library (ruby-chef-config).
#
# One base image (templates/rootfs-config-mgmt-base.json: debootstrap minbase + puppet +
# ansible-core from the local apt mirror on 127.0.0.1) serves every test: it is committed once
# to the suite's store as cm-base:1. Building it takes minutes, so it is also kept, as an OCI
# layout, in /var/cache/imgbake-e2e (when writable, else e2e-cache/ next to the imgbake binary;
# $IMGBAKE_E2E_CACHE names another place), keyed by the base template and the mirror's package
# list; a later run imports it in a second.
. "$(dirname "$0")/lib.sh"
require_tools bwrap umoci skopeo debootstrap apt-ftparchive python3 tar ansible-playbook ruby qemu-system-x86_64 qemu-img debugfs

# A build from cm-base unpacks and removes a 184 MiB tree: on a loaded 2-core machine that alone
# takes over a minute, so each command gets 300 s (the default is 120 s).
export E2E_TIMEOUT=${E2E_TIMEOUT:-300}

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

# A role tarball for ansible-galaxy, installed from a local file (no network).
make_role_tarball() {
  mkdir -p role-src/baked_role/tasks role-src/baked_role/meta
  write_file role-src/baked_role/meta/main.yml <<'EOF'
galaxy_info: {author: imgbake tests, description: a role from a local tarball, license: MIT, min_ansible_version: "2.9", platforms: []}
dependencies: []
EOF
  write_file role-src/baked_role/tasks/main.yml <<'EOF'
- name: mark the image
  copy: {content: "installed by ansible-galaxy\n", dest: /etc/galaxy-role}
EOF
  tar -czf "$1" -C role-src baked_role
}

test_host_ansible_puppet_dirs_galaxy() {
  # One build from cm-base (unpacking it is the expensive part) with four steps:
  # - puppet-masterless: manifest_dir applied as a directory (execute_command with
  #   {{.ManifestDir}} and {{.PuppetBinDir}}), installing a package with dpkg;
  # - ansible-local with a galaxy_file whose role comes from a tarball in playbook_dir;
  # - ansible on the host, reaching the tree through the exec sandbox (the imgbake connection):
  #   facts, a role from galaxy_file, group_vars and templates next to the playbook, a secret.
  local debs=${IMGBAKE_TEST_DEBS:-/var/cache/imgbake-test-debs}
  cp "$debs"/hello_*_amd64.deb hello.deb
  mkdir -p manifests main pb play/group_vars play/templates
  write_file main/site.pp <<'EOF'
file { '/etc/from-site-pp': ensure => file, content => "site.pp\n" }
EOF
  write_file manifests/10-package.pp <<'EOF'
package { 'hello': ensure => installed, provider => dpkg, source => '/var/tmp/hello.deb' }
EOF
  make_role_tarball pb/baked_role.tar.gz
  write_file pb/requirements.yml <<'EOF'
- src: baked_role.tar.gz
  name: baked_role
EOF
  write_file pb/local.yml <<'EOF'
- hosts: all
  gather_facts: false
  roles: [baked_role]
EOF
  cp pb/baked_role.tar.gz host_role.tar.gz
  write_file play/requirements.yml <<EOF
- src: file://$TEST_DIR/host_role.tar.gz
  name: host_role
EOF
  write_file play/group_vars/webservers.yml <<'EOF'
listen_port: 9090
EOF
  write_file play/templates/app.conf.j2 <<'EOF'
port={{ listen_port }}
host={{ inventory_hostname }}
builder={{ packer_builder_type }}
os={{ ansible_facts['distribution'] }} {{ ansible_facts['distribution_major_version'] }}
EOF
  write_file play/site.yml <<'EOF'
- hosts: webservers
  gather_subset: [min]
  tasks:
    - name: show the token
      debug: {msg: "host ansible got token {{ token }}"}
    - name: write the app configuration
      template: {src: app.conf.j2, dest: /etc/app.conf, mode: "0640"}
    - name: add the app user
      user: {name: app, uid: 1700, shell: /bin/sh, create_home: false}
    - name: ask dpkg about hello
      command: dpkg-query -W -f=${Status} hello
      register: hello_status
      changed_when: false
    - name: keep its answer
      copy: {content: "{{ hello_status.stdout }}\n", dest: /etc/hello-status}
    - name: the role from galaxy_file
      include_role: {name: host_role}
EOF
  write_file cm.json <<EOF
{
  "variables": {"token": ""},
  "sensitive-variables": ["token"],
  "builders": [{"type": "rootfs", "name": "cm", "source": "cm-base:1"}],
  "provisioners": [
    {"type": "file", "source": "hello.deb", "destination": "/var/tmp/hello.deb"},
    {"type": "puppet-masterless", "manifest_file": "main/site.pp", "manifest_dir": "manifests",
     "puppet_bin_dir": "/usr/bin",
     "execute_command": "cd {{.WorkingDir}} && {{.FacterVars}} {{.PuppetBinDir}}/puppet apply --detailed-exitcodes --color=false --vardir=/tmp/pv --logdir=/tmp/pl {{.ManifestDir}}"},
    {"type": "ansible-local", "playbook_dir": "pb", "playbook_file": "pb/local.yml",
     "galaxy_file": "pb/requirements.yml"},
    {"type": "shell", "inline": ["rm /var/tmp/hello.deb /etc/galaxy-role"]},
    {"type": "ansible", "playbook_file": "play/site.yml", "groups": ["webservers"],
     "galaxy_file": "play/requirements.yml",
     "extra_arguments": ["--extra-vars", "token={{user \`token\`}}"]}
  ],
  "imgbake": {"image": "cm-more"}
}
EOF
  expect_exit 0 imgbake build -var "token=$CANARY" cm.json || return
  # puppet
  expect_match "$STDOUT" "running puppet: cd /tmp/packer-puppet-masterless && FACTER_packer_build_name='cm' FACTER_packer_builder_type='rootfs' /usr/bin/puppet apply .* /tmp/packer-puppet-masterless/manifests$"
  expect_match "$STDOUT" "Notice: /Stage\\[main\\]/Main/Package\\[hello\\]/ensure: created"
  # ansible-local and host ansible: both galaxy installs
  expect_contains "$STDOUT" "baked_role was installed successfully"
  expect_contains "$STDOUT" "host_role was installed successfully"
  expect_contains "$STDOUT" "running ansible-playbook on the host, through the build's communicator"
  expect_match "$STDOUT" '"msg": "host ansible got token <sensitive>"'
  expect_match "$STDOUT" 'TASK \[host_role : mark the image\]'
  unpack cm-more:1 bundle || return
  expect_file_content bundle/rootfs/etc/from-site-pp "site.pp"
  expect_file bundle/rootfs/usr/bin/hello
  expect_eq "hello in the image's dpkg status" "install ok installed" \
    "$(awk '/^Package: hello$/ {p=1} p && /^Status:/ {print substr($0, 9); exit}' bundle/rootfs/var/lib/dpkg/status)"
  expect_no_file bundle/rootfs/var/tmp/hello.deb
  expect_file_content bundle/rootfs/etc/app.conf "port=9090
host=default
builder=rootfs
os=Debian 12"
  expect_match bundle/rootfs/etc/passwd '^app:x:1700:'
  expect_file_content bundle/rootfs/etc/hello-status "install ok installed"
  # The first galaxy role's file was removed by the shell step; the host's role wrote it again.
  expect_file_content bundle/rootfs/etc/galaxy-role "installed by ansible-galaxy"
  expect_eq "ansible's state in the image (/root/.ansible)" "" "$(ls -A bundle/rootfs/root/ | grep ansible)"
  expect_eq "ansible's temporary files in the image (/tmp)" "" "$(ls -A bundle/rootfs/tmp/)"
  provenance cm-more:1 >prov.json
  expect_contains prov.json "\"name\":\"play/templates/app.conf.j2\""
  expect_contains prov.json "\"name\":\"play/requirements.yml\""
  expect_contains prov.json "\"name\":\"manifests/10-package.pp\""
  expect_contains prov.json "$(sha256sum play/group_vars/webservers.yml | cut -d' ' -f1)"
  expect_not_contains "$(both)" "$CANARY"
  expect_not_contains prov.json "$CANARY"

  # A failing task of the host's ansible: named in the error, the error-cleanup-provisioner runs,
  # nothing is left. Nothing runs on the machine, so a busybox tree will do.
  write_file play/fail.yml <<'EOF'
- hosts: all
  gather_facts: false
  tasks:
    - name: refuse the token
      fail: {msg: "token {{ token }} refused"}
EOF
  busybox_tarball bb.tar.gz
  local trees_before
  trees_before=$(leftover_trees)
  write_file fail.json <<EOF
{
  "variables": {"token": ""},
  "sensitive-variables": ["token"],
  "builders": [{"type": "rootfs", "name": "cm", "source": "tar:bb.tar.gz"}],
  "provisioners": [{"type": "ansible", "playbook_file": "play/fail.yml", "extra_arguments": ["-e", "token={{user \`token\`}}"]}],
  "error-cleanup-provisioner": {"type": "shell-local", "inline": ["touch $TEST_DIR/cleanup-ran"]},
  "imgbake": {"image": "cm-host-fail"}
}
EOF
  expect_exit 1 imgbake build -var "token=$CANARY" fail.json
  expect_contains "$STDERR" "ansible-playbook play/fail.yml failed with exit status 2: task 'refuse the token' failed on default: token <sensitive> refused"
  expect_not_contains "$(both)" "$CANARY"
  expect_file cleanup-ran
  expect_eq "rootfs trees left in the store" "$trees_before" "$(leftover_trees)"
}

test_chef_stand_in() {
  # Chef is not packaged for Debian 12: a stand-in (tests/fixtures/chef-standin.sh) installed as
  # chef-solo and chef-client records what the provisioners gave it; the configuration files it
  # received are then loaded with Chef's own configuration library (ruby-chef-config).
  if ! ruby -e 'require "chef-config/config"' 2>/dev/null; then
    fail "Chef's configuration library loads" "ruby-chef-config installed (tools/setup.sh)" "missing"
    return
  fi
  # The stand-in needs only a shell and a few tools: a busybox tree is enough.
  busybox_tarball bb.tar.gz cp tr find sort grep basename printf
  mkdir -p cookbooks/web/recipes roles
  write_file cookbooks/web/recipes/default.rb <<'EOF'
file '/etc/web' do
  content 'chef'
end
EOF
  write_file roles/web.json <<'EOF'
{"name": "web", "run_list": ["recipe[web]"]}
EOF
  write_file chef.json <<EOF
{
  "variables": {"secret": ""},
  "sensitive-variables": ["secret"],
  "builders": [{"type": "rootfs", "name": "cm", "source": "tar:bb.tar.gz"}],
  "provisioners": [
    {"type": "file", "source": "$IMGBAKE_SOURCE_DIR/tests/fixtures/chef-standin.sh", "destination": "/bin/chef-solo"},
    {"type": "file", "source": "$IMGBAKE_SOURCE_DIR/tests/fixtures/chef-standin.sh", "destination": "/bin/chef-client"},
    {"type": "chef-solo", "skip_install": true, "cookbook_paths": ["cookbooks"], "roles_path": "roles",
     "run_list": ["role[web]"], "json": {"web": {"port": 8080, "token": "{{user \`secret\`}}"}}},
    {"type": "chef-client", "skip_install": true, "cookbook_paths": ["cookbooks"], "node_name": "baked-node",
     "run_list": ["recipe[web]"], "chef_license": "accept-no-persist"}
  ],
  "imgbake": {"image": "cm-chef"}
}
EOF
  expect_exit 0 imgbake build -var "secret=$CANARY" chef.json || return
  expect_contains "$STDOUT" "running chef-solo: chef-solo --no-color -c '/tmp/packer-chef-solo/solo.rb' -j '/tmp/packer-chef-solo/node.json'"
  expect_contains "$STDOUT" "running chef-client: chef-client --local-mode --no-color -c '/tmp/packer-chef-client/client.rb' -j '/tmp/packer-chef-client/node.json'"
  expect_contains "$STDOUT" "Chef Infra Client stand-in finished"
  expect_not_contains "$(both)" "$CANARY"
  unpack cm-chef:1 bundle || return
  local rec=bundle/rootfs/var/lib/chef-standin
  expect_file_content $rec/chef-solo/argv "--no-color
-c
/tmp/packer-chef-solo/solo.rb
-j
/tmp/packer-chef-solo/node.json"
  expect_file_content $rec/chef-solo/cookbook-files "./web/recipes/default.rb"
  expect_file_content $rec/chef-client/cookbook-files "./web/recipes/default.rb"
  expect_file_content $rec/chef-client/node.json '{
  "run_list": [
    "recipe[web]"
  ]
}'
  python3 - "$rec/chef-solo/node.json" "$CANARY" <<'PY2' >solo-node.out
import json, sys
n = json.load(open(sys.argv[1]))
print(n["run_list"], n["web"]["port"], n["web"]["token"] == sys.argv[2])
PY2
  expect_file_content solo-node.out "['role[web]'] 8080 True"
  # Chef's own loader reads what the provisioners wrote.
  write_file load.rb <<'EOF'
require "chef-config/config"
ChefConfig::Config.from_file(ARGV[0])
c = ChefConfig::Config
puts "local_mode=#{c.local_mode} cookbook_path=#{Array(c.cookbook_path).join(',')} role_path=#{c.role_path}"
puts "node_name=#{c.node_name} node_path=#{c.node_path} license=#{c.chef_license}"
EOF
  run ruby load.rb $rec/chef-solo/config.rb
  expect_contains "$STDOUT" "local_mode=false cookbook_path=/tmp/packer-chef-solo/cookbooks-0 role_path=/tmp/packer-chef-solo/roles"
  expect_match "$STDOUT" ' license=$'  # skip_install: no chef_license, as in Packer
  run ruby load.rb $rec/chef-client/config.rb
  expect_contains "$STDOUT" "local_mode=true cookbook_path=/tmp/packer-chef-client/cookbooks-0"
  expect_contains "$STDOUT" "node_name=baked-node node_path=/tmp/packer-chef-client/nodes license=accept-no-persist"

  # A failing run names the resource, from Chef's own error line.
  local trees_before
  trees_before=$(leftover_trees)
  python3 - <<'PY2'
import json
t = json.load(open("chef.json"))
t["provisioners"][3]["json"] = {"fail_on_purpose": True}
t["imgbake"]["image"] = "cm-chef-fail"
json.dump(t, open("chef-fail.json", "w"))
PY2
  expect_exit 1 imgbake build -var "secret=$CANARY" chef-fail.json
  expect_contains "$STDERR" "chef-client failed with exit status 1: resource execute[migrate] (action run) failed"
  expect_eq "rootfs trees left in the store" "$trees_before" "$(leftover_trees)"
}

test_ansible_host_qemu() {
  # The host's ansible-playbook over the qemu build's own SSH endpoint (127.0.0.1, the forwarded
  # port, the build's key). The tiny guest has no Python, so the playbook uses what works
  # without it on the machine (raw, script); the output disk is read back with debugfs.
  local guest=${IMGBAKE_TEST_GUEST_DIR:-$E2E_ROOT/guest}
  if ! "$IMGBAKE_SOURCE_DIR/tests/fixtures/make-tiny-guest.sh" "$guest" --disk >fixture.log 2>&1; then
    fail "the tiny guest fixture builds" "exit 0" "$(tail -5 fixture.log)"
    return
  fi
  mkdir -p files
  printf '#!/bin/sh\necho "script ran with $1" > /etc/ansible-baked/script\n' >files/mark.sh
  write_file guest.yml <<'EOF'
- hosts: baked
  gather_facts: false
  tasks:
    - name: write through raw
      raw: mkdir -p /etc/ansible-baked && echo "{{ greeting }} on {{ ansible_host }} as {{ ansible_user }}" > /etc/ansible-baked/greeting
    - name: run a script sent from the host
      script: files/mark.sh "{{ packer_build_name }}"
    - name: say the token
      raw: echo "guest token {{ token }}"
      register: said
    - name: show what the guest said
      debug: {msg: "{{ said.stdout | trim }}"}
EOF
  python3 - "$IMGBAKE_SOURCE_DIR/templates/qemu-disk.json" <<'PY2' >qemu.json
import json, sys
t = json.load(open(sys.argv[1]))
t["variables"]["token"] = ""
t["sensitive-variables"] = ["token"]
t["provisioners"] = [{"type": "ansible", "playbook_file": "guest.yml", "groups": ["baked"], "host_alias": "tiny",
                      "extra_arguments": ["-e", "greeting=hello-ansible", "-e", "token={{user `token`}}"]}]
t["imgbake"]["image"] = "cm-qemu-ansible"
json.dump(t, open("/dev/stdout", "w"))
PY2
  expect_exit 0 imgbake build -var "dir=$guest" -var "token=$CANARY" qemu.json || return
  expect_match "$STDOUT" "running ansible-playbook on the host, over SSH to 127\\.0\\.0\\.1:[0-9]+: ansible-playbook .*--private-key $guest/key"
  expect_match "$STDOUT" "inventory .*: tiny ansible_host=127\\.0\\.0\\.1 ansible_port=[0-9]+ ansible_user=root; \\[baked\\]; tiny"
  expect_contains "$STDOUT" "guest token <sensitive>"
  expect_not_contains "$(both)" "$CANARY"
  qemu-img convert -O raw output-disk/tiny-disk.qcow2 out.raw
  debugfs -R 'cat /etc/ansible-baked/greeting' out.raw >greeting.out 2>/dev/null
  debugfs -R 'cat /etc/ansible-baked/script' out.raw >script.out 2>/dev/null
  expect_file_content greeting.out "hello-ansible on 127.0.0.1 as root"
  expect_file_content script.out "script ran with disk"
  debugfs -R 'ls -l /tmp' out.raw 2>/dev/null | grep -c imgbake-ansible >tmp.out || true
  expect_file_content tmp.out "0"
  rm -f out.raw
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

# run_test with the test's time: this suite runs in CI, whose budget is tight.
timed_test() {
  local t0=$SECONDS
  run_test "$@"
  echo "  ($1: $((SECONDS - t0)) s)"
}

timed_test base_image test_base_image
timed_test puppet_example test_puppet_example
timed_test ansible_example_role_change_and_secret test_ansible_example_role_change_and_secret
timed_test puppet_failure_names_the_resource test_puppet_failure_names_the_resource
timed_test ansible_failure_names_the_task test_ansible_failure_names_the_task
timed_test host_ansible_puppet_dirs_galaxy test_host_ansible_puppet_dirs_galaxy
timed_test chef_stand_in test_chef_stand_in
timed_test ansible_host_qemu test_ansible_host_qemu
timed_test bad_options test_bad_options
summary
