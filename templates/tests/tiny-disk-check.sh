#!/bin/sh
# A test script for templates/qemu-disk-tested.json: runs in the booted image; exit 0 = passed.
set -e
[ -d /etc/imgbake-demo ] || { echo "no /etc/imgbake-demo" >&2; exit 1; }
grep -q . /etc/imgbake-demo/greeting || { echo "the greeting is empty" >&2; exit 1; }
