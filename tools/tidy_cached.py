#!/usr/bin/python3
"""clang-tidy over the given files, skipping a file whose clean verdict is already known.

Usage: tools/tidy_cached.py BUILD_DIR FILE... [-- EXTRA_CLANG_TIDY_ARGS...]

A clean verdict is recorded under a key that covers everything clang-tidy's result depends on:
clang-tidy's version, the .clang-tidy configuration, the extra arguments, the file's compile
command and the file as the preprocessor sees it with its comments kept (so every header it
includes, the NOLINT comments and the macros' values). Paths of the checkout are replaced by a
placeholder, so a fresh clone elsewhere (CI) finds the verdicts of this one, as ccache finds its
objects. Only clean verdicts are kept: a file with findings is checked again every time.

The verdicts live in $IMGBAKE_LINT_CACHE, else /var/cache/imgbake-lint when it can be written,
else BUILD_DIR/lint-cache. IMGBAKE_LINT_CACHE=off checks every file.
"""
import concurrent.futures
import hashlib
import json
import os
import shlex
import subprocess
import sys


def cache_dir(build):
    env = os.environ.get("IMGBAKE_LINT_CACHE")
    if env:
        return None if env == "off" else env
    for d in ("/var/cache/imgbake-lint", os.path.join(build, "lint-cache")):
        try:
            os.makedirs(d, exist_ok=True)
            if os.access(d, os.W_OK):
                return d
        except OSError:
            pass
    return None


def preprocess_command(entry):
    """The compile command with -c/-o FILE replaced by -E -P -C (output on stdout)."""
    args = entry.get("arguments") or shlex.split(entry["command"])
    out, skip = [], False
    for a in args:
        if skip:
            skip = False
            continue
        if a == "-o":
            skip = True
            continue
        if a == "-c":
            continue
        out.append(a)
    return out + ["-E", "-P", "-C"], args


def main():
    argv = sys.argv[1:]
    extra = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    if len(argv) < 1:
        print(__doc__, file=sys.stderr)
        return 2
    build, files = argv[0], argv[1:]
    root = os.path.realpath(os.path.join(os.path.dirname(__file__), ".."))
    build_abs = os.path.realpath(build)
    entries = {os.path.realpath(os.path.join(e["directory"], e["file"])): e
               for e in json.load(open(os.path.join(build, "compile_commands.json")))}
    version = subprocess.run(["clang-tidy", "--version"], capture_output=True, text=True).stdout
    config = open(os.path.join(root, ".clang-tidy"), "rb").read()
    cache = cache_dir(build)

    def normalize(data):
        return data.replace(build_abs.encode(), b"@BUILD@").replace(root.encode(), b"@ROOT@")

    def key_of(path):
        entry = entries.get(os.path.realpath(path))
        if entry is None:
            return None
        pre, args = preprocess_command(entry)
        res = subprocess.run(pre, cwd=entry["directory"], capture_output=True)
        if res.returncode != 0:
            return None
        h = hashlib.sha256()
        for part in (version.encode(), config, "\0".join(extra).encode(),
                     normalize(" ".join(args).encode()), normalize(res.stdout)):
            h.update(hashlib.sha256(part).digest())
        return h.hexdigest()

    def check(path):
        key = key_of(path) if cache else None
        if key and os.path.exists(os.path.join(cache, key)):
            return path, True, "", True
        res = subprocess.run(["clang-tidy", "-p", build, "--quiet",
                              "--extra-arg=-Wno-unknown-warning-option", *extra, path],
                             capture_output=True, text=True)
        ok = res.returncode == 0
        if ok and key:
            tmp = os.path.join(cache, f".{key}.{os.getpid()}")
            with open(tmp, "w") as f:
                f.write(os.path.relpath(os.path.realpath(path), root) + "\n")
            os.replace(tmp, os.path.join(cache, key))
        return path, ok, res.stdout + res.stderr, False

    failed, hits = [], 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        for path, ok, output, hit in pool.map(check, files):
            hits += hit
            if not ok:
                failed.append(path)
                sys.stdout.write(output)
    print(f"clang-tidy: {len(files)} files, {hits} known clean (cache {cache or 'off'}), "
          f"{len(files) - hits} checked, {len(failed)} with findings", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
