#!/usr/bin/env bash
# Compatibility with the real thing: over every template of the Packer corpus,
# `imgbake validate --syntax-only` must give Packer 1.6.6's valid/invalid verdict, and
# `imgbake inspect` must list the same variables, builders (name/type) and
# provisioner types in order (../shared/corpus/packer-1.6.6-verdicts.tsv).
set -u
IMGBAKE=${IMGBAKE:-imgbake}
src=${IMGBAKE_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
corpus=${IMGBAKE_CORPUS_DIR:-$src/../shared/corpus}
tsv=$corpus/packer-1.6.6-verdicts.tsv
if [ ! -f "$tsv" ]; then
  echo "corpus not found at $corpus (set IMGBAKE_CORPUS_DIR)" >&2
  exit 1
fi

python3 - "$IMGBAKE" "$corpus" "$tsv" <<'PY'
import csv, json, subprocess, sys
imgbake, corpus, tsv = sys.argv[1:4]
rows = list(csv.DictReader(open(tsv), delimiter="\t"))
failures, checked = [], 0
for row in rows:
    f = row["file"]
    path = f"{corpus}/packer-json/{f}"
    r = subprocess.run([imgbake, "validate", "--syntax-only", path], capture_output=True, text=True)
    verdict = "valid" if r.returncode == 0 else "invalid"
    checked += 1
    if verdict != row["syntax_only"]:
        failures.append(f"{f}: packer says {row['syntax_only']}, imgbake says {verdict}: {r.stderr.strip()[:300]}")
        continue
    if verdict == "invalid":
        if r.returncode != 1:
            failures.append(f"{f}: invalid template should exit 1, got {r.returncode}")
        # Every error must name file:line:col or at least the file.
        if path not in r.stderr:
            failures.append(f"{f}: error does not name the file: {r.stderr.strip()[:200]}")
        continue
    r = subprocess.run([imgbake, "inspect", "--output", "json", path], capture_output=True, text=True)
    if r.returncode != 0:
        failures.append(f"{f}: inspect failed: {r.stderr.strip()[:300]}")
        continue
    j = json.loads(r.stdout)
    builders = " ".join(sorted(f"{b['name']}/{b['type']}" for b in j["builders"]))
    provs = " ".join(p["type"] for p in j["provisioners"])
    variables = " ".join(sorted(v["name"] for v in j["variables"]))
    for what, ours, theirs in (("builders", builders, row["builders(name/type)"]),
                               ("provisioners", provs, row["provisioners(type, in order)"]),
                               ("variables", variables, row["variables"])):
        if ours != theirs:
            failures.append(f"{f}: {what} differ:\n  packer:  {theirs}\n  imgbake: {ours}")
for line in failures:
    print("FAIL", line)
print(f"corpus parity: {checked - len(set(l.split(':')[0] for l in failures))}/{checked} templates agree with Packer 1.6.6")
sys.exit(1 if failures else 0)
PY
