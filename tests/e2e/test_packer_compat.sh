# End-to-end: where Packer 1.6.6 is lenient or strict about a template, imgbake is judged against
# the real Packer (Debian's packer package) on the same file.
. "$(dirname "$0")/lib.sh"
require_tools packer

use_packer

# A qemu template that Packer 1.6.6 validates (ISO URL and checksum are only checked for form).
qemu_template() { # $1: the iso_checksum line(s)
  cat <<EOF
{
  "variables": {"sum": "$(printf 'a%.0s' {1..64})"},
  "builders": [{"type": "qemu", "iso_url": "http://127.0.0.1:9/a.iso", "ssh_username": "root",
    $1
  }]
}
EOF
}

test_undefined_user_variable_is_empty() {
  # Column 49 is the '{{' of the undefined variable.
  cat >u.json <<'EOF'
{
  "variables": {"greeting": "hi"},
  "builders": [{"type": "file", "content": "x{{user `greting`}}y", "target": "out.txt"}]
}
EOF
  run_packer build u.json
  expect_eq "packer builds it" 0 "$PK_RC"
  expect_file_content out.txt "xy"
  rm -f out.txt
  expect_exit 0 imgbake build u.json
  expect_file_content out.txt "xy"
  expect_contains "$STDERR" "u.json:3:46: warning: variable 'greting' is not defined, so it is empty here"
  expect_contains "$STDERR" "(did you mean 'greeting'?)"
  # Inside the variables section it is an error, in both.
  cat >uv.json <<'EOF'
{
  "variables": {"a": "{{user `nope`}}"},
  "builders": [{"type": "file", "content": "{{user `a`}}", "target": "out.txt"}]
}
EOF
  run_packer validate uv.json
  expect_eq "packer refuses it" 1 "$PK_RC"
  expect_exit 1 imgbake validate uv.json
  expect_contains "$STDERR" "variable 'nope' is not defined"
}

test_iso_checksum_type_says_what_to_write() {
  qemu_template '"iso_checksum_type": "sha256", "iso_checksum": "{{user `sum`}}"' >old.json
  run_packer validate old.json
  expect_eq "packer 1.6.6 refuses the old key" 1 "$PK_RC"
  cat "$PK_STDOUT" "$PK_STDERR" >packer.out
  expect_contains packer.out "iso_checksum_type"
  # imgbake reads the old pair, and says what to write instead.
  expect_exit 0 imgbake validate old.json
  expect_contains "$STDERR" "'iso_checksum_type' is deprecated"
  expect_contains "$STDERR" "write \"iso_checksum\": \"sha256:$(printf 'a%.0s' {1..64})\""
  # What it says to write is what Packer accepts.
  qemu_template "\"iso_checksum\": \"sha256:$(printf 'a%.0s' {1..64})\"" >new.json
  run_packer validate new.json
  expect_eq "packer accepts the suggested form" 0 "$PK_RC"
  expect_exit 0 imgbake validate new.json
  expect_eq "no warning for the new form" "" "$(cat "$STDERR")"
}

test_self_reference_says_how_to_set_it() {
  cat >self.json <<'EOF'
{
  "variables": {"me": "{{user `me`}}"},
  "builders": [{"type": "file", "content": "{{user `me`}}", "target": "out.txt"}]
}
EOF
  run_packer validate self.json
  expect_eq "packer refuses it" 1 "$PK_RC"
  expect_exit 1 imgbake validate self.json
  expect_contains "$STDERR" "self.json:2:23: variable 'me' refers to itself; give it a value with -var me=VALUE"
  expect_not_contains "$STDERR" "circular"
  run_packer validate -var me=5 self.json
  expect_eq "packer accepts -var me=5" 0 "$PK_RC"
  expect_exit 0 imgbake validate -var me=5 self.json
}

test_every_problem_once() {
  # A required variable that is not set (used as the checksum), an unknown provisioner type and
  # a misspelt builder option: three independent problems, each said once; the checksum check
  # does not report the unset variable a second time.
  cat >many.json <<'EOF'
{
  "variables": {"sum": null},
  "builders": [{"type": "file", "contnet": "x", "target": "t"}],
  "provisioners": [{"type": "shell-locl", "inline": ["true"]}],
  "post-processors": [{"type": "checksum", "checksum_types": ["{{user `sum`}}"]}]
}
EOF
  expect_exit 1 imgbake validate many.json
  expect_contains "$STDERR" "required variable 'sum' is not set"
  expect_contains "$STDERR" "'shell-locl'"
  expect_contains "$STDERR" "'contnet'"
  expect_eq "lines that name 'sum'" 1 "$(grep -c "sum" "$STDERR")"
  expect_not_contains "$STDERR" "{{user"
  # With the variable given, the checksum type itself is checked.
  expect_exit 1 imgbake validate -var sum=md7 many.json
  expect_contains "$STDERR" "md7"
}

run_test undefined_user_variable_is_empty test_undefined_user_variable_is_empty
run_test iso_checksum_type_says_what_to_write test_iso_checksum_type_says_what_to_write
run_test self_reference_says_how_to_set_it test_self_reference_says_how_to_set_it
run_test every_problem_once test_every_problem_once
summary
