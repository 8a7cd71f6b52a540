#!/usr/bin/env python3
"""Benchmark: a second machine (an empty store) building from a registry-shared cache, against a
cold build, for the qemu builder (the tiny guest, three provisioners) and the rootfs builder
(a busybox tarball, three provisioners).

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

from benchlib import ROOT, start_registry, timed


def templates(work):
    guest = os.path.join(work, "guest")
    subprocess.run([os.path.join(ROOT, "tests", "fixtures", "make-tiny-guest.sh"), guest], check=True,
                   stdout=subprocess.DEVNULL)
    q = json.load(open(os.path.join(ROOT, "templates", "qemu-tiny.json")))
    q["provisioners"].append({"type": "shell", "inline": ["echo three > /tmp/three"]})
    qt = os.path.join(work, "qemu.json")
    json.dump(q, open(qt, "w"), indent=1)
    root = os.path.join(work, "bb-root")
    os.makedirs(os.path.join(root, "bin"))
    for d in ("etc", "tmp", "root", "proc", "dev"):
        os.makedirs(os.path.join(root, d))
    shutil.copy("/bin/busybox", os.path.join(root, "bin", "busybox"))
    for a in ("sh", "echo", "cat", "mkdir", "dd"):
        os.symlink("busybox", os.path.join(root, "bin", a))
    subprocess.run(["tar", "-C", root, "-czf", os.path.join(work, "bb.tar.gz"), "."], check=True)
    r = {"builders": [{"type": "rootfs", "source": "tar:" + os.path.join(work, "bb.tar.gz")}],
         "provisioners": [
             {"type": "shell", "inline": ["dd if=/dev/urandom of=/root/blob bs=1M count=16 2>/dev/null"]},
             {"type": "shell", "inline": ["mkdir -p /etc/app && echo two > /etc/app/two"]},
             {"type": "shell", "inline": ["echo three > /etc/app/three"]}],
         "imgbake": {"image": "bench"}}
    rt = os.path.join(work, "rootfs.json")
    json.dump(r, open(rt, "w"), indent=1)
    return {"qemu": (qt, ["-var", f"dir={guest}"]), "rootfs": (rt, [])}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--imgbake", default=os.path.join(ROOT, "build", "imgbake"))
    args = ap.parse_args()
    args.imgbake = os.path.abspath(args.imgbake)
    work = tempfile.mkdtemp(prefix="imgbake-bench-regcache-")
    proc = None
    res = {}
    try:
        proc, reg = start_registry(os.path.join(work, "registry"))
        env = dict(os.environ, IMGBAKE_CONFIG_HOME=os.path.join(work, "cfg"))
        env.pop("IMGBAKE_QEMU_ACCEL", None)
        flags = ["--insecure-registry", reg]
        for name, (template, extra) in templates(work).items():
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
        shutil.rmtree(work, ignore_errors=True)

    print()
    for name in ("qemu", "rootfs"):
        cold = statistics.median(res[(name, "cold")])
        shared = statistics.median(res[(name, "shared")])
        print(f"{name:6s} cold {cold:6.2f} s  shared {shared:6.2f} s  shared/cold {shared / cold:.3f}")


if __name__ == "__main__":
    main()
