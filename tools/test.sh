#!/usr/bin/env bash
# The whole test suite, in one ASan+UBSan build (build-asan/, warnings are errors): the unit tests,
# then the end-to-end and Packer corpus parity tests running that same imgbake binary (so memory
# errors and undefined behaviour in the paths only they reach fail too), then clang-format and
# clang-tidy. One build instead of a release build plus a sanitizer build keeps CI under its
# time budget on two cores (docs/testing.md has the numbers).
set -euo pipefail
cd "$(dirname "$0")/.."
# Each phase says how long it took (CI keeps this output when a run fails or nears its limit).
phase_start=$SECONDS
phase() { echo "test.sh: $1 took $((SECONDS - phase_start)) s" >&2; phase_start=$SECONDS; }
tools/setup.sh --no-build
phase "setup (packages)"
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DIMGBAKE_WERROR=ON -DIMGBAKE_SANITIZE=ON >/dev/null
cmake --build build-asan --target imgbake imgbake_unit_tests
phase "ASan+UBSan build"
export ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1
build-asan/tests/imgbake_unit_tests
phase "unit tests"
# A short fuzzing round (clang, its own build-fuzz/ at -O0 to compile fast); longer hunts are
# `tools/fuzz.sh --seconds N` by hand (docs/testing.md, "Fuzzing").
tools/fuzz.sh --seconds "${IMGBAKE_CI_FUZZ_SECONDS:-15}" --opt -O0
phase "fuzzing (clang build and 4 targets)"
ctest --test-dir build-asan --output-on-failure -j2 -LE unit
phase "end-to-end and corpus tests"
tools/lint.sh build-asan
phase "lint"
echo "test: all passed"
