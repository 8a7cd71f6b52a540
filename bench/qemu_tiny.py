#!/usr/bin/env python3
"""Benchmark: one full bake of the tiny guest, three ways, alternating, several rounds.

  imgbake  templates/qemu-tiny.json (accelerator tcg, same provisioners as packer-tiny.json),
           --no-cache: every round is a full bake (bench/qemu_cache.py measures the step cache)
  packer   ../shared/bench/packer-tiny.json with Packer 1.6.6 (apt-get install packer)
  hand     ../shared/bench/hand-baseline-tiny.sh: the same work by hand, the floor

Prints, per tool, the median wall time and the median peak RSS of the tool's own processes
(qemu excluded: the same guest runs under all three), then imgbake/hand and imgbake/packer.
Not a test: numbers depend on the machine; docs/benchmarks.md records what was seen.

usage: bench/qemu_tiny.py [--rounds N] [--imgbake PATH] [--only imgbake,packer,hand]
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(ROOT, "..", "shared", "bench")


def tree_rss_kib(root_pid):
    """Resident KiB of root_pid and its descendants, qemu excluded."""
    children = {}
    names = {}
    rss = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                st = f.read()
            name = st[st.index("(") + 1:st.rindex(")")]
            ppid = int(st[st.rindex(")") + 2:].split()[1])
            with open(f"/proc/{d}/status") as f:
                kib = next((int(l.split()[1]) for l in f if l.startswith("VmRSS:")), 0)
        except (OSError, ValueError, StopIteration):
            continue
        pid = int(d)
        children.setdefault(ppid, []).append(pid)
        names[pid] = name
        rss[pid] = kib
    total, stack = 0, [root_pid]
    while stack:
        p = stack.pop()
        if not names.get(p, "").startswith("qemu-system"):
            total += rss.get(p, 0)
        stack.extend(children.get(p, []))
    return total


def measure(argv, cwd, env):
    t0 = time.monotonic()
    p = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    peak = 0
    out = []
    os.set_blocking(p.stdout.fileno(), False)
    while p.poll() is None:
        peak = max(peak, tree_rss_kib(p.pid))
        chunk = p.stdout.read()
        if chunk:
            out.append(chunk)
        time.sleep(0.02)
    wall = time.monotonic() - t0
    rest = p.stdout.read()
    if rest:
        out.append(rest)
    if p.returncode != 0:
        sys.stderr.write(b"".join(out).decode(errors="replace")[-3000:])
        raise SystemExit(f"{argv[0]} failed with status {p.returncode}")
    return wall, peak


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--imgbake", default=os.path.join(ROOT, "build", "imgbake"))
    ap.add_argument("--only", default="imgbake,packer,hand")
    args = ap.parse_args()
    tools = args.only.split(",")
    if "packer" in tools and not shutil.which("packer"):
        raise SystemExit("packer is not installed (apt-get install packer), or leave it out with --only")

    work = tempfile.mkdtemp(prefix="imgbake-bench-")
    guest = os.path.join(work, "guest")
    subprocess.run([os.path.join(ROOT, "tests", "fixtures", "make-tiny-guest.sh"), guest], check=True,
                   stdout=subprocess.DEVNULL)
    kernel = os.path.join(guest, "vmlinuz")
    env = dict(os.environ, IMGBAKE_HOME=os.path.join(work, "store"), IMGBAKE_CONFIG_HOME=os.path.join(work, "cfg"),
               PACKER_CACHE_DIR=os.path.join(work, "packer_cache"), CHECKPOINT_DISABLE="1")
    env.pop("IMGBAKE_QEMU_ACCEL", None)
    results = {t: [] for t in tools}
    try:
        for r in range(args.rounds):
            for tool in tools:
                cwd = os.path.join(work, f"{tool}-{r}")
                os.makedirs(cwd)
                if tool == "imgbake":
                    argv = [args.imgbake, "build", "--no-store", "--no-cache", "-var", f"dir={guest}", "-var", f"kernel={kernel}",
                            os.path.join(ROOT, "templates", "qemu-tiny.json")]
                elif tool == "packer":
                    shutil.rmtree(os.path.join(guest, "out-packer"), ignore_errors=True)
                    argv = ["packer", "build", "-var", f"dir={guest}", "-var", f"kernel={kernel}",
                            os.path.join(SHARED, "packer-tiny.json")]
                else:
                    argv = ["bash", os.path.join(SHARED, "hand-baseline-tiny.sh"), guest]
                    env["KERNEL"] = kernel
                wall, rss = measure(argv, cwd, env)
                results[tool].append((wall, rss))
                print(f"round {r + 1}: {tool:8s} {wall:6.2f} s  {rss / 1024:7.1f} MiB", flush=True)
                shutil.rmtree(cwd, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    med = {t: (statistics.median(w for w, _ in v), statistics.median(m for _, m in v)) for t, v in results.items()}
    print()
    print(f"{'tool':8s} {'median wall':>12s} {'median peak RSS (no qemu)':>27s}")
    for t, (w, m) in med.items():
        print(f"{t:8s} {w:10.2f} s {m / 1024:23.1f} MiB")
    if "imgbake" in med and "hand" in med:
        print(f"imgbake/hand   wall {med['imgbake'][0] / med['hand'][0]:.3f}  (target <= 1.05)")
    if "imgbake" in med and "packer" in med:
        print(f"imgbake/packer wall {med['imgbake'][0] / med['packer'][0]:.3f}  "
              f"RSS {med['imgbake'][1] / max(med['packer'][1], 1):.3f}")


if __name__ == "__main__":
    main()
