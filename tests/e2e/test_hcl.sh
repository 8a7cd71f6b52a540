# End-to-end: HCL2 templates (*.pkr.hcl, *.pkr.json). A JSON template and its HCL2 twins build
# the same image (same manifest digest: rootfs builds are reproducible); variables from every source
# (-var, -var-file .pkrvars.hcl and .json, *.auto.pkrvars.hcl, PKR_VAR_*), -only with
# Packer's HCL names, secrets masked, and errors with file:line:col and the source line.
. "$(dirname "$0")/lib.sh"
require_tools bwrap tar busybox python3

manifest_digest() { "$IMGBAKE" show "$1" 2>/dev/null | sed -n 's/^digest: *//p'; }

# busybox_tarball FILE: a tiny root filesystem (busybox-static and a few applets).
busybox_tarball() {
  local root="$TEST_DIR/bb-root"
  mkdir -p "$root/bin" "$root/etc" "$root/tmp" "$root/root"
  cp /bin/busybox "$root/bin/busybox"
  local c
  for c in sh cat echo rm mkdir; do ln -sf busybox "$root/bin/$c"; done
  echo "old" >"$root/etc/old.txt"
  tar -C "$root" -czf "$1" .
}

# A JSON template and its HCL2 twin: a busybox base, a shell step, a file step, image config.
write_twins() {
  echo "payload v1" >payload.txt
  write_file bb.json <<'EOF'
{
  "variables": {"motd": "hello", "greeting": "hey"},
  "builders": [{"type": "rootfs", "name": "bb", "source": "tar:bb.tar.gz"}],
  "provisioners": [
    {"type": "shell", "inline": ["echo {{user `motd`}} > /etc/motd", "rm /etc/old.txt", "echo $PACKER_BUILD_NAME > /etc/build"]},
    {"type": "file", "source": "payload.txt", "destination": "/root/payload.txt"}
  ],
  "imgbake": {"image": "bb", "labels": {"team": "web"},
              "config": {"Env": {"GREETING": "{{user `greeting`}}"}, "Cmd": ["/bin/sh"]}}
}
EOF
  write_file bb.pkr.hcl <<'EOF'
variable "motd" {
  type    = string
  default = "hello"
}
variable "greeting" {
  default = "hey"
}
source "rootfs" "bb" {
  source = "tar:bb.tar.gz"
}
build {
  sources = ["source.rootfs.bb"]
  provisioner "shell" {
    inline = ["echo ${var.motd} > /etc/motd", "rm /etc/old.txt", "echo $PACKER_BUILD_NAME > /etc/build"]
  }
  provisioner "file" {
    source      = "payload.txt"
    destination = "/root/payload.txt"
  }
}
imgbake {
  image  = "bb"
  labels = { team = "web" }
  config {
    Env = { GREETING = var.greeting }
    Cmd = ["/bin/sh"]
  }
}
EOF
  # The same in HCL's JSON syntax.
  write_file bb.pkr.json <<'EOF'
{
  "//": "the HCL2 twin in HCL's JSON syntax",
  "variable": {"motd": {"type": "string", "default": "hello"}, "greeting": {"default": "hey"}},
  "source": {"rootfs": {"bb": {"source": "tar:bb.tar.gz"}}},
  "build": {
    "sources": ["source.rootfs.bb"],
    "provisioner": [
      {"shell": {"inline": ["echo ${var.motd} > /etc/motd", "rm /etc/old.txt", "echo $PACKER_BUILD_NAME > /etc/build"]}},
      {"file": {"source": "payload.txt", "destination": "/root/payload.txt"}}
    ]
  },
  "imgbake": {"image": "bb", "labels": {"team": "web"},
              "config": {"Env": {"GREETING": "${var.greeting}"}, "Cmd": ["/bin/sh"]}}
}
EOF
}

# ---------------------------------------------------------------------------

test_twin_templates_build_the_same_image() {
  busybox_tarball bb.tar.gz
  write_twins
  export SOURCE_DATE_EPOCH=1700000000
  IMGBAKE_HOME="$TEST_DIR/s-json" expect_exit 0 imgbake build --no-cache bb.json || return
  IMGBAKE_HOME="$TEST_DIR/s-hcl" expect_exit 0 imgbake build --no-cache bb.pkr.hcl || return
  expect_match "$STDOUT" '^==> rootfs\.bb: committed bb:1 '
  local a b
  a=$(IMGBAKE_HOME="$TEST_DIR/s-json" manifest_digest bb:1)
  b=$(IMGBAKE_HOME="$TEST_DIR/s-hcl" manifest_digest bb:1)
  check "a digest was printed" test -n "$a"
  expect_eq "manifest digest of the JSON template and of its HCL2 twin" "$a" "$b"
  IMGBAKE_HOME="$TEST_DIR/s-pkrjson" expect_exit 0 imgbake build --no-cache bb.pkr.json || return
  expect_eq "manifest digest of the JSON template and of its *.pkr.json twin" "$a" \
    "$(IMGBAKE_HOME="$TEST_DIR/s-pkrjson" manifest_digest bb:1)"
  # A different value gives a different image: the digests are not equal by accident.
  IMGBAKE_HOME="$TEST_DIR/s-hcl2" expect_exit 0 imgbake build --no-cache -var motd=bye bb.pkr.hcl || return
  check "another motd gives another digest" test "$(IMGBAKE_HOME="$TEST_DIR/s-hcl2" manifest_digest bb:1)" != "$a"
}

