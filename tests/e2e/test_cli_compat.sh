# End-to-end: Packer's single-dash command line and imgbake's exit codes.
. "$(dirname "$0")/lib.sh"

copy_hello() {
  cp "$IMGBAKE_SOURCE_DIR/templates/hello.json" hello.json
}

greeting_line() { sed -n 1p output/hello/hello.txt | sed 's/ from imgbake, built .*//'; }

# Two file builds, "hello" and "bye"; each writes out/<name>.txt.
write_two_builds() {
  write_file two.json <<'EOF'
{
  "variables": {"greeting": "hi"},
  "builders": [
    {"type": "file", "name": "hello", "content": "{{user `greeting`}} {{build_name}}\n", "target": "out/hello.txt"},
    {"type": "file", "name": "bye", "content": "{{user `greeting`}} {{build_name}}\n", "target": "out/bye.txt"}
  ]
}
EOF
}

test_var() {
  copy_hello
  expect_exit 0 imgbake build -var greeting=hi hello.json || return
  expect_eq "-var greeting=hi" "hi" "$(greeting_line)"
  expect_exit 0 imgbake build -var=greeting=eq hello.json || return
  expect_eq "-var=greeting=eq" "eq" "$(greeting_line)"
  expect_exit 0 imgbake build --var greeting=two-dashes hello.json || return
  expect_eq "--var greeting=two-dashes" "two-dashes" "$(greeting_line)"
  # A value may hold '=' and spaces.
  expect_exit 0 imgbake build -var "greeting=a=b c" hello.json || return
  expect_eq "-var 'greeting=a=b c'" "a=b c" "$(greeting_line)"
  # Without a value: a usage error.
  expect_exit 2 imgbake build -var greeting hello.json
  expect_contains "$STDERR" "greeting"
  expect_no_file output/hello/hello.txt.imgbake-tmp
}

test_var_file() {
  copy_hello
  echo '{"greeting": "howdy"}' >vars.json
  echo '{"greeting": "second"}' >vars2.json
  expect_exit 0 imgbake build -var-file=vars.json hello.json || return
  expect_eq "-var-file=vars.json" "howdy" "$(greeting_line)"
  expect_exit 0 imgbake build -var-file vars.json hello.json || return
  expect_eq "-var-file vars.json" "howdy" "$(greeting_line)"
  # Later files win; -var wins over -var-file whatever the order.
  expect_exit 0 imgbake build -var-file=vars.json -var-file=vars2.json hello.json || return
  expect_eq "two -var-file, the last wins" "second" "$(greeting_line)"
  expect_exit 0 imgbake build -var greeting=flag -var-file=vars.json hello.json || return
  expect_eq "-var beats -var-file" "flag" "$(greeting_line)"
  # A var file that is not JSON: file:line:col and exit 1.
  printf '{\n  "greeting": "x",\n}\n' >broken.json
  expect_exit 1 imgbake build -var-file=broken.json hello.json
  expect_contains "$STDERR" "broken.json:3:1"
  # A missing var file: exit 1 and its name.
  expect_exit 1 imgbake build -var-file=missing.json hello.json
  expect_contains "$STDERR" "missing.json"
}

test_only_except() {
  write_two_builds
  expect_exit 0 imgbake build '-only=hel*' two.json || return
  expect_file out/hello.txt
  expect_no_file out/bye.txt
  expect_file_content out/hello.txt "hi hello"
  rm -rf out
  expect_exit 0 imgbake build '-except=hel*' two.json || return
  expect_no_file out/hello.txt
  expect_file_content out/bye.txt "hi bye"
  rm -rf out
  # Comma-separated lists.
  expect_exit 0 imgbake build -only=hello,bye two.json || return
  expect_file out/hello.txt
  expect_file out/bye.txt
  rm -rf out
  expect_exit 0 imgbake build -only hello two.json || return
  expect_file out/hello.txt
  expect_no_file out/bye.txt
  rm -rf out
  # Selecting nothing is an error that lists the builds.
  expect_exit 1 imgbake build '-only=nomatch*' two.json
  expect_contains "$STDERR" "hello, bye"
  expect_no_file out
}

test_other_build_flags() {
  copy_hello
  expect_exit 0 imgbake build -force hello.json
  expect_exit 0 imgbake build -on-error=abort hello.json
  expect_exit 0 imgbake build -on-error abort hello.json
  expect_exit 0 imgbake build -on-error=cleanup -parallel-builds=1 hello.json
  expect_exit 0 imgbake build -parallel-builds 2 hello.json
  expect_exit 0 imgbake build -timestamp-ui hello.json
  expect_exit 0 imgbake build -color=false hello.json
  expect_not_contains "$STDOUT" $'\033['
  expect_match "$STDOUT" '^BUILD +STATUS'
  expect_exit 0 imgbake build -machine-readable hello.json
  py_check "-machine-readable prints Packer's CSV lines" '
import re, sys
lines = open(sys.argv[1]).read().splitlines()
assert lines, "no output"
for l in lines:
    assert re.match(r"^[0-9]+,[^,]*,[^,]+(,.*)?$", l), l
' "$STDOUT"
  # All of them at once, as a Packer CI job would pass them.
  expect_exit 0 imgbake build -force -on-error=abort -parallel-builds=1 -color=false -only=hello \
    -var greeting=all hello.json
  expect_eq "greeting with every flag" "all" "$(greeting_line)"
}

