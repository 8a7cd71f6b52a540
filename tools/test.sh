#!/usr/bin/env bash
# The whole test suite: build (warnings are errors), unit + end-to-end + Packer corpus
# parity tests, the unit tests again under ASan+UBSan, then clang-format/clang-tidy.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
ctest --test-dir build --output-on-failure -j2
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DIMGBAKE_WERROR=ON -DIMGBAKE_SANITIZE=ON >/dev/null
cmake --build build-asan --target imgbake_unit_tests
# Two shards at once: most unit tests wait on real servers (sshd, registries, sandboxes), not on
# the CPU, so this halves the wall time as ctest -j2 does for the normal build.
asan_shard() {
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 GTEST_TOTAL_SHARDS=2 GTEST_SHARD_INDEX=$1 \
    build-asan/tests/imgbake_unit_tests --gtest_brief=1 >"build-asan/unit-shard-$1.log" 2>&1
}
asan_shard 0 &
shard0=$!
asan_shard 1 || rc1=$?
wait "$shard0" || rc0=$?
for i in 0 1; do
  echo "--- ASan+UBSan unit tests, shard $i of 2 (build-asan/unit-shard-$i.log)"
  tail -n 80 "build-asan/unit-shard-$i.log"
done
if [ "${rc0:-0}" -ne 0 ] || [ "${rc1:-0}" -ne 0 ]; then
  echo "test: the ASan+UBSan unit tests failed (shard 0: ${rc0:-0}, shard 1: ${rc1:-0})" >&2
  exit 1
fi
tools/lint.sh build
echo "test: all passed"
