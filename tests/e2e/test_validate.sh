# End-to-end: `imgbake validate` names file:line:col and says what to do.
. "$(dirname "$0")/lib.sh"

# expect_invalid FILE DIAGNOSTIC...: `validate FILE` exits 1, prints nothing on
# stdout, and stderr holds every DIAGNOSTIC (fixed strings).
expect_invalid() {
  local file=$1
  shift
  expect_exit 1 imgbake validate "$file"
  local d
  for d in "$@"; do
    expect_contains "$STDERR" "$d"
  done
  expect_not_contains "$STDOUT" "valid"
}

test_trailing_comma() {
  # The comma after the builder object is on line 3; the ']' it precedes is at 4:3.
  printf '{\n  "builders": [\n    {"type": "null"},\n  ]\n}\n' >tc.json
  expect_invalid tc.json "tc.json:4:3: invalid JSON: "
  expect_contains "$STDERR" "trailing comma"
  # Also in an object.
  printf '{\n  "builders": [{"type": "null",}]\n}\n' >tc2.json
  expect_invalid tc2.json "tc2.json:2:32: invalid JSON: "
  # A truncated file names where it ended.
  printf '{\n  "builders": [\n    {"type": "null"}' >eof.json
  expect_invalid eof.json "eof.json:3:21: invalid JSON: unexpected end of input"
  # The same diagnostics from build: nothing runs.
  expect_exit 1 imgbake build tc.json
  expect_contains "$STDERR" "tc.json:4:3: "
}

test_duplicate_key() {
  printf '{\n  "builders": [{"type": "null"}],\n  "builders": []\n}\n' >dup.json
  expect_invalid dup.json 'dup.json:3:3: invalid JSON: duplicate key "builders"'
  printf '{\n  "builders": [{"type": "null", "type": "file"}]\n}\n' >dup2.json
  expect_invalid dup2.json 'dup2.json:2:33: invalid JSON: duplicate key "type"'
}

test_unknown_option() {
  cat >typo.json <<'EOF'
{
  "builders": [{"type": "null"}],
  "provisioners": [
    {"type": "shell-local", "inlne": ["true"]}
  ]
}
EOF
  expect_invalid typo.json "typo.json:4:29: provisioner 1 (shell-local): unknown option 'inlne' (did you mean 'inline'?)"
  cat >btypo.json <<'EOF'
{
  "builders": [{"type": "file", "contnet": "x", "target": "t.txt"}]
}
EOF
  expect_invalid btypo.json "btypo.json:2:33: " "unknown option 'contnet' (did you mean 'content'?)"
  # An option that resembles nothing gets no suggestion.
  cat >nosugg.json <<'EOF'
{
  "builders": [{"type": "null", "zzzzzzzzzz": true}]
}
EOF
  expect_invalid nosugg.json "nosugg.json:2:33: " "unknown option 'zzzzzzzzzz'"
  expect_not_contains "$STDERR" "did you mean"
}

test_unknown_top_level_key() {
  printf '{\n  "builders": [{"type": "null"}],\n  "provisoners": []\n}\n' >top.json
  expect_invalid top.json "top.json:3:3: unknown top-level key 'provisoners' (did you mean 'provisioners'?)"
  # Keys starting with "_" are comments, as in Packer.
  printf '{\n  "_comment": "fine",\n  "builders": [{"type": "null"}]\n}\n' >comment.json
  expect_exit 0 imgbake validate comment.json
}

test_unknown_builder_type() {
  cat >ebs.json <<'EOF'
{
  "builders": [
    {"type": "azure-arm", "location": "westeurope"},
    {"type": "virtualbox-iso", "name": "vm"},
    {"type": "null"}
  ]
}
EOF
  expect_invalid ebs.json "ebs.json:3:5: " "unknown builder type 'azure-arm'" "ebs.json:4:5: " "unknown builder type 'virtualbox-iso'"
  # It lists the types that exist.
  expect_match "$STDERR" "azure-arm.*amazon-ebs, file, null"
  # Unknown provisioner and post-processor types, with a suggestion.
  cat >ptype.json <<'EOF'
{
  "builders": [{"type": "null"}],
  "provisioners": [{"type": "shel-local", "inline": ["true"]}],
  "post-processors": ["checksun"]
}
EOF
  expect_invalid ptype.json "ptype.json:3:20: " "unknown provisioner type 'shel-local' (did you mean 'shell-local'?)" \
    "ptype.json:4:23: " "unknown post-processor type 'checksun' (did you mean 'checksum'?)"
}

test_syntax_only() {
  cat >ebs.json <<'EOF'
{
  "builders": [{"type": "amazon-ebs", "region": "us-east-1", "ami_name": "x"}]
}
EOF
  expect_exit 0 imgbake validate --syntax-only ebs.json
  expect_contains "$STDOUT" "Syntax-only check passed"
  expect_exit 0 imgbake validate -syntax-only ebs.json
  expect_exit 1 imgbake validate ebs.json
  expect_contains "$STDERR" "amazon-ebs"
  # -syntax-only still catches what is wrong with the template itself.
  printf '{\n  "builders": [{"type": "null"}],\n  "provisoners": []\n}\n' >top.json
  expect_exit 1 imgbake validate -syntax-only top.json
  expect_contains "$STDERR" "top.json:3:3: "
  printf '{"builders": [{"type": "null"},]}' >tc.json
  expect_exit 1 imgbake validate -syntax-only tc.json
  expect_contains "$STDERR" "tc.json:1:32: "
}

