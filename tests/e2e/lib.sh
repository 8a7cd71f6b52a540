# Helpers for imgbake's end-to-end suites (in the style of ccache's test/suites).
#
# A suite is a bash file that sources this library, defines test functions and
# runs them with `run_test NAME FUNCTION`; it ends with `summary`, which exits
# non-zero when any check failed.
#
# Environment:
#   IMGBAKE             the binary under test (required)
#   IMGBAKE_SOURCE_DIR  the repository root (default: two levels above this file)
#   TMPDIR              where the suite's scratch directory is created (default /tmp)
#
# Every test gets a fresh scratch directory ($TEST_DIR) and runs with it as the
# current directory. TMPDIR is pointed into the suite's scratch root while the
# tests run, so imgbake's temporary files land there too; the whole root is
# removed when the suite exits (also on failure or interruption).

set -u

if [ -z "${IMGBAKE:-}" ]; then
  echo "lib.sh: IMGBAKE must name the imgbake binary" >&2
  exit 2
fi
case "$IMGBAKE" in
  /*) ;;
  *) IMGBAKE="$PWD/$IMGBAKE" ;;
esac
if [ ! -x "$IMGBAKE" ]; then
  echo "lib.sh: IMGBAKE=$IMGBAKE is not an executable file" >&2
  exit 2
fi
: "${IMGBAKE_SOURCE_DIR:=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
export IMGBAKE IMGBAKE_SOURCE_DIR

# Reproducible environment for the binary: no colours, a known user name (the
# hello template's secret is "s3cr3t-$USER-token"), C locale.
export USER=e2e-tester
export NO_COLOR=1
export LC_ALL=C
unset IMGBAKE_BUILD_NAME PACKER_BUILD_NAME 2>/dev/null || true

E2E_SUITE=$(basename "$0" .sh)
E2E_ORIG_TMPDIR=${TMPDIR:-/tmp}
E2E_ROOT=$(mktemp -d "$E2E_ORIG_TMPDIR/imgbake-e2e-$E2E_SUITE.XXXXXX") || {
  echo "lib.sh: cannot create a scratch directory under $E2E_ORIG_TMPDIR" >&2
  exit 2
}
mkdir -p "$E2E_ROOT/tmp"
export TMPDIR="$E2E_ROOT/tmp"
# The image store and the signing key live in the scratch root too, never in $HOME.
export IMGBAKE_HOME="$E2E_ROOT/store"
export IMGBAKE_CONFIG_HOME="$E2E_ROOT/config"

E2E_CHECKS=0
E2E_FAILURES=0
E2E_TESTS=0
E2E_FAILED_TESTS=()
E2E_SKIPS=0
E2E_CURRENT=""
TEST_DIR=""
STDOUT=""
STDERR=""
RC=0
# Background processes a test started (killed on exit if still running).
E2E_BG_PIDS=()

e2e_cleanup() {
  local p
  for p in "${E2E_BG_PIDS[@]}"; do
    disown "$p" 2>/dev/null || true  # no "Killed" job report after the summary
    kill -KILL "$p" 2>/dev/null || true
  done
  cd / 2>/dev/null || true
  if [ -n "${E2E_KEEP:-}" ]; then
    echo "(E2E_KEEP set: scratch kept in $E2E_ROOT)" >&2
  else
    rm -rf "$E2E_ROOT"
  fi
}
trap e2e_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Prints `--- label ---` and the first lines of a file, indented, for failure reports.
e2e_show_file() {
  local label=$1 file=$2
  [ -e "$file" ] || { echo "      ($label: no such file $file)"; return; }
  echo "      --- $label ($file) ---"
  head -n 40 "$file" | sed 's/^/      | /'
  local n
  n=$(wc -l <"$file")
  [ "$n" -gt 40 ] && echo "      | ... ($n lines)"
  return 0
}

# fail MESSAGE [EXPECTED [SEEN]]
fail() {
  E2E_FAILURES=$((E2E_FAILURES + 1))
  echo "  FAIL [$E2E_CURRENT] $1"
  if [ $# -ge 2 ]; then echo "      expected: $2"; fi
  if [ $# -ge 3 ]; then echo "      seen:     $3"; fi
  return 0
}

pass() {
  E2E_CHECKS=$((E2E_CHECKS + 1))
  return 0
}

check() {
  # check DESCRIPTION CMD...: passes when CMD succeeds.
  local desc=$1
  shift
  E2E_CHECKS=$((E2E_CHECKS + 1))
  if ! "$@"; then
    fail "$desc" "command succeeds: $*" "it failed"
    return 1
  fi
  return 0
}

# require_tools TOOL...: the suite stops with exit 1, naming the Debian packages to install, when
# a program it needs is missing. tools/setup.sh installs them all, so on a machine it set up a
# missing tool is a setup bug: it fails the suite instead of skipping it unseen.
declare -A E2E_TOOL_PACKAGES=(
  [qemu-system-x86_64]=qemu-system-x86 [qemu-img]=qemu-utils [docker-registry]=docker-registry
  [skopeo]=skopeo [umoci]=umoci [podman]=podman [runc]=runc [htpasswd]=apache2-utils
  [debootstrap]=debootstrap [bwrap]=bubblewrap [python3]=python3 [git]=git [curl]=curl
  [isoinfo]=genisoimage [xorriso]=xorriso [zstd]=zstd [sqlite3]=sqlite3 [cpio]=cpio
  [busybox]=busybox-static [dropbearkey]=dropbear-bin [ssh]=openssh-client
  [ssh-keygen]=openssh-client [apt-ftparchive]=apt-utils [mkfs.ext4]=e2fsprogs
  [debugfs]=e2fsprogs [ansible-playbook]=ansible-core [ruby]=ruby [tar]=tar [gzip]=gzip [xz]=xz-utils [packer]=packer [aws]=awscli
)
require_tools() {
  local t missing=() packages=()
  for t in "$@"; do
    command -v "$t" >/dev/null 2>&1 && continue
    missing+=("$t")
    packages+=("${E2E_TOOL_PACKAGES[$t]:-?}")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "$(basename "$0"): needs ${missing[*]}, which is not installed" \
    "(Debian: apt-get install ${packages[*]}; tools/setup.sh installs them)" >&2
  exit 1
}

# use_packer: for suites that judge imgbake against Packer 1.6.6 (Debian's packer). Packer must
# not call home or write into $HOME. Then `run_packer ARGS...` runs it like `run`, into
# PK_STDOUT/PK_STDERR/PK_RC.
use_packer() {
  require_tools packer
  export CHECKPOINT_DISABLE=1 PACKER_CACHE_DIR="$E2E_ROOT/packer-cache" HOME="$E2E_ROOT/home"
  mkdir -p "$HOME"
}
run_packer() {
  PK_STDOUT="$TEST_DIR/.packer-stdout"
  PK_STDERR="$TEST_DIR/.packer-stderr"
  PK_RC=0
  timeout 120 packer "$@" >"$PK_STDOUT" 2>"$PK_STDERR" || PK_RC=$?
}

skip() {
  E2E_SKIPS=$((E2E_SKIPS + 1))
  echo "  SKIP [$E2E_CURRENT] $1"
}

# run_test NAME FUNCTION: runs FUNCTION in a subshell, in a fresh scratch
# directory; its checks, failures and skips are added to the suite's counts.
run_test() {
  local name=$1 fn=$2
  # E2E_ONLY=REGEX runs only the tests whose name matches (while working on a suite).
  if [ -n "${E2E_ONLY:-}" ] && ! [[ $name =~ $E2E_ONLY ]]; then return 0; fi
  E2E_TESTS=$((E2E_TESTS + 1))
  TEST_DIR="$E2E_ROOT/t$E2E_TESTS-$name"
  mkdir -p "$TEST_DIR"
  echo "TEST $name"
  (
    E2E_CURRENT=$name
    E2E_CHECKS=0
    E2E_FAILURES=0
    E2E_SKIPS=0
    E2E_BG_PIDS=()
    STDOUT="$TEST_DIR/.stdout"
    STDERR="$TEST_DIR/.stderr"
    : >"$STDOUT"
    : >"$STDERR"
    trap 'for p in "${E2E_BG_PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done
          echo "$E2E_CHECKS $E2E_FAILURES $E2E_SKIPS" >"$TEST_DIR/.counts"' EXIT
    cd "$TEST_DIR" || exit 99
    "$fn"
  )
  local rc=$? checks=0 fails=0 skips=0
  if [ -f "$TEST_DIR/.counts" ]; then
    read -r checks fails skips <"$TEST_DIR/.counts"
  fi
  E2E_CHECKS=$((E2E_CHECKS + checks))
  E2E_SKIPS=$((E2E_SKIPS + skips))
  if [ "$rc" -ne 0 ] && [ "$fails" -eq 0 ]; then
    echo "  FAIL [$name] the test function exited with status $rc"
    fails=1
  fi
  E2E_FAILURES=$((E2E_FAILURES + fails))
  if [ "$fails" -gt 0 ]; then
    E2E_FAILED_TESTS+=("$name")
  fi
  return 0
}

summary() {
  echo
  echo "$E2E_SUITE: $E2E_TESTS tests, $E2E_CHECKS checks, $E2E_FAILURES failures, $E2E_SKIPS skipped"
  if [ "$E2E_FAILURES" -gt 0 ]; then
    echo "$E2E_SUITE: FAILED tests: ${E2E_FAILED_TESTS[*]}"
    exit 1
  fi
  echo "$E2E_SUITE: OK"
  exit 0
}

# ---------------------------------------------------------------------------
# Running commands

# run CMD...: runs CMD (the word "imgbake" means $IMGBAKE) with stdout/stderr captured into $STDOUT/$STDERR and its
# exit status in $RC. Commands are bounded by a timeout (E2E_TIMEOUT, default
# 120 s) so that a hang fails the test instead of blocking the suite.
run() {
  RC=0
  local cmd=$1
  shift
  [ "$cmd" = imgbake ] && cmd=$IMGBAKE
  set -- "$cmd" "$@"
  timeout -k 5 "${E2E_TIMEOUT:-120}" "$@" >"$STDOUT" 2>"$STDERR" </dev/null || RC=$?
  if [ "$RC" -eq 124 ] || [ "$RC" -eq 137 ]; then
    echo "  note: '$*' hit the ${E2E_TIMEOUT:-120}s timeout (status $RC)"
  fi
  return 0
}

# expect_exit CODE CMD...: runs CMD (see run) and checks its exit status.
expect_exit() {
  local want=$1
  shift
  run "$@"
  E2E_CHECKS=$((E2E_CHECKS + 1))
  if [ "$RC" -ne "$want" ]; then
    fail "exit status of: $*" "$want" "$RC"
    e2e_show_file stdout "$STDOUT"
    e2e_show_file stderr "$STDERR"
    return 1
  fi
  return 0
}

# imgbake ARGS...: shorthand for the binary under test.
imgbake() { "$IMGBAKE" "$@"; }

# ---------------------------------------------------------------------------
# Assertions on files and values

# expect_contains FILE TEXT: FILE holds TEXT (a fixed string).
expect_contains() {
  local file=$1 text=$2
  E2E_CHECKS=$((E2E_CHECKS + 1))
  if [ ! -f "$file" ]; then
    fail "$file should contain '$text'" "the file to exist" "no such file"
    return 1
  fi
  if ! grep -qF -- "$text" "$file"; then
    fail "$(basename "$file") should contain the text below" "$text" "(not found)"
    e2e_show_file "$(basename "$file")" "$file"
    return 1
  fi
  return 0
}

# expect_not_contains FILE TEXT
expect_not_contains() {
  local file=$1 text=$2
  E2E_CHECKS=$((E2E_CHECKS + 1))
  if [ ! -f "$file" ]; then
    fail "$file should exist (and not contain '$text')" "the file to exist" "no such file"
    return 1
  fi
  if grep -qF -- "$text" "$file"; then
    fail "$(basename "$file") must not contain the text below" "no '$text'" \
      "$(grep -nF -- "$text" "$file" | head -n 3 | tr '\n' ' ')"
    return 1
  fi
  return 0
}

# expect_match FILE REGEX: some line of FILE matches the extended regex.
expect_match() {
  local file=$1 re=$2
  E2E_CHECKS=$((E2E_CHECKS + 1))
  if [ ! -f "$file" ] || ! grep -qE -- "$re" "$file"; then
    fail "$(basename "$file") should have a line matching a regex" "/$re/" "(no match)"
    e2e_show_file "$(basename "$file")" "$file"
    return 1
  fi
  return 0
}

# expect_no_match FILE REGEX
expect_no_match() {
  local file=$1 re=$2
  E2E_CHECKS=$((E2E_CHECKS + 1))
  if grep -qE -- "$re" "$file"; then
    fail "$(basename "$file") must have no line matching a regex" "no /$re/" \
      "$(grep -nE -- "$re" "$file" | head -n 3 | tr '\n' ' ')"
    return 1
  fi
  return 0
}

# expect_eq WHAT EXPECTED ACTUAL
expect_eq() {
  E2E_CHECKS=$((E2E_CHECKS + 1))
  if [ "$2" != "$3" ]; then
    fail "$1" "$2" "$3"
    return 1
  fi
  return 0
}

expect_file() {
  E2E_CHECKS=$((E2E_CHECKS + 1))
  if [ ! -f "$1" ]; then
    fail "file $1 should exist" "a regular file" "$(ls -ld "$1" 2>&1)"
    return 1
  fi
  return 0
}

expect_no_file() {
  E2E_CHECKS=$((E2E_CHECKS + 1))
  if [ -e "$1" ]; then
    fail "file $1 should not exist" "no such file" "$(ls -ld "$1" 2>&1)"
    return 1
  fi
  return 0
}

# expect_file_content FILE EXPECTED: the whole file equals EXPECTED (a trailing
# newline in the file is ignored, as with $(cat)).
expect_file_content() {
  E2E_CHECKS=$((E2E_CHECKS + 1))
  if [ ! -f "$1" ]; then
    fail "file $1 should exist" "content '$2'" "no such file"
    return 1
  fi
  local got
  got=$(cat "$1")
  if [ "$got" != "$2" ]; then
    fail "content of $(basename "$1")" "$2" "$got"
    return 1
  fi
  return 0
}

# ---------------------------------------------------------------------------
# JSON (python3 is used when present; without it the JSON checks are skipped
# and reported as such).

have_python() { [ -z "${E2E_NO_PYTHON:-}" ] && command -v python3 >/dev/null 2>&1; }

# py_check DESCRIPTION PYTHON_CODE [ARGS...]: runs the code with sys.argv[1:] =
# ARGS; the check fails when it raises or exits non-zero; what it prints is
# shown on failure.
py_check() {
  local desc=$1 code=$2
  shift 2
  if ! have_python; then
    skip "$desc (python3 not available)"
    return 0
  fi
  E2E_CHECKS=$((E2E_CHECKS + 1))
  local out
  if ! out=$(python3 -c "$code" "$@" 2>&1); then
    fail "$desc" "the JSON check to pass" "$(printf '%s' "$out" | tail -n 5 | tr '\n' ' ')"
    return 1
  fi
  return 0
}

# json_get FILE PYTHON_EXPR: prints the value of an expression over `d` (the
# parsed document), e.g. json_get m.json 'd["builds"][0]["name"]'.
json_get() {
  have_python || return 1
  python3 -c 'import json,sys
d=json.load(open(sys.argv[1]))
v=eval(sys.argv[2])
print(v if isinstance(v,str) else json.dumps(v))' "$1" "$2"
}

# ---------------------------------------------------------------------------
# Processes and polling

# wait_for TIMEOUT_S CMD...: polls CMD every 0.05 s until it succeeds or the
# timeout passes; returns CMD's last status.
wait_for() {
  local timeout=$1
  shift
  local deadline=$(($(date +%s%N) + timeout * 1000000000))
  while true; do
    if "$@"; then return 0; fi
    if [ "$(date +%s%N)" -ge "$deadline" ]; then return 1; fi
    sleep 0.05
  done
}

file_nonempty() { [ -s "$1" ]; }

# pid_alive PID: the process exists and is not a zombie (a zombie has been
# killed; only its parent, or init, has not reaped it yet).
pid_alive() {
  local pid=$1 st
  kill -0 "$pid" 2>/dev/null || return 1
  if [ -r "/proc/$pid/stat" ]; then
    # Field 3 of /proc/PID/stat, after the parenthesised command name.
    st=$(sed 's/^.*) \([A-Za-z]\).*$/\1/' "/proc/$pid/stat" 2>/dev/null)
  else
    st=$(ps -o stat= -p "$pid" 2>/dev/null | tr -d ' ')
  fi
  case "$st" in
    "" | Z*) return 1 ;;
  esac
  return 0
}

pid_gone() { ! pid_alive "$1"; }

# now_ms: milliseconds since the epoch.
now_ms() { echo $(($(date +%s%N) / 1000000)); }

# write_file PATH: writes standard input to PATH (creating directories).
write_file() {
  mkdir -p "$(dirname "$1")"
  cat >"$1"
}

# expect_no_temp_scripts [DIR]: imgbake left nothing in DIR (default: the TMPDIR the tests run
# imgbake with): neither its private imgbake-PID-* directory (where its temporary scripts are) nor
# any other imgbake-* file.
expect_no_temp_scripts() {
  local dir=${1:-$TMPDIR}
  expect_eq "imgbake-* files and directories left in $dir" "" \
    "$(ls -A "$dir" 2>/dev/null | grep '^imgbake-' || true)"
}

# interrupt_when PATTERN SECONDS ARG...: runs `imgbake ARG...` in the background (its own process
# group, output in $STDOUT and $STDERR), waits up to SECONDS for PATTERN in its stdout, then
# presses Ctrl-C (SIGINT to the group) and sets INTERRUPTED_PID for the caller's checks. Returns 1
# (the process killed, its output shown) when PATTERN never came.
interrupt_when() {
  local pattern=$1 seconds=$2 pid
  shift 2
  set -m
  "$IMGBAKE" "$@" >"$STDOUT" 2>"$STDERR" </dev/null &
  pid=$!
  set +m
  E2E_BG_PIDS+=("$pid")
  E2E_CHECKS=$((E2E_CHECKS + 1))
  if ! wait_for "$seconds" grep -q "$pattern" "$STDOUT"; then
    fail "imgbake reaches '$pattern'" "'$pattern' within $seconds s" "not seen"
    e2e_show_file stdout "$STDOUT"
    e2e_show_file stderr "$STDERR"
    kill -KILL -- "-$pid"
    return 1
  fi
  INTERRUPTED_PID=$pid
  kill -INT -- "-$pid"
}

# busybox_tarball FILE [APPLET...]: a tiny root filesystem (busybox-static and some of its
# applets, plus the APPLETs named) as a tarball.
busybox_tarball() {
  local root="$TEST_DIR/bb-root"
  mkdir -p "$root/bin" "$root/etc" "$root/tmp" "$root/proc" "$root/dev" "$root/root"
  cp /bin/busybox "$root/bin/busybox"
  local c
  for c in sh ls cat echo rm mkdir chmod sleep true env id sed "${@:2}"; do ln -sf busybox "$root/bin/$c"; done
  echo "to be deleted" >"$root/etc/old.txt"
  mkdir -p "$root/var/cache/junk" && echo x >"$root/var/cache/junk/a"
  tar -C "$root" -czf "$1" .
}
