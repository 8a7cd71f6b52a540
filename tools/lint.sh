#!/usr/bin/env bash
# clang-format (check) and clang-tidy over the project's sources.
# Usage: tools/lint.sh [BUILD_DIR]   (BUILD_DIR needs compile_commands.json; default: build)
set -eu
cd "$(dirname "$0")/.."
build=${1:-build}
files=$(git ls-files '*.cpp' '*.h' | grep -v '^tests/e2e/')
clang-format --dry-run --Werror $files
cpp=$(git ls-files '*.cpp' | grep -v '^tests/')
# -Wshadow=local is a GCC spelling that clang does not know.
printf '%s\n' $cpp | xargs -P "$(nproc)" -n 4 clang-tidy -p "$build" --quiet --extra-arg=-Wno-unknown-warning-option
echo "lint: clang-format and clang-tidy clean"
