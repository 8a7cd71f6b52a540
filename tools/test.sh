#!/usr/bin/env bash
# The whole test suite: build (warnings are errors), end-to-end + Packer corpus parity tests,
# the unit tests under ASan+UBSan, then clang-format/clang-tidy.
set -euo pipefail
cd "$(dirname "$0")/.."
# Each phase says how long it took (CI keeps this output when a run fails or nears its limit).
phase_start=$SECONDS
phase() { echo "test.sh: $1 took $((SECONDS - phase_start)) s" >&2; phase_start=$SECONDS; }
tools/setup.sh
phase "setup (install + release build)"
# End-to-end and corpus tests run the release binary (build/imgbake). The unit tests run once,
# under ASan+UBSan, below; they are not built in build/ (that saves a third of the build).
# -E skips the placeholder ctest lists when build/ has no unit test binary.
ctest --test-dir build --output-on-failure -j2 -LE unit -E '_NOT_BUILT$'
phase "end-to-end and corpus tests"
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DIMGBAKE_WERROR=ON -DIMGBAKE_SANITIZE=ON >/dev/null
cmake --build build-asan --target imgbake_unit_tests
phase "ASan+UBSan unit test build"
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 build-asan/tests/imgbake_unit_tests
phase "unit tests"
tools/lint.sh build
phase "lint"
echo "test: all passed"
