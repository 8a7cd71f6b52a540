#!/usr/bin/env python3
"""Benchmark: writing a whole tree as one gzip layer, imgbake's layer writer vs tar | gzip -1.

  imgbake   layer::write_tree (tar + gzip level 1 + sha256 of both streams, written to a file),
            run through the bench driver bench/layer_write_tree.cpp: imgbake_bench_layers DIR FILE
            [COMPRESSION]. The script builds it first (`ninja -C BUILD imgbake_bench_layers`; the
            target is not part of a plain build) unless --bench names a binary.
  baseline  bash -o pipefail -c 'tar -C DIR -c . | gzip -1 | sha256sum' (three processes, so
            reading, compressing and hashing overlap; the compressed bytes are not written)

The tree is --tree DIR, or a generated one of about --size MB (default 300) with mixed file
sizes: many small text files, some medium half-compressible files, a few large ones. Runs are
alternated for --rounds rounds (default 3) after one warm-up run of each (page cache).
Prints, per tool, the median time and throughput (MB of file content per second) and
imgbake/baseline throughput (target >= 0.9). Not a test; docs/layers.md records what was seen.

usage: bench/layer_export.py [--tree DIR | --size MB] [--rounds N] [--build DIR | --bench PATH]
                             [--compression gzip]
"""
import argparse
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORDS = ("image layer build root filesystem package config service user network kernel module "
         "library binary script archive compress digest manifest registry template variable").split()


def generate_tree(path, size_mb):
    """A deterministic tree of about size_mb MB: 40% small text, 35% medium, 25% large."""
    rng = random.Random(5)
    text = " ".join(rng.choice(WORDS) for _ in range(300000)).encode()  # ~2.4 MB pool of text
    total = size_mb << 20

    def text_bytes(n):
        start = rng.randrange(0, len(text) - n) if n < len(text) else 0
        return (text * (n // len(text) + 1))[start:start + n] if n >= len(text) else text[start:start + n]

    def mixed_bytes(n):  # half text, half random: like binaries and compressed assets
        half = n // 2
        return text_bytes(half) + os.urandom(n - half)

    written, i = 0, 0
    plan = [(0.40, lambda: rng.randint(200, 16 << 10), text_bytes),
            (0.35, lambda: rng.randint(64 << 10, 1 << 20), mixed_bytes),
            (0.25, lambda: rng.randint(8 << 20, 24 << 20), mixed_bytes)]
    for share, size_of, content in plan:
        budget = written + int(total * share)
        while written < budget:
            d = os.path.join(path, f"d{i % 37:02d}", f"s{i % 211:03d}")
            os.makedirs(d, exist_ok=True)
            n = size_of()
            with open(os.path.join(d, f"f{i:06d}.dat"), "wb") as f:
                f.write(content(n))
            written += n
            i += 1
    return i


def content_bytes(path):
    total = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            p = os.path.join(dirpath, name)
            if os.path.isfile(p) and not os.path.islink(p):
                total += os.lstat(p).st_size
    return total


def run_imgbake(bench, tree, out, compression):
    p = subprocess.run([bench, tree, out, compression], capture_output=True, text=True)
    m = re.search(r"write_tree_seconds=([0-9.e+-]+) bytes=(\d+)", p.stdout)
    if p.returncode != 0 or not m:
        sys.stderr.write(p.stdout[-3000:] + p.stderr[-3000:])
        raise SystemExit(f"{bench} failed with status {p.returncode}")
    os.unlink(out)
    return float(m.group(1)), int(m.group(2))


def build_bench(build_dir):
    """Builds the imgbake_bench_layers target (EXCLUDE_FROM_ALL) in a configured build directory."""
    if not os.path.exists(os.path.join(build_dir, "build.ninja")):
        raise SystemExit(f"{build_dir} is not a configured build directory (cmake -S . -B {build_dir} -G Ninja "
                         "-DCMAKE_BUILD_TYPE=RelWithDebInfo), or pass --build DIR or --bench PATH")
    p = subprocess.run(["ninja", "-C", build_dir, "imgbake_bench_layers"], capture_output=True, text=True)
    if p.returncode != 0:
        sys.stderr.write(p.stdout[-3000:] + p.stderr[-3000:])
        raise SystemExit(f"ninja -C {build_dir} imgbake_bench_layers failed with status {p.returncode}")
    return os.path.join(build_dir, "bench", "imgbake_bench_layers")


def run_baseline(tree):
    t0 = time.monotonic()
    p = subprocess.run(["bash", "-o", "pipefail", "-c", f"tar -C '{tree}' -c . | gzip -1 | sha256sum"],
                       capture_output=True, text=True)
    wall = time.monotonic() - t0
    if p.returncode != 0:
        sys.stderr.write(p.stderr[-3000:])
        raise SystemExit(f"baseline failed with status {p.returncode}")
    return wall


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tree", help="an existing directory to export (default: a generated tree)")
    ap.add_argument("--size", type=int, default=300, help="MB of the generated tree")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"),
                    help="the build directory to build imgbake_bench_layers in (default: build/)")
    ap.add_argument("--bench", help="an imgbake_bench_layers binary to run instead of building one")
    ap.add_argument("--compression", default="gzip", choices=["gzip", "zstd", "none"],
                    help="imgbake's compression (the baseline is always gzip -1)")
    args = ap.parse_args()
    bench = args.bench or build_bench(args.build)
    if not os.access(bench, os.X_OK):
        raise SystemExit(f"{bench} is not an executable")

    work = tempfile.mkdtemp(prefix="imgbake-layer-bench-")
    try:
        tree = args.tree
        if not tree:
            tree = os.path.join(work, "tree")
            t0 = time.monotonic()
            files = generate_tree(tree, args.size)
            print(f"generated {files} files in {time.monotonic() - t0:.1f} s", flush=True)
        mb = content_bytes(tree) / 1e6
        print(f"tree {tree}: {mb:.1f} MB of file content", flush=True)
        out = os.path.join(work, "layer.tar.gz")
        run_imgbake(bench, tree, out, args.compression)  # warm-up: page cache, both ways
        run_baseline(tree)
        results = {"imgbake": [], "baseline": []}
        layer_bytes = 0
        for r in range(args.rounds):
            secs, layer_bytes = run_imgbake(bench, tree, out, args.compression)
            results["imgbake"].append(secs)
            base = run_baseline(tree)
            results["baseline"].append(base)
            print(f"round {r + 1}: imgbake {secs:6.2f} s ({mb / secs:6.1f} MB/s)   "
                  f"baseline {base:6.2f} s ({mb / base:6.1f} MB/s)", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    med = {t: statistics.median(v) for t, v in results.items()}
    print()
    print(f"{'tool':9s} {'median':>9s} {'throughput':>12s}")
    for t, secs in med.items():
        print(f"{t:9s} {secs:7.2f} s {mb / secs:8.1f} MB/s")
    print(f"layer {layer_bytes / 1e6:.1f} MB ({args.compression})")
    print(f"imgbake/baseline throughput {med['baseline'] / med['imgbake']:.3f}  (target >= 0.9)")


if __name__ == "__main__":
    main()
