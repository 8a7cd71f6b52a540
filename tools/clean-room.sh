#!/usr/bin/env bash
# clean-room.sh — runs the README's two commands on a minimal Debian 12 root, the way CI and a new
# user's fresh machine would, to prove that tools/setup.sh installs everything the project, its
# tests and its fixtures use (a package installed by hand on this machine hides a missing one).
#
#   tools/clean-room.sh [--dir DIR] [--keep] [--setup-only]
#
# 1. debootstrap --variant=minbase bookworm DIR/root from this machine's configured apt mirror
#    (the apt sources and network settings of /etc/apt are copied in);
# 2. a fresh `git clone` of this checkout's committed HEAD into DIR/root/work/main, and a copy of
#    ../shared beside it (as CI has it);
# 3. in a sandbox (new mount and pid namespaces, chroot into DIR/root, with /proc, /dev, /sys and
#    the host's network for apt), as root:
#      tools/setup.sh && build/imgbake build templates/rootfs-debian.json      (README, first command)
#      tools/test.sh                                                     (README, second command)
#    printing each command's exit status and time; the full output is in DIR/logs/.
#
# Exit status: 0 when both commands exit 0. DIR (default /var/tmp/imgbake-clean-room) is replaced
# at the start; it is removed at the end unless --keep (the root is several GB once built).
# Uncommitted changes are not tested (it says so): the clean room is what a clone of main gets.
# Needs root and the Debian packages debootstrap, git and util-linux (unshare).
# What cannot run inside: see docs/testing.md ("The clean room").
set -euo pipefail

usage() { sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
dir=/var/tmp/imgbake-clean-room
keep=0
setup_only=0
while [ $# -gt 0 ]; do
  case $1 in
    --dir) [ $# -ge 2 ] || usage; dir=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    --setup-only) setup_only=1; shift ;;
    -h | --help) usage ;;
    *) echo "clean-room: unknown argument '$1'" >&2; usage ;;
  esac
done

src=$(cd "$(dirname "$0")/.." && pwd)
shared=$(cd "$src/.." && pwd)/shared
if [ "$(id -u)" -ne 0 ]; then
  echo "clean-room: run as root (debootstrap, chroot and namespaces need it)" >&2
  exit 1
fi
for tool in debootstrap git unshare chroot mount; do
  command -v "$tool" >/dev/null || {
    echo "clean-room: $tool is missing (apt-get install debootstrap git util-linux mount coreutils)" >&2
    exit 1
  }
