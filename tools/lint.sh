#!/usr/bin/env bash
# clang-format (check) and clang-tidy over the project's sources.
# Usage: tools/lint.sh [BUILD_DIR]   (BUILD_DIR needs compile_commands.json; default: build)
set -eu
cd "$(dirname "$0")/.."
build=${1:-build}
files=$(git ls-files '*.cpp' '*.h' | grep -v '^tests/e2e/')
clang-format --dry-run --Werror $files
cpp=$(git ls-files '*.cpp' | grep -v '^tests/')
# -Wshadow=local is a GCC spelling that clang does not know. The static analyzer runs in its
# shallow mode (less inlining across calls): two fifths less time than the deep mode for the
# same checkers, which keeps the whole suite within CI's budget; run with LINT_DEEP=1 for the
# deep mode.
analyzer=(--extra-arg=-Xclang --extra-arg=-analyzer-config --extra-arg=-Xclang --extra-arg=mode=shallow)
[ -n "${LINT_DEEP:-}" ] && analyzer=()
# tools/tidy_cached.py skips a file whose clean verdict is known for the same preprocessed source,
# flags and configuration (as ccache does for objects): ~12 minutes on two cores when every file
# is checked, about one when few changed. IMGBAKE_LINT_CACHE=off checks every file.
tools/tidy_cached.py "$build" $cpp -- "${analyzer[@]}"
echo "lint: clang-format and clang-tidy clean"
