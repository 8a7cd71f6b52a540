#!/usr/bin/env python3
"""Benchmark: pushing one image to a local registry, imgbake vs skopeo, alternating rounds.

A local docker-registry (Debian's distribution 2.8) is started on 127.0.0.1. An image holding
one file of --size random bytes is built into a scratch store with the file builder. Each round
pushes it to a fresh repository with `imgbake push` and with `skopeo copy oci:STORE:IMG
docker://…` (what skopeo reads from our store), then re-pushes it with imgbake to the same
repository (nothing changed: 0 blob bytes expected).

Prints median wall time and throughput of each, imgbake/skopeo throughput (target >= 1.0),
the re-push time (target < 0.5 s) and bytes, and imgbake's peak RSS while pushing (target <=
64 MiB), with the machine's load average at the start and the end (other work on the same
cores slows both tools). Not a test; docs/benchmarks.md records what was seen.

usage: bench/registry_push.py [--size 2G] [--rounds 3] [--imgbake PATH]
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from benchlib import ROOT, start_registry


def parse_size(text):
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    if text[-1].upper() in units:
        return int(text[:-1]) * units[text[-1].upper()]
    return int(text)


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            return next((int(l.split()[1]) for l in f if l.startswith("VmRSS:")), 0)
    except OSError:
        return 0


def measure(argv, env):
    t0 = time.monotonic()
    p = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    peak = 0
    while p.poll() is None:
        peak = max(peak, rss_kib(p.pid))
        time.sleep(0.01)
    wall = time.monotonic() - t0
    out, err = p.communicate()
    if p.returncode != 0:
        sys.stderr.write(err.decode(errors="replace")[-3000:])
        raise SystemExit(f"{argv[0]} failed with status {p.returncode}")
    return wall, peak, out.decode(errors="replace")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="2G")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--imgbake", default=os.path.join(ROOT, "build", "imgbake"))
    args = ap.parse_args()
    size = parse_size(args.size)
    for tool in ("docker-registry", "skopeo"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is not installed (tools/setup.sh installs it)")

    work = tempfile.mkdtemp(prefix="imgbake-bench-registry-")
    server, reg = start_registry(os.path.join(work, "registry"))
    env = dict(os.environ, IMGBAKE_HOME=os.path.join(work, "store"), IMGBAKE_CONFIG_HOME=os.path.join(work, "cfg"),
               TMPDIR=work)
    try:
        big = os.path.join(work, "big.bin")
        with open(big, "wb") as f:
            left = size
            while left:
                n = min(left, 16 << 20)
                f.write(os.urandom(n))
                left -= n
        template = os.path.join(work, "t.json")
        with open(template, "w") as f:
            json.dump({"builders": [{"type": "file", "name": "big", "source": big,
                                     "target": os.path.join(work, "out", "big.bin")}],
                       "imgbake": {"image": "big"}}, f)
        subprocess.run([args.imgbake, "build", template], env=env, check=True, stdout=subprocess.DEVNULL)
        os.remove(big)
        shutil.rmtree(os.path.join(work, "out"), ignore_errors=True)

        load_before = os.getloadavg()
        res = {"imgbake": [], "skopeo": [], "repush": []}
        for r in range(args.rounds):
            wall, peak, _ = measure([args.imgbake, "push", "big:1", f"{reg}/imgbake{r}/big", "--insecure-registry", reg,
                                     "--output", "json"], env)
            res["imgbake"].append((wall, peak))
            print(f"round {r + 1}: imgbake push {wall:6.2f} s  {size / wall / (1 << 20):7.1f} MiB/s  "
                  f"peak RSS {peak / 1024:6.1f} MiB", flush=True)
            # skopeo remembers where blobs are (its blob info cache) and would mount them from
            # an earlier round's repository: forget, so that both upload everything.
            for cache in ("/var/lib/containers/cache/blob-info-cache-v1.boltdb",
                          os.path.expanduser("~/.local/share/containers/cache/blob-info-cache-v1.boltdb")):
                if os.path.exists(cache):
                    os.remove(cache)
            wall, peak, _ = measure(["skopeo", "copy", "--quiet", "--dest-tls-verify=false",
                                     f"oci:{env['IMGBAKE_HOME']}:big:1", f"docker://{reg}/skopeo{r}/big:1"], env)
            res["skopeo"].append((wall, peak))
            print(f"round {r + 1}: skopeo copy  {wall:6.2f} s  {size / wall / (1 << 20):7.1f} MiB/s  "
                  f"peak RSS {peak / 1024:6.1f} MiB", flush=True)
            wall, peak, out = measure([args.imgbake, "push", "big:1", f"{reg}/imgbake{r}/big", "--insecure-registry",
                                       reg, "--output", "json"], env)
            sent = json.loads(out.strip().splitlines()[-1])["blob_bytes"]
            res["repush"].append((wall, sent))
            print(f"round {r + 1}: re-push      {wall:6.3f} s  blob bytes sent {sent}", flush=True)
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(work, ignore_errors=True)

    load_after = os.getloadavg()
    med = lambda xs: statistics.median(xs)
    iw, sw = med(w for w, _ in res["imgbake"]), med(w for w, _ in res["skopeo"])
    print()
    print(f"image size             {size / (1 << 20):.0f} MiB, {args.rounds} rounds")
    print("load average (1/5/15)  at start " + " ".join(f"{x:.2f}" for x in load_before) +
          ", at end " + " ".join(f"{x:.2f}" for x in load_after) + f" ({os.cpu_count()} cores)")
    print(f"imgbake push           {iw:.2f} s  {size / iw / (1 << 20):.1f} MiB/s  "
          f"peak RSS {max(m for _, m in res['imgbake']) / 1024:.1f} MiB (target <= 64)")
    print(f"skopeo copy            {sw:.2f} s  {size / sw / (1 << 20):.1f} MiB/s")
    print(f"throughput imgbake/skopeo {sw / iw:.3f} (target >= 1.0)")
    print(f"re-push                {med(w for w, _ in res['repush']):.3f} s (target < 0.5), "
          f"blob bytes {max(b for _, b in res['repush'])} (target 0)")


if __name__ == "__main__":
    main()