test_syntax_only() {
  write_file unknown_type.json <<'EOF'
{
  "builders": [{"type": "azure-arm", "location": "westeurope"}]
}
EOF
  expect_exit 0 imgbake validate -syntax-only unknown_type.json
  expect_exit 1 imgbake validate unknown_type.json
  copy_hello
  expect_exit 0 imgbake validate -syntax-only hello.json
  expect_exit 0 imgbake validate hello.json
}

test_exit_codes() {
  copy_hello
  # 2: usage.
  expect_exit 2 imgbake build -nosuchflag hello.json
  expect_exit 2 imgbake build --nosuchflag hello.json
  expect_exit 2 imgbake build
  expect_exit 2 imgbake validate
  expect_exit 2 imgbake fmt
  expect_exit 2 imgbake build -on-error=bogus hello.json
  expect_contains "$STDERR" "bogus"
  expect_exit 2 imgbake build -parallel-builds=-1 hello.json
  expect_exit 2 imgbake build -parallel-builds=many hello.json
  expect_exit 2 imgbake
  expect_exit 2 imgbake frobnicate
  expect_exit 2 imgbake fmt --check --write hello.json
  expect_no_file output
  # 1: validation and build failures.
  printf '{"builders": [{"type": "null"}], "provisoners": []}\n' >invalid.json
  expect_exit 1 imgbake build invalid.json
  expect_exit 1 imgbake validate invalid.json
  expect_exit 1 imgbake build does-not-exist.json
  expect_contains "$STDERR" "does-not-exist.json"
  printf '{"builders": [{"type": "null"}], "provisioners": [{"type": "shell-local", "inline": ["exit 5"]}]}\n' >fails.json
  expect_exit 1 imgbake build fails.json
  # 0: success.
  expect_exit 0 imgbake validate hello.json
  expect_exit 0 imgbake build hello.json
  expect_exit 0 imgbake build --help
  expect_exit 0 imgbake --help
}

test_version() {
  expect_exit 0 imgbake version || return
  expect_match "$STDOUT" '^imgbake [0-9]+\.[0-9]+\.[0-9]+'
  expect_contains "$STDOUT" "builders: "
  local v
  v=$(sed -n 's/^imgbake \([0-9][0-9.]*\).*/\1/p' "$STDOUT" | head -n 1)
  expect_exit 0 imgbake --version
  expect_eq "--version agrees with the version verb" "imgbake $v" "$(head -n 1 "$STDOUT")"
  # {{packer_version}} renders the same version.
  write_file pv.json <<'EOF'
{"builders": [{"type": "file", "content": "{{packer_version}}", "target": "pv.txt"}]}
EOF
  expect_exit 0 imgbake build pv.json
  expect_file_content pv.txt "$v"
}

test_template_from_stdin() {
  copy_hello
  local rc=0
  "$IMGBAKE" validate - <hello.json >"$STDOUT" 2>"$STDERR" || rc=$?
  expect_eq "validate - < hello.json" "0" "$rc"
  rc=0
  "$IMGBAKE" build -var greeting=piped - <hello.json >"$STDOUT" 2>"$STDERR" || rc=$?
  expect_eq "build - < hello.json" "0" "$rc"
  expect_eq "greeting of a template read from stdin" "piped" "$(greeting_line)"
}

test_help_completion_man() {
  copy_hello
  expect_exit 0 imgbake help build
  expect_contains "$STDOUT" "--only"
  expect_contains "$STDOUT" "--machine-readable"
  expect_exit 2 imgbake help biuld
  expect_contains "$STDERR" "unknown command 'biuld' (did you mean 'build'?)"
  # An unknown flag names the nearest one the verb has.
  expect_exit 2 imgbake build --onyl hello hello.json
  expect_contains "$STDERR" "imgbake build: unknown flag '--onyl' (did you mean '--only'?)"
  expect_exit 2 imgbake build -onyl=hello hello.json
  # The completions and the man page are generated from the same definitions: every verb is in
  # them, and bash completes a verb and a flag with them.
  expect_exit 0 imgbake completion bash || return
  cp "$STDOUT" imgbake.bash
  check "bash -n accepts the bash completion" bash -n imgbake.bash
  local got
  got=$(bash -c '. ./imgbake.bash; COMP_WORDS=(imgbake pro); COMP_CWORD=1; _imgbake; echo "${COMPREPLY[*]}"')
  expect_eq "bash completes 'pro'" "promote" "$got"
  got=$(bash -c '. ./imgbake.bash; COMP_WORDS=(imgbake push --for); COMP_CWORD=2; _imgbake; echo "${COMPREPLY[*]}"')
  expect_eq "bash completes 'push --for'" "--force" "$got"
  expect_exit 0 imgbake completion zsh
  expect_contains "$STDOUT" "#compdef imgbake"
  expect_contains "$STDOUT" "'logout:"
  expect_exit 0 imgbake completion fish
  expect_contains "$STDOUT" "__fish_seen_subcommand_from push' -l force"
  expect_exit 2 imgbake completion tcsh
  expect_exit 0 imgbake man || return
  cp "$STDOUT" imgbake.1
  run groff -man -Tutf8 -ww -z imgbake.1
  expect_eq "groff warnings on the man page" "" "$(cat "$STDERR")"
  run groff -man -Tutf8 imgbake.1
  expect_contains "$STDOUT" "registries"
  local v
  for v in build validate promote rollback push pull copy logout; do
    expect_contains imgbake.1 ".SS $v"
  done
}

run_test var test_var
run_test var_file test_var_file
run_test only_except test_only_except
run_test other_build_flags test_other_build_flags
run_test syntax_only test_syntax_only
run_test help_completion_man test_help_completion_man
run_test exit_codes test_exit_codes
run_test version test_version
run_test template_from_stdin test_template_from_stdin
summary
