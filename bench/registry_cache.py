#!/usr/bin/env python3
"""Benchmark: a second machine (an empty store) building from a registry-shared cache, against a
cold build, for the qemu builder (the tiny guest, three provisioners) and the rootfs builder
(templates/rootfs-debian.json: debootstrap and apt-get from the tests' local apt mirror).

Setup per builder: machine A builds once with --cache-to (Debian's docker-registry on 127.0.0.1).
Each round, alternating the order:
  cold    a fresh store, no registry: every step runs (qemu boots)
  shared  a fresh store with --cache-from: the entries come from the registry (qemu starts no VM)
Prints the medians and shared/cold. Not a test; docs/benchmarks.md records what was seen.

usage: bench/registry_cache.py [--rounds N] [--imgbake PATH]
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile

from benchlib import ROOT, mirror_vars, start_mirror, start_registry, timed


def templates(work, url):
    guest = os.path.join(work, "guest")
    subprocess.run([os.path.join(ROOT, "tests", "fixtures", "make-tiny-guest.sh"), guest], check=True,
                   stdout=subprocess.DEVNULL)
    q = json.load(open(os.path.join(ROOT, "templates", "qemu-tiny.json")))
    q["provisioners"].append({"type": "shell", "inline": ["echo three > /tmp/three"]})
    qt = os.path.join(work, "qemu.json")
    json.dump(q, open(qt, "w"), indent=1)
    # rootfs: templates/rootfs-debian.json (debootstrap minbase, apt-get install hello, a file)
    # from the tests' local apt mirror.
    rt = os.path.join(ROOT, "templates", "rootfs-debian.json")
    return {"qemu": (qt, ["-var", f"dir={guest}"]), "rootfs": (rt, mirror_vars(url))}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--imgbake", default=os.path.join(ROOT, "build", "imgbake"))
    ap.add_argument("--debs", default=os.environ.get("IMGBAKE_TEST_DEBS", "/var/cache/imgbake-test-debs"))
    args = ap.parse_args()
    args.imgbake = os.path.abspath(args.imgbake)
    work = tempfile.mkdtemp(prefix="imgbake-bench-regcache-")
    proc = None
    mirror_pid = None
    res = {}
    try:
        proc, reg = start_registry(os.path.join(work, "registry"))
        url, mirror_pid = start_mirror(args.debs, os.path.join(work, "mirror"))
        env = dict(os.environ, IMGBAKE_CONFIG_HOME=os.path.join(work, "cfg"), SOURCE_DATE_EPOCH="1700000000")
        env.pop("IMGBAKE_QEMU_ACCEL", None)
        flags = ["--insecure-registry", reg]
        for name, (template, extra) in templates(work, url).items():
            repo = f"{reg}/bench/{name}"
            base = [args.imgbake, "build", "-force"] + extra
            env["IMGBAKE_HOME"] = os.path.join(work, f"store-a-{name}")
            cwd = os.path.join(work, f"a-{name}")
            os.makedirs(cwd)
            wall, out = timed(base + ["--cache-to", repo] + flags + [template], cwd, env)
            print(f"{name}: machine A (cold, exporting) {wall:6.2f} s", flush=True)
            for r in range(args.rounds):
                order = ("cold", "shared") if r % 2 == 0 else ("shared", "cold")
                for kind in order:
                    env["IMGBAKE_HOME"] = os.path.join(work, f"store-{name}-{kind}-{r}")
                    cwd = os.path.join(work, f"{name}-{kind}-{r}")
                    os.makedirs(cwd)
                    argv = base + (["--cache-from", repo] + flags if kind == "shared" else []) + [template]
                    wall, out = timed(argv, cwd, env)
                    if kind == "shared" and ("running inline script" in out or "starting qemu" in out):
                        raise SystemExit(f"{name}: the shared-cache build ran a step:\n" + out[-2000:])
                    res.setdefault((name, kind), []).append(wall)
                    print(f"{name}: round {r + 1}: {kind:6s} {wall:6.2f} s", flush=True)
                    shutil.rmtree(env["IMGBAKE_HOME"], ignore_errors=True)
    finally:
        if proc:
            proc.terminate()
            proc.wait()
        if mirror_pid:
            subprocess.run(["kill", str(mirror_pid)], check=False)
        shutil.rmtree(work, ignore_errors=True)

    print()
    for name in ("qemu", "rootfs"):
        cold = statistics.median(res[(name, "cold")])
        shared = statistics.median(res[(name, "shared")])
        print(f"{name:6s} cold {cold:6.2f} s  shared {shared:6.2f} s  shared/cold {shared / cold:.3f}")


if __name__ == "__main__":
    main()
