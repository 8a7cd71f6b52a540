#!/usr/bin/env bash
# Installs what imgbake needs from Debian 12 packages (as root) and builds it into build/.
set -euo pipefail
cd "$(dirname "$0")/.."
packages=(
  cmake ninja-build g++ ccache pkg-config git python3 procps skopeo umoci qemu-utils qemu-system-x86 xorriso genisoimage busybox-static dropbear-bin openssh-sftp-server cpio gzip e2fsprogs xz-utils zstd openssh-client openssh-server docker-registry apache2-utils packer
  bubblewrap debootstrap apt-utils curl podman runc libxml2-utils
  libcli11-dev nlohmann-json3-dev libspdlog-dev libarchive-dev libcurl4-openssl-dev libssl-dev libssh-dev libseccomp-dev
  libsqlite3-dev libgtest-dev libgmock-dev libicu-dev libcrypt-dev clang-format clang-tidy clang libclang-rt-14-dev
  golang-github-hashicorp-hcl-v2-dev golang-go awscli python3-botocore
  puppet ansible-core ruby-chef-config python3-testinfra ruby-serverspec
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing packages: ${missing[*]} (run as root, or: sudo apt-get install ${missing[*]})" >&2
    exit 1
  fi
  apt-get update -qq || true  # the machine may have current lists already; the install says if not
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# The .debs of the local apt mirror the rootfs tests install from (tests talk only to 127.0.0.1).
if [ "$(id -u)" -eq 0 ]; then
  tools/fetch-test-debs.sh "${IMGBAKE_TEST_DEBS:-/var/cache/imgbake-test-debs}"
else
  echo "setup: not root: skipping tools/fetch-test-debs.sh (the debootstrap e2e test needs it)" >&2
fi
# --no-build: packages only (tools/test.sh builds its own ASan+UBSan tree, build-asan/).
[ "${1:-}" = --no-build ] && exit 0
# Warnings are errors in the checked build (tools/test.sh, build-asan/), not here: GCC's -O2-only
# diagnostics have false positives (GCC bug 105329 stopped this build once), and a user's build must
# not fail on them. They are still printed.
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DIMGBAKE_WERROR=OFF >/dev/null
# The binary only; `cmake --build build` builds the unit tests here too.
cmake --build build --target imgbake
