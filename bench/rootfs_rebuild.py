#!/usr/bin/env python3
"""Benchmark: the rootfs builder's cache. A first build vs a rebuild with nothing changed.

The template is templates/rootfs-debian.json (debootstrap minbase, `apt-get install hello`, a
file), built from a local apt mirror on 127.0.0.1 (tests/fixtures/apt-mirror.sh over the .debs
tools/fetch-test-debs.sh fetched). Each round uses a fresh store: a first build (every step
runs), then the same build again (every step a cache hit), then one with the last provisioner
changed (only it reruns). Prints the medians and the rebuild/first ratio (target <= 2 %).

Not a test; docs/benchmarks.md records what was seen.

usage: bench/rootfs_rebuild.py [--rounds 2] [--imgbake PATH] [--debs DIR]
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from benchlib import ROOT, mirror_vars, start_mirror
TEMPLATE = os.path.join(ROOT, "templates", "rootfs-debian.json")


def build(imgbake, env, mirror, cwd, motd="baked by imgbake"):
    t0 = time.monotonic()
    p = subprocess.run([imgbake, "build"] + mirror_vars(mirror) + ["-var", f"motd={motd}", TEMPLATE],
                       env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    dt = time.monotonic() - t0
    if p.returncode != 0:
        sys.exit(f"build failed:\n{p.stdout[-3000:]}")
    return dt, p.stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--imgbake", default=os.path.join(ROOT, "build", "imgbake"))
    ap.add_argument("--debs", default=os.environ.get("IMGBAKE_TEST_DEBS", "/var/cache/imgbake-test-debs"))
    args = ap.parse_args()
    args.imgbake = os.path.abspath(args.imgbake)  # the builds run in their own directories
    scratch = tempfile.mkdtemp(prefix="imgbake-bench-rootfs.")
    url, pid = start_mirror(args.debs, os.path.join(scratch, "mirror"))
    first, again, last_changed = [], [], []
    try:
        for r in range(args.rounds):
            cwd = os.path.join(scratch, f"r{r}")
            os.makedirs(cwd)
            env = dict(os.environ, IMGBAKE_HOME=os.path.join(cwd, "store"),
                       IMGBAKE_CONFIG_HOME=os.path.join(cwd, "config"), SOURCE_DATE_EPOCH="1700000000")
            dt, _ = build(args.imgbake, env, url, cwd)
            first.append(dt)
            dt, out = build(args.imgbake, env, url, cwd)
            if out.count("cached: ") != 2 or "unchanged:" not in out:
                sys.exit(f"the rebuild was not all cache hits:\n{out[-3000:]}")
            again.append(dt)
            dt, out = build(args.imgbake, env, url, cwd, motd="changed")
            last_changed.append(dt)
            print(f"round {r + 1}: first {first[-1]:.2f} s, unchanged {again[-1]:.3f} s, "
                  f"last step changed {last_changed[-1]:.2f} s", flush=True)
    finally:
        subprocess.run(["kill", str(pid)], check=False)
        shutil.rmtree(scratch, ignore_errors=True)
    f, a, l = statistics.median(first), statistics.median(again), statistics.median(last_changed)
    print(f"\nfirst build (median of {args.rounds}):  {f:.2f} s")
    print(f"unchanged rebuild:                {a:.3f} s  = {100 * a / f:.2f} % of the first (target <= 2 %)")
    print(f"last provisioner changed:         {l:.2f} s  = {100 * l / f:.1f} % of the first")
    print(f"load: {os.getloadavg()}")


if __name__ == "__main__":
    main()
