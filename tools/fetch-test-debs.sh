#!/usr/bin/env bash
# fetch-test-debs.sh DIR — downloads, with apt, every .deb that
# `debootstrap --variant=minbase bookworm` installs, plus the packages the tests install (`hello`,
# and `puppet` and `ansible-core` for tests/e2e/test_config_mgmt.sh) and their dependencies, into
# DIR: the packages of the local apt mirror (tests/fixtures/apt-mirror.sh) that the rootfs
# end-to-end tests install from, so that the tests themselves talk only to 127.0.0.1.
#
# Idempotent: DIR/.fetch-test-debs.stamp lists the files of a complete fetch (and the packages
# asked for); when all of them are there, nothing is downloaded (a run then takes well under a
# second). Remove the stamp to fetch again (e.g. after the host's apt lists moved on).
#
# Needs root (apt-get download into a directory of ours, apt-get update when the lists are
# missing) and the Debian packages: apt debootstrap. Env: MIRROR (default: the first URI of the
# host's apt sources), SUITE (bookworm).
set -euo pipefail

usage() { echo "usage: $0 DIR" >&2; exit 2; }
[ $# -eq 1 ] || usage
dir=$1
suite=${SUITE:-bookworm}
stamp="$dir/.fetch-test-debs.stamp"
started_ns=$(date +%s%N)
# What the tests install on top of the minbase packages (with their dependencies).
extra=(hello puppet ansible-core)

elapsed() {
  local ms=$((($(date +%s%N) - started_ns) / 1000000))
  printf '%d.%01d s' $((ms / 1000)) $((ms % 1000 / 100))
}

# Up to date: every file the last complete fetch listed is still there.
if [ -f "$stamp" ] && ! grep -qxF "# packages: ${extra[*]}" "$stamp"; then
  echo "fetch-test-debs: $stamp was made for other packages than '${extra[*]}'; fetching again"
elif [ -f "$stamp" ]; then
  missing=0
  while IFS= read -r f; do
    case $f in '#'* | '') continue ;; esac
    [ -s "$dir/$f" ] || { missing=1; break; }
  done <"$stamp"
  if [ $missing -eq 0 ]; then
    echo "fetch-test-debs: $dir is complete ($(grep -vc '^#' "$stamp") packages, listed in $stamp); nothing to do"
    exit 0
  fi
  echo "fetch-test-debs: $dir is incomplete ($f is missing); fetching again"
fi

for tool in apt-get apt-cache debootstrap dpkg-deb; do
  command -v "$tool" >/dev/null || {
    echo "fetch-test-debs: $tool is missing (apt-get install -y apt debootstrap)" >&2
    exit 77
  }
done
if [ "$(id -u)" -ne 0 ]; then
  echo "fetch-test-debs: run as root (debootstrap --print-debs and apt-get need it)" >&2
  exit 1
fi

# The mirror the host's apt uses: deb822 .sources first, then the one-line format.
mirror=${MIRROR:-}
if [ -z "$mirror" ]; then
  mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
fi
if [ -z "$mirror" ] && [ -f /etc/apt/sources.list ]; then
  mirror=$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' \
    /etc/apt/sources.list)
fi
[ -n "$mirror" ] || { echo "fetch-test-debs: no apt mirror found in /etc/apt/sources*; set MIRROR=URL" >&2; exit 1; }

mkdir -p "$dir"
work=$(mktemp -d "${TMPDIR:-/tmp}/fetch-test-debs.XXXXXX")
trap 'rm -rf "$work"' EXIT

# apt-get download needs current lists; a machine that never ran apt-get update has none.
if ! apt-cache show "${extra[@]}" >/dev/null 2>&1; then
  echo "fetch-test-debs: no apt lists for '${extra[*]}'; running apt-get update"
  apt-get update -qq
fi

echo "fetch-test-debs: asking debootstrap which packages '--variant=minbase $suite' installs (from $mirror)"
debootstrap --print-debs --variant=minbase "$suite" "$work/target" "$mirror" >"$work/debs" 2>"$work/debootstrap.log" || {
  echo "fetch-test-debs: debootstrap --print-debs failed:" >&2
  tail -n 20 "$work/debootstrap.log" >&2
  exit 1
}
read -r -a base <<<"$(tr '\n' ' ' <"$work/debs")"
[ ${#base[@]} -gt 20 ] || { echo "fetch-test-debs: debootstrap listed only ${#base[@]} packages" >&2; exit 1; }

# apt's candidate versions may come from bookworm-updates or -security and depend on packages
# debootstrap's list (made from the plain suite) lacks: take the whole dependency closure, so
# that the mirror is consistent whichever versions apt picks. Virtual packages ("<name>") are
# provided by real ones in the closure.
apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks --no-replaces \
  --no-enhances "${base[@]}" "${extra[@]}" 2>/dev/null | grep -v '^[ <]' | sort -u >"$work/closure"
mapfile -t wanted <"$work/closure"
echo "fetch-test-debs: ${#base[@]} packages from debootstrap + ${extra[*]} -> ${#wanted[@]} with dependencies"

# apt's candidate version of each, in one call (apt-cache takes ~1.5 s per call here).
declare -A version
while read -r pkg ver; do version[$pkg]=$ver; done < <(apt-cache policy "${wanted[@]}" |
  awk '/^[^ ].*:$/ { sub(/:$/, ""); pkg = $0 } /^  Candidate:/ { print pkg, $2 }')
deb_glob() { local v=${version[$1]}; echo "${1}_${v//:/%3a}_*.deb"; }

# Only what is not already in DIR (a previous, interrupted run) is downloaded.
todo=()
for pkg in "${wanted[@]}"; do
  ver=${version[$pkg]:-}
  if [ -z "$ver" ] || [ "$ver" = "(none)" ]; then
    echo "fetch-test-debs: apt has no candidate for '$pkg' (apt-get update?)" >&2
    exit 1
  fi
  compgen -G "$dir/$(deb_glob "$pkg")" >/dev/null || todo+=("$pkg=$ver")
done
if [ ${#todo[@]} -gt 0 ]; then
  echo "fetch-test-debs: downloading ${#todo[@]} packages into $dir"
  # apt-get download writes into the current directory; as root it would hand the download to
  # the _apt user, who cannot write there.
  (cd "$work" && mkdir dl && cd dl && apt-get download -q -o APT::Sandbox::User=root "${todo[@]}" >"$work/download.log" 2>&1) || {
    echo "fetch-test-debs: apt-get download failed:" >&2
    tail -n 20 "$work/download.log" >&2
    exit 1
  }
  mv "$work"/dl/*.deb "$dir"/
else
  echo "fetch-test-debs: all ${#wanted[@]} packages are already in $dir"
fi

# The stamp: one file name a line, for the up-to-date check above.
{
  echo "# fetch-test-debs.sh: debootstrap --variant=minbase $suite + ${extra[*]}, from $mirror, $(date -u +%FT%TZ)"
  echo "# packages: ${extra[*]}"
  for pkg in "${wanted[@]}"; do
    for f in $dir/$(deb_glob "$pkg"); do basename "$f"; done
  done
} >"$stamp.tmp"
mv "$stamp.tmp" "$stamp"
echo "fetch-test-debs: $dir complete: ${#wanted[@]} packages, $(du -sh "$dir" | cut -f1) ($(elapsed))"
