#!/usr/bin/env python3
"""Benchmark: the qemu builder's step cache on the tiny guest, against Packer 1.6.6.

Each round, alternating:
  full       imgbake build in an empty store (boots, runs the three provisioners, checkpoints)
  unchanged  the same build again in that store (target: <= 2 % of full; no qemu starts)
  last       the last provisioner changed (-var last=ROUND) (target: <= that step + shutdown +
             convert + 1 s: the VM resumes from the checkpoint before it, no boot)
  packer     Packer 1.6.6 on the same template, which rebuilds everything every time

The template is templates/qemu-tiny.json with a fourth provisioner that prints {{user `last`}}.
Prints the medians and the ratios. Not a test; docs/benchmarks.md records what was seen.

usage: bench/qemu_cache.py [--rounds N] [--imgbake PATH] [--no-packer]
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile

from benchlib import ROOT, timed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--imgbake", default=os.path.join(ROOT, "build", "imgbake"))
    ap.add_argument("--no-packer", action="store_true")
    args = ap.parse_args()
    args.imgbake = os.path.abspath(args.imgbake)
    packer = not args.no_packer
    if packer and not shutil.which("packer"):
        raise SystemExit("packer is not installed (apt-get install packer), or give --no-packer")

    work = tempfile.mkdtemp(prefix="imgbake-bench-cache-")
    guest = os.path.join(work, "guest")
    subprocess.run([os.path.join(ROOT, "tests", "fixtures", "make-tiny-guest.sh"), guest], check=True,
                   stdout=subprocess.DEVNULL)
    t = json.load(open(os.path.join(ROOT, "templates", "qemu-tiny.json")))
    t["variables"]["last"] = "0"
    t["provisioners"].append({"type": "shell", "inline": ["echo last={{user `last`}}"]})
    template = os.path.join(work, "cached-tiny.json")
    json.dump(t, open(template, "w"), indent=1)
    env = dict(os.environ, IMGBAKE_CONFIG_HOME=os.path.join(work, "cfg"), CHECKPOINT_DISABLE="1",
               PACKER_CACHE_DIR=os.path.join(work, "packer_cache"))
    env.pop("IMGBAKE_QEMU_ACCEL", None)
    res = {k: [] for k in ("full", "unchanged", "last", "packer")}
    try:
        for r in range(args.rounds):
            store = os.path.join(work, f"store-{r}")
            env["IMGBAKE_HOME"] = store
            base = [args.imgbake, "build", "--no-store", "-force", "-var", f"dir={guest}"]
            for kind, extra in (("full", []), ("unchanged", []), ("last", ["-var", f"last={r + 1}"])):
                cwd = os.path.join(work, f"{kind}-{r}")
                os.makedirs(cwd)
                wall, out = timed(base + extra + [template], cwd, env)
                if kind == "unchanged" and "starting qemu" in out:
                    raise SystemExit("the unchanged rebuild started qemu")
                if kind == "last":
                    if "resuming the VM after step 3 of 4" not in out:
                        raise SystemExit("the last-step rebuild did not resume after step 3:\n" + out[-2000:])
                res[kind].append(wall)
                print(f"round {r + 1}: {kind:9s} {wall:6.2f} s", flush=True)
            if packer:
                cwd = os.path.join(work, f"packer-{r}")
                os.makedirs(cwd)
                pt = dict(t)
                pt.pop("description", None)
                pt["builders"] = [dict(t["builders"][0], output_directory=os.path.join(cwd, "out"))]
                json.dump(pt, open(os.path.join(cwd, "t.json"), "w"))
                wall, _ = timed(["packer", "build", "-var", f"dir={guest}", "t.json"], cwd, env)
                res["packer"].append(wall)
                print(f"round {r + 1}: {'packer':9s} {wall:6.2f} s", flush=True)
            shutil.rmtree(store, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    med = {k: statistics.median(v) for k, v in res.items() if v}
    print()
    for k, v in med.items():
        print(f"{k:9s} median {v:6.2f} s")
    print(f"unchanged/full {med['unchanged'] / med['full']:.3f}  (target <= 0.02)")
    print(f"last/full      {med['last'] / med['full']:.3f}")
    if "packer" in med:
        print(f"full/packer    {med['full'] / med['packer']:.3f}")
        print(f"last/packer    {med['last'] / med['packer']:.3f}")
        print(f"unchanged/packer {med['unchanged'] / med['packer']:.3f}")


if __name__ == "__main__":
    main()
