#!/usr/bin/env bash
# Runs imgbake's libFuzzer targets (tests/fuzz) on their seed corpora, each for N seconds.
#
#   tools/fuzz.sh [--seconds N] [--build DIR] [--opt -O0|-O1] [TARGET...]
#
# TARGET: template_json, interpolate, hcl_parse, layer_apply (default: all). N defaults to 60;
# CI (tools/test.sh) runs a short round, a longer hunt is e.g. `tools/fuzz.sh --seconds 3600
# layer_apply`. DIR (default build-fuzz/) is configured with clang and IMGBAKE_FUZZ=ON and built
# when needed (--opt: its optimisation; -O1 by default, -O0 compiles in half the time and is
# what CI uses). The corpus each target grows is kept in DIR/fuzz-corpus/TARGET, so later runs
# start from what earlier ones found; the seeds (templates/, tests/fixtures, ../shared/corpus,
# HCL's spec suite, generated tarballs) are made afresh in DIR/fuzz-seeds each run. A crash,
# leak, timeout or sanitizer report stops that target and is saved as DIR/fuzz-crashes/TARGET-*;
# the script then exits 1 and prints the command that reproduces it. docs/testing.md, "Fuzzing".
set -euo pipefail
cd "$(dirname "$0")/.."
src=$PWD

seconds=60
build=build-fuzz
opt=
targets=()
while [ $# -gt 0 ]; do
  case $1 in
    --seconds) seconds=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    --opt) opt=$2; shift 2 ;;
    -h | --help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "fuzz.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
all=(template_json interpolate hcl_parse layer_apply)
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")
for t in "${targets[@]}"; do
  case " ${all[*]} " in
    *" $t "*) ;;
    *) echo "fuzz.sh: no target '$t' (targets: ${all[*]})" >&2; exit 2 ;;
  esac
done
for tool in clang++ bwrap python3 tar; do
  command -v "$tool" >/dev/null || { echo "fuzz.sh: $tool is not installed (run tools/setup.sh as root)" >&2; exit 2; }
done

if [ ! -f "$build/CMakeCache.txt" ] || [ -n "$opt" ]; then
  CC=clang CXX=clang++ cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DIMGBAKE_FUZZ=ON \
    ${opt:+-DIMGBAKE_FUZZ_OPT="$opt"} >/dev/null
fi
cmake --build "$build" --target "${targets[@]/#/fuzz_}"
build=$(cd "$build" && pwd)

# ---- seeds ----------------------------------------------------------------------------------
seeds=$build/fuzz-seeds
rm -rf "$seeds"
mkdir -p "$seeds" "$build/fuzz-crashes"
shopt -s nullglob
json_seeds=("$src"/templates/*.json "$src"/tests/fixtures/*.json "$src"/../shared/corpus/packer-json/*.json)
shopt -u nullglob

make_seeds() {
  local t=$1 dir=$seeds/$1
  mkdir -p "$dir"
  case $t in
    template_json) cp "${json_seeds[@]}" "$dir/" ;;
    interpolate)
      # Every string with an action in the JSON seeds; the first byte is the context's switches.
      python3 - "$dir" "${json_seeds[@]}" <<'PY'
import hashlib, json, sys
out = sys.argv[1]
def strings(v):
    if isinstance(v, str):
        yield v
    elif isinstance(v, dict):
        for x in v.values(): yield from strings(x)
    elif isinstance(v, list):
        for x in v: yield from strings(x)
seen = set()
for path in sys.argv[2:]:
    try:
        doc = json.load(open(path, encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        continue
    for s in strings(doc):
        if "{{" in s and s not in seen:
            seen.add(s)
            for mode in (0x09, 0x0f):
                data = bytes([mode]) + s.encode()
                open(f"{out}/{hashlib.sha1(data).hexdigest()}", "wb").write(data)
# Nesting just past the limit on parentheses (10000 levels once overflowed the stack).
open(f"{out}/deep-parentheses", "wb").write(b"\x09{{ " + b"(" * 101 + b"`x`" + b")" * 101 + b" }}")
PY
      ;;
    hcl_parse)
      find "$src/templates" "$src/tests" /usr/share/gocode/src/github.com/hashicorp/hcl/v2/specsuite/tests \
        -name '*.hcl' 2>/dev/null | while read -r f; do
        cp "$f" "$dir/$(sha1sum "$f" | cut -c1-40)"
      done
      ;;
    layer_apply) python3 "$src/tests/fuzz/make_layer_seeds.py" "$dir" ;;
  esac
}

# ---- runs -----------------------------------------------------------------------------------
failed=()
for t in "${targets[@]}"; do
  make_seeds "$t"
  corpus=$build/fuzz-corpus/$t
  mkdir -p "$corpus"
  bin=$build/tests/fuzz/fuzz_$t
  run=("$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
       -artifact_prefix="$build/fuzz-crashes/$t-" "$corpus" "$seeds/$t")
  if [ "$t" = layer_apply ]; then
    # The applier writes files: run it with the host read-only and a private /tmp, so that an
    # escape it finds damages nothing (the target also checks that nothing lands beside its root).
    run=(bwrap --ro-bind / / --dev /dev --proc /proc --tmpfs /tmp --bind "$build" "$build"
         --unshare-pid --unshare-net --die-with-parent "${run[@]}")
  fi
  echo "fuzz.sh: $t for ${seconds} s ($(find "$corpus" "$seeds/$t" -type f | wc -l) inputs to start from)"
  if ! "${run[@]}" >"$build/fuzz-$t.log" 2>&1; then
    failed+=("$t")
    tail -n 40 "$build/fuzz-$t.log" >&2
  fi
  grep -E '^stat::number_of_executed_units|^stat::new_units_added' "$build/fuzz-$t.log" | tr '\n' ' ' || true
  echo
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz.sh: FAILED: ${failed[*]}; the inputs are in $build/fuzz-crashes/; reproduce one with" >&2
  echo "  $build/tests/fuzz/fuzz_TARGET $build/fuzz-crashes/TARGET-crash-…" >&2
  exit 1
fi
echo "fuzz.sh: no crash in ${targets[*]} (${seconds} s each)"