test_required_variable() {
  printf '{\n  "variables": {"region": null},\n  "builders": [{"type": "file", "content": "{{user `region`}}", "target": "r.txt"}]\n}\n' >req.json
  expect_invalid req.json "req.json:2:17: required variable 'region' is not set"
  expect_exit 0 imgbake validate -var region=eu req.json
  expect_exit 1 imgbake build req.json
  expect_contains "$STDERR" "required variable 'region' is not set"
  expect_no_file r.txt
  expect_exit 0 imgbake build -var region=eu req.json
  expect_file_content r.txt "eu"
  # -syntax-only does not need variable values.
  expect_exit 0 imgbake validate -syntax-only req.json
}

test_env_outside_defaults() {
  # Column 45 is the '{{' inside the "content" string.
  cat >env.json <<'EOF'
{
  "builders": [{"type": "file", "content": "{{env `HOME`}}", "target": "x"}]
}
EOF
  expect_invalid env.json "env.json:2:45: {{env}} can only be used in variable defaults"
  # In a variable default it is fine.
  cat >envok.json <<'EOF'
{
  "variables": {"who": "{{env `USER`}}"},
  "builders": [{"type": "file", "content": "{{user `who`}}", "target": "who.txt"}]
}
EOF
  expect_exit 0 imgbake validate envok.json
  expect_exit 0 imgbake build envok.json
  expect_file_content who.txt "$USER"
}

test_unknown_function() {
  cat >fn.json <<'EOF'
{
  "builders": [{"type": "file", "content": "ab {{ nosuch }}", "target": "x"}]
}
EOF
  expect_invalid fn.json "fn.json:2:48: unknown template function 'nosuch'"
  cat >fn2.json <<'EOF'
{
  "builders": [{"type": "file", "content": "{{ upperr `a` }}", "target": "x"}]
}
EOF
  expect_invalid fn2.json "fn2.json:2:45: unknown template function 'upperr' (did you mean 'upper'?)"
  # Escapes before the action: the column counts the characters as written in the
  # file (\"q\" is 6 columns), so the '{{' is at column 51.
  cat >fn3.json <<'EOF'
{
  "builders": [{"type": "file", "content": "\"q\" {{ upperr `a` }}", "target": "x"}]
}
EOF
  expect_invalid fn3.json "fn3.json:2:51: unknown template function 'upperr'"
  # An undefined variable, with a suggestion.
  cat >uv.json <<'EOF'
{
  "variables": {"greeting": "hi"},
  "builders": [{"type": "file", "content": "{{user `greting`}}", "target": "x"}]
}
EOF
  # An undefined variable outside the variables section is empty, as in Packer, with a warning
  # that names it and suggests the near name (test_packer_compat.sh checks Packer agrees).
  expect_exit 0 imgbake validate uv.json
  expect_contains "$STDERR" "uv.json:3:45: warning: variable 'greting' is not defined, so it is empty here (as in Packer) (did you mean 'greeting'?)"
  # An unclosed action.
  cat >unclosed.json <<'EOF'
{
  "builders": [{"type": "file", "content": "x {{ user `a` ", "target": "x"}]
}
EOF
  expect_invalid unclosed.json "unclosed.json:2:47: "
}

test_all_errors_at_once() {
  cat >many.json <<'EOF'
{
  "builders": [{"type": "file", "contnet": "x", "target": "t"}],
  "provisioners": [
    {"type": "shell-local", "inlne": ["true"]},
    {"type": "shell-local", "inline": ["true"], "only": ["nobuild"]}
  ]
}
EOF
  expect_invalid many.json "many.json:2:33: " "'contnet'" "many.json:4:29: " "'inlne'" "'nobuild'"
}

test_valid_template() {
  cp "$IMGBAKE_SOURCE_DIR/templates/hello.json" hello.json
  expect_exit 0 imgbake validate hello.json
  expect_contains "$STDOUT" "The configuration is valid."
  expect_eq "stderr of a clean validate" "" "$(cat "$STDERR")"
  # Validation runs nothing: no output directory, no temp scripts.
  expect_no_file output
  expect_eq "temp files left by validate" "" "$(ls -A "$TMPDIR")"
}

run_test trailing_comma test_trailing_comma
run_test duplicate_key test_duplicate_key
run_test unknown_option test_unknown_option
run_test unknown_top_level_key test_unknown_top_level_key
run_test unknown_builder_type test_unknown_builder_type
run_test syntax_only test_syntax_only
run_test required_variable test_required_variable
run_test env_outside_defaults test_env_outside_defaults
run_test unknown_function test_unknown_function
run_test all_errors_at_once test_all_errors_at_once
run_test valid_template test_valid_template
summary