# A template that prints its variables from a shell-local provisioner (no builder work).
write_vars_template() {
  mkdir -p tpl
  write_file tpl/main.pkr.hcl <<'EOF'
variable "region" {
  type    = string
  default = "eu-west-1"
}
variable "sizes" {
  type    = list(number)
  default = [1]
}
variable "token" {
  type      = string
  default   = "default-token"
  sensitive = true
}
source "null" "a" {
  communicator = "none"
}
EOF
  write_file tpl/build.pkr.hcl <<'EOF'
locals {
  label = "${var.region}/${join("+", [for s in var.sizes : tostring(s)])}"
}
source "null" "b" {
  communicator = "none"
}
build {
  sources = ["source.null.a", "source.null.b"]
  provisioner "shell-local" {
    inline = ["echo ${source.name}: ${local.label} token=${var.token}"]
  }
}
EOF
}

test_variables_from_every_source() {
  write_vars_template
  expect_exit 0 imgbake build --no-store tpl || return
  expect_contains "$STDOUT" "a: eu-west-1/1 token=<sensitive>"
  expect_contains "$STDOUT" "b: eu-west-1/1 token=<sensitive>"
  expect_not_contains "$STDOUT" "default-token"
  # *.auto.pkrvars.hcl in the directory, then -var-file (HCL, then JSON), then -var.
  write_file tpl/x.auto.pkrvars.hcl <<<'region = "auto-region"'
  expect_exit 0 imgbake build --no-store tpl || return
  expect_contains "$STDOUT" "a: auto-region/1"
  write_file more.pkrvars.hcl <<<'sizes = [2, 3]'
  write_file more.json <<<'{"region": "json-region"}'
  expect_exit 0 imgbake build --no-store -var-file more.pkrvars.hcl -var-file more.json tpl || return
  expect_contains "$STDOUT" "a: json-region/2+3"
  expect_exit 0 imgbake build --no-store -var-file more.json -var region=flag -var 'sizes=[7]' tpl || return
  expect_contains "$STDOUT" "a: flag/7"
  # PKR_VAR_ is below the auto var file.
  rm tpl/x.auto.pkrvars.hcl
  PKR_VAR_region=env-region expect_exit 0 imgbake build --no-store tpl || return
  expect_contains "$STDOUT" "a: env-region/1"
  # A sensitive value never appears.
  expect_exit 0 imgbake build --no-store -var token=hunter2-secret tpl || return
  expect_contains "$STDOUT" "token=<sensitive>"
  expect_not_contains "$STDOUT" "hunter2-secret"
  run imgbake inspect tpl
  expect_contains "$STDOUT" "token  = <sensitive>"
  # A value of the wrong type is an error.
  expect_exit 1 imgbake validate -var 'sizes=[1, "x"]' tpl
  expect_contains "$STDERR" "variable 'sizes': invalid value"
}

test_only_and_except_with_hcl_names() {
  write_vars_template
  expect_exit 0 imgbake build --no-store -only null.a tpl || return
  expect_contains "$STDOUT" "a: eu-west-1/1"
  expect_not_contains "$STDOUT" "b: eu-west-1/1"
  expect_exit 0 imgbake build --no-store -only source.null.b tpl || return
  expect_contains "$STDOUT" "b: eu-west-1/1"
  expect_not_contains "$STDOUT" "a: eu-west-1/1"
  expect_exit 1 imgbake build --no-store -except 'null.*' -only null.a tpl
  expect_contains "$STDERR" "-only/-except selected no build; the builds are: null.a, null.b"
}

