# End-to-end: `imgbake fmt`, `fmt --check`, `fmt --write`.
. "$(dirname "$0")/lib.sh"

# An unformatted template: one line, odd spacing, keys in a non-sorted order,
# escapes, unicode, numbers as written, empty containers.
write_unformatted() {
  printf '%s' '{"variables":{"zone":"b","alpha":null},   "builders":[{"type":"file","name":"x","content":"l\u00e9\n\"q\"\t{{user `zone`}}","target":"out/x.txt"}],"_n":1.50,"big":12345678901234567890,"e":[],"o":{},"t":true,"f":false,"z":null}' >"$1"
}

# The same template as `fmt` must print it: 2 spaces, key order kept, one
# element per line, empty containers inline, a final newline.
write_expected() {
  cat >"$1" <<'EOF'
{
  "variables": {
    "zone": "b",
    "alpha": null
  },
  "builders": [
    {
      "type": "file",
      "name": "x",
      "content": "lé\n\"q\"\t{{user `zone`}}",
      "target": "out/x.txt"
    }
  ],
  "_n": 1.50,
  "big": 12345678901234567890,
  "e": [],
  "o": {},
  "t": true,
  "f": false,
  "z": null
}
EOF
}

expect_same_bytes() {
  E2E_CHECKS=$((E2E_CHECKS + 1))
  if ! cmp -s "$1" "$2"; then
    fail "$3" "$(basename "$2") byte for byte" "$(diff "$2" "$1" | head -n 10 | tr '\n' '|')"
    return 1
  fi
  return 0
}

test_print() {
  write_unformatted t.json
  write_expected want.json
  cp t.json before.json
  expect_exit 0 imgbake fmt t.json || return
  expect_same_bytes "$STDOUT" want.json "fmt prints 2-space JSON in the original key order"
  expect_same_bytes t.json before.json "fmt without --write leaves the file alone"
  expect_eq "fmt stderr" "" "$(cat "$STDERR")"
  # Formatting the formatted output changes nothing.
  cp "$STDOUT" once.json
  expect_exit 0 imgbake fmt once.json
  expect_same_bytes "$STDOUT" want.json "fmt of formatted JSON is the same JSON"
  # The formatted template still means the same (python3 compares the values).
  py_check "fmt keeps the values" '
import json, sys
a = json.load(open(sys.argv[1])); b = json.load(open(sys.argv[2]))
assert a == b and list(a) == list(b), (a, b)
' t.json once.json
}

test_check() {
  write_unformatted t.json
  cp t.json before.json
  expect_exit 1 imgbake fmt --check t.json
  expect_contains "$STDOUT" "t.json"
  expect_same_bytes t.json before.json "fmt --check does not change an unformatted file"
  expect_exit 1 imgbake fmt -check t.json
  write_expected good.json
  cp good.json good.before
  expect_exit 0 imgbake fmt --check good.json
  expect_eq "fmt --check on a formatted file prints nothing" "" "$(cat "$STDOUT")"
  expect_same_bytes good.json good.before "fmt --check does not change a formatted file"
  expect_exit 0 imgbake fmt -check good.json
  # Differences in whitespace only still count as unformatted.
  sed 's/^  "variables"/   "variables"/' good.json >ws.json
  expect_exit 1 imgbake fmt --check ws.json
  # A missing final newline too.
  printf '%s' "$(cat good.json)" >nonl.json
  expect_exit 1 imgbake fmt --check nonl.json
}

test_write() {
  write_unformatted t.json
  write_expected want.json
  expect_exit 0 imgbake fmt --write t.json || return
  expect_eq "fmt --write prints nothing" "" "$(cat "$STDOUT")"
  expect_same_bytes t.json want.json "fmt --write rewrites the file as fmt prints it"
  cp t.json first.json
  expect_exit 0 imgbake fmt --write t.json
  expect_same_bytes t.json first.json "a second fmt --write changes nothing"
  expect_exit 0 imgbake fmt --check t.json
  expect_exit 0 imgbake fmt -write t.json
  expect_same_bytes t.json first.json "-write (single dash) is the same"
  # No temporary files are left beside it.
  expect_eq "temporary files left beside t.json" "" "$(ls -A | grep -i tmp || true)"
  # A real template, formatted, still validates and builds the same.
  cp "$IMGBAKE_SOURCE_DIR/templates/hello.json" hello.json
  expect_exit 0 imgbake fmt --write hello.json
  expect_exit 0 imgbake fmt --check hello.json
  expect_exit 0 imgbake validate hello.json
  expect_exit 0 imgbake build hello.json
  expect_contains output/hello/hello.txt "hello from imgbake"
}

test_write_keeps_mode() {
  # A template can hold secrets: a 0600 file must stay 0600.
  write_unformatted secret.json
  chmod 600 secret.json
  expect_exit 0 imgbake fmt --write secret.json
  expect_eq "mode of the file after fmt --write" "600" "$(stat -c %a secret.json)"
  write_unformatted group.json
  chmod 640 group.json
  expect_exit 0 imgbake fmt --write group.json
  expect_eq "mode of the file after fmt --write" "640" "$(stat -c %a group.json)"
}

test_write_through_symlink() {
  # fmt --write on a symlink formats the file it points to and keeps the link.
  mkdir real
  write_unformatted real/t.json
  write_expected want.json
  ln -s real/t.json link.json
  expect_exit 0 imgbake fmt --write link.json
  E2E_CHECKS=$((E2E_CHECKS + 1))
  [ -L link.json ] || fail "link.json is still a symlink after fmt --write" "a symlink" "$(ls -l link.json)"
  expect_same_bytes real/t.json want.json "the symlink's target is formatted"
}

test_invalid_json() {
  printf '{\n  "builders": [\n    {"type": "null"},\n  ]\n}\n' >bad.json
  cp bad.json before.json
  expect_exit 1 imgbake fmt bad.json
  expect_contains "$STDERR" "bad.json:4:3: invalid JSON"
  expect_eq "fmt prints no JSON for invalid input" "" "$(cat "$STDOUT")"
  expect_exit 1 imgbake fmt --write bad.json
  expect_contains "$STDERR" "bad.json:4:3: "
  expect_same_bytes bad.json before.json "fmt --write leaves invalid JSON alone"
  expect_exit 1 imgbake fmt --check bad.json
  expect_contains "$STDERR" "bad.json:4:3: "
  printf '{"a": 1, "a": 2}' >dup.json
  expect_exit 1 imgbake fmt dup.json
  expect_contains "$STDERR" 'dup.json:1:10: invalid JSON: duplicate key "a"'
  expect_exit 1 imgbake fmt missing.json
  expect_contains "$STDERR" "missing.json"
  expect_exit 2 imgbake fmt --check --write before.json
}

run_test print test_print
run_test check test_check
run_test write test_write
run_test write_keeps_mode test_write_keeps_mode
run_test write_through_symlink test_write_through_symlink
run_test invalid_json test_invalid_json
summary