done
case $dir in /* ) ;; *) dir=$(pwd)/$dir ;; esac
[ "$dir" != / ] || { echo "clean-room: --dir / refused" >&2; exit 2; }

now_ns() { date +%s%N; }
fmt_s() { local ms=$((($2 - $1) / 1000000)); printf '%d.%01d s' $((ms / 1000)) $((ms % 1000 / 100)); }
say() { echo "clean-room: $*"; }
t0=$(now_ns)

remove_dir() {
  # --one-file-system: never follow a mount point that is somehow still there into the host.
  [ -e "$1" ] && rm -rf --one-file-system "$1"
  return 0
}
if [ -e "$dir" ]; then
  if grep -qs " $dir/" /proc/mounts; then
    echo "clean-room: something is still mounted under $dir (another clean-room run?); not removing it" >&2
    exit 1
  fi
  say "removing the previous clean room $dir"
  remove_dir "$dir"
fi
mkdir -p "$dir/logs"
root=$dir/root
cleanup() {
  local rc=$?
  if [ $keep -eq 0 ] && ! grep -qs " $root/" /proc/mounts; then
    remove_dir "$root"
    say "removed $root (logs kept in $dir/logs; --keep keeps the root)"
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The mirror this machine's apt uses: deb822 .sources first, then the one-line format.
mirror=${MIRROR:-}
[ -n "$mirror" ] || mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
if [ -z "$mirror" ] && [ -f /etc/apt/sources.list ]; then
  mirror=$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' /etc/apt/sources.list)
fi
[ -n "$mirror" ] || { echo "clean-room: no apt mirror in /etc/apt/sources*; set MIRROR=URL" >&2; exit 1; }

# 1. The minimal root.
s=$(now_ns)
say "debootstrap --variant=minbase bookworm $root $mirror"
if ! debootstrap --variant=minbase bookworm "$root" "$mirror" >"$dir/logs/debootstrap.log" 2>&1; then
  tail -n 20 "$dir/logs/debootstrap.log" >&2
  say "debootstrap failed"
  exit 1
fi
say "minimal root ready ($(fmt_s "$s" "$(now_ns)"), $(du -sh --one-file-system "$root" | cut -f1))"
# This machine's apt configuration: its sources (updates, security) and network settings.
rm -f "$root/etc/apt/sources.list"
cp -a /etc/apt/sources.list.d/. "$root/etc/apt/sources.list.d/" 2>/dev/null || true
[ -f /etc/apt/sources.list ] && cp /etc/apt/sources.list "$root/etc/apt/sources.list"
for f in /etc/apt/apt.conf.d/*; do
  [ -e "$root/etc/apt/apt.conf.d/$(basename "$f")" ] || cp "$f" "$root/etc/apt/apt.conf.d/"
done
cp /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
cp /etc/hosts "$root/etc/hosts" 2>/dev/null || true

# 2. A fresh clone of the committed HEAD, and ../shared beside it.
if [ -n "$(git -C "$src" status --porcelain --untracked-files=no)" ]; then
  say "note: $src has uncommitted changes; the clean room tests the committed HEAD only"
fi
mkdir -p "$root/work"
git clone -q --no-hardlinks "$src" "$root/work/main"
say "cloned $(git -C "$root/work/main" log -1 --format='%h %s' | cut -c1-90)"
if [ -d "$shared" ]; then
  cp -a "$shared" "$root/work/shared"
else
  say "note: no $shared beside the checkout; tests that read it will say so"
fi

# 3. The README's commands, in the sandbox.
# New mount namespace: the binds vanish with it. New pid namespace: every process a test leaves
# behind (qemu, registries) dies with its init when the command ends.
run_in_root() {
  local name=$1 cmd=$2 log=$dir/logs/$1.log s rc
  s=$(now_ns)
  say "[$name] $cmd"
  set +e
  unshare --mount --pid --fork --propagation private \
    bash -c '
      set -e
      root=$1
      # A mount point as the root: bubblewrap (the rootfs builder) pivot_roots, which fails in a
      # plain chroot whose root is not one.
      mount --bind "$root" "$root"
      mount --rbind /dev "$root/dev"
      mount -t proc proc "$root/proc"
      mount --rbind /sys "$root/sys"
      mount -t tmpfs -o mode=1777 tmpfs "$root/dev/shm" 2>/dev/null || true
      exec chroot "$root" /usr/bin/env -i HOME=/root USER=root LOGNAME=root TERM=dumb LANG=C.UTF-8 \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        /bin/bash -c "cd /work/main && $2"
    ' clean-room "$root" "$cmd" >"$log" 2>&1
  rc=$?
  set -e
  tail -n 15 "$log" | sed "s/^/  [$name] | /"
  say "[$name] exit $rc in $(fmt_s "$s" "$(now_ns)") (log: $log)"
  return $rc
}

status=0
run_in_root setup 'tools/setup.sh && build/imgbake build templates/rootfs-debian.json' || status=1
if [ $status -eq 0 ] && [ $setup_only -eq 0 ]; then
  run_in_root test 'tools/test.sh' || status=1
fi
if [ $status -eq 0 ]; then
  say "PASSED: the README's commands exit 0 on a fresh Debian 12 root (total $(fmt_s "$t0" "$(now_ns)"))"
else
  say "FAILED (total $(fmt_s "$t0" "$(now_ns)")); logs in $dir/logs"
fi
exit $status