test_sensitive_values_stay_out_of_events_manifests_and_the_store() {
  export IMGBAKE_HOME="$TEST_DIR/store"
  write_file t.pkr.hcl <<'EOF'
variable "token" {
  type      = string
  default   = "hunter2-xyz"
  sensitive = true
}
source "file" "f" {
  content = "token is ${var.token}\n"
  target  = "out/f.txt"
}
build {
  sources = ["source.file.f"]
  post-processor "manifest" {
    output      = "out/manifest.json"
    custom_data = { token = var.token }
  }
}
imgbake {
  image  = "sec"
  labels = { t = var.token }
}
EOF
  expect_exit 0 imgbake build --output json t.pkr.hcl || return
  expect_not_contains "$STDOUT" "hunter2-xyz"
  expect_contains out/manifest.json "<sensitive>"
  expect_not_contains out/manifest.json "hunter2-xyz"
  run imgbake show sec:1
  expect_contains "$STDOUT" "t=<sensitive>"
  # The only stored blob that holds it is the artifact's file itself, which asked for it.
  expect_eq "store blobs holding the secret" 1 "$(grep -rl hunter2-xyz "$IMGBAKE_HOME/blobs" | wc -l)"
}

# null_build: a null source "n" and a build of it (the tail of a small template).
null_build() {
  printf 'source "null" "n" {\n  communicator = "none"\n}\nbuild {\n  sources = ["source.null.n"]\n}\n'
}

test_errors_name_file_line_and_column() {
  write_file bad.pkr.hcl <<'EOF'
variable "x" {
  type    = number
  defualt = 3
}
locals {
  a = local.b
  b = local.a
}
sourc "null" "n" {}
source "null" "n" {
  communicator = "none"
}
build {
  sources = ["source.null.m"]
}
EOF
  expect_exit 1 imgbake validate bad.pkr.hcl
  expect_contains "$STDERR" 'bad.pkr.hcl:3:3: Unsupported argument; An argument named "defualt" is not expected in a variable block. (did you mean'
  expect_contains "$STDERR" '  3 |   defualt = 3'
  expect_contains "$STDERR" 'bad.pkr.hcl:1:10: Unset variable "x"'
  expect_match "$STDERR" 'bad.pkr.hcl:[67]:[0-9]+: Cycle in local values'
  expect_contains "$STDERR" 'bad.pkr.hcl:9:1: Unsupported block type; Blocks of type "sourc" are not expected here. (did you mean'
  expect_contains "$STDERR" "bad.pkr.hcl:14:14: Unknown source; There is no source \"null.m\" (did you mean 'null.n'?)"
  # inspect reads the template the same way and reports the same errors.
  expect_exit 1 imgbake inspect bad.pkr.hcl
  expect_contains "$STDERR" 'bad.pkr.hcl:9:1: Unsupported block type'
  # A syntax error, and a failed validation block.
  write_file syntax.pkr.json <<<'{"source": {"null": {"n": {"communicator": "none",}}}}'
  expect_exit 1 imgbake validate syntax.pkr.json
  expect_contains "$STDERR" "syntax.pkr.json:1:50: Trailing comma in object"

  write_file syntax.pkr.hcl <<<'a = "a value", b = "b"'
  expect_exit 1 imgbake validate syntax.pkr.hcl
  expect_contains "$STDERR" "syntax.pkr.hcl:1:14: Unexpected comma after argument"
  {
    cat <<'EOF'
variable "port" {
  type    = number
  default = 70000
  validation {
    condition     = var.port < 65536
    error_message = "The port must be below 65536."
  }
}
EOF
    null_build
  } >valid.pkr.hcl
  expect_exit 1 imgbake validate valid.pkr.hcl
  expect_contains "$STDERR" "valid.pkr.hcl:5:21: Invalid value for variable; The port must be below 65536."
  expect_exit 0 imgbake validate -var port=8080 valid.pkr.hcl
  # A component's option error points into the HCL file.
  write_file opt.pkr.hcl <<'EOF'
source "null" "n" {
  communicator = "none"
  comunicator  = "none"
}
build {
  sources = ["source.null.n"]
}
EOF
  expect_exit 1 imgbake validate opt.pkr.hcl
  expect_contains "$STDERR" "opt.pkr.hcl:3:3: builder 'null.n' (null): unknown option 'comunicator'"
  # Packer 1.6.6's version constraint is checked.
  {
    printf 'packer {\n  required_version = ">= 1.7.0"\n}\n'
    null_build
  } >ver.pkr.hcl
  expect_exit 1 imgbake validate ver.pkr.hcl
  expect_contains "$STDERR" "ver.pkr.hcl:2:22: Unsupported Packer Core version"
}

run_test twin_templates_build_the_same_image test_twin_templates_build_the_same_image
run_test variables_from_every_source test_variables_from_every_source
run_test only_and_except_with_hcl_names test_only_and_except_with_hcl_names
run_test errors_name_file_line_and_column test_errors_name_file_line_and_column
run_test sensitive_values_stay_out_of_events_manifests_and_the_store test_sensitive_values_stay_out_of_events_manifests_and_the_store
summary
