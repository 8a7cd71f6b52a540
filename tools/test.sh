#!/usr/bin/env bash
# The whole test suite: build (warnings are errors), unit + end-to-end + Packer corpus
# parity tests, the unit tests again under ASan+UBSan, then clang-format/clang-tidy.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
ctest --test-dir build --output-on-failure -j2
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DIMGBAKE_WERROR=ON -DIMGBAKE_SANITIZE=ON >/dev/null
cmake --build build-asan --target imgbake_unit_tests
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 build-asan/tests/imgbake_unit_tests
tools/lint.sh build
echo "test: all passed"
