#!/usr/bin/env bash
# HCL2 compatibility with the real thing: every template of the Packer JSON corpus
# (../shared/corpus/packer-json) is converted with Packer 1.6.6's own `packer hcl2_upgrade`;
# on each result `imgbake validate --syntax-only` must give Packer's `validate -syntax-only`
# verdict, and where both accept it, `imgbake inspect` must list the same input variables and
# sources (TYPE.NAME) as `packer inspect`. Packer is run live (Debian's packer package).
set -u
IMGBAKE=${IMGBAKE:-imgbake}
src=${IMGBAKE_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
corpus=${IMGBAKE_CORPUS_DIR:-$src/../shared/corpus}
if [ ! -d "$corpus/packer-json" ]; then
  echo "corpus not found at $corpus (set IMGBAKE_CORPUS_DIR)" >&2
  exit 1
fi
command -v packer >/dev/null || { echo "packer (Debian's packer package, 1.6.6) is needed" >&2; exit 1; }
work=$(mktemp -d "${TMPDIR:-/tmp}/imgbake-hcl-parity.XXXXXX")
trap 'rm -rf "$work"' EXIT
export CHECKPOINT_DISABLE=1 HOME="$work/home" PACKER_CACHE_DIR="$work/packer-cache"
mkdir -p "$HOME"

python3 - "$IMGBAKE" "$corpus/packer-json" "$work" <<'PY'
import glob, json, os, re, subprocess, sys
imgbake, corpus, work = sys.argv[1:4]
failures, checked, inspected, sources_compared = [], 0, 0, 0

def packer(*args):
    # In the scratch directory: a Packer that panics writes crash.log into its working directory.
    return subprocess.run(["packer", *args], capture_output=True, text=True, timeout=120, cwd=work)

for js in sorted(glob.glob(f"{corpus}/*.json")):
    name = os.path.basename(js)[:-5]
    d = f"{work}/{name}"
    os.makedirs(d)
    hcl = f"{d}/{name}.pkr.hcl"
    packer("hcl2_upgrade", f"-output-file={hcl}", js)
    if not os.path.exists(hcl) or os.path.getsize(hcl) == 0:
        continue  # hcl2_upgrade could not convert it: nothing to compare
    checked += 1
    theirs = "valid" if packer("validate", "-syntax-only", hcl).returncode == 0 else "invalid"
    r = subprocess.run([imgbake, "validate", "--syntax-only", hcl], capture_output=True, text=True)
    ours = "valid" if r.returncode == 0 else "invalid"
    if ours != theirs:
        failures.append(f"{name}: packer says {theirs}, imgbake says {ours}: {r.stderr.strip()[:300]}")
        continue
    if ours == "invalid":
        if not re.search(re.escape(hcl) + r":\d+:\d+: ", r.stderr):
            failures.append(f"{name}: the error does not name file:line:col: {r.stderr.strip()[:200]}")
        continue
    p = packer("inspect", hcl)
    r = subprocess.run([imgbake, "inspect", "--output", "json", hcl], capture_output=True, text=True)
    if p.returncode != 0 or r.returncode != 0:
        if (p.returncode == 0) != (r.returncode == 0):
            failures.append(f"{name}: inspect: packer exit {p.returncode}, imgbake exit {r.returncode}: "
                            f"{(r.stderr or p.stderr).strip()[:300]}")
        continue
    inspected += 1
    pvars = sorted(set(re.findall(r"^var\.([\w-]+):", p.stdout, re.M)))
    psources = sorted(set(l.strip() for l in re.findall(r"^      (\S+)\s*$", p.stdout, re.M) if "." in l))
    j = json.loads(r.stdout)
    ivars = sorted(v["name"] for v in j["variables"])
    isources = sorted(set(b["name"] for b in j["builders"]))
    if pvars != ivars:
        failures.append(f"{name}: variables differ:\n  packer:  {pvars}\n  imgbake: {ivars}")
    # packer inspect leaves out, silently, a build whose components it cannot load (an
    # unknown post-processor type such as "atlas"): sources are compared when it lists some.
    if not psources:
        continue
    sources_compared += 1
    if psources != isources:
        failures.append(f"{name}: sources differ:\n  packer:  {psources}\n  imgbake: {isources}")
for line in failures:
    print("FAIL", line)
bad = len(set(l.split(":")[0] for l in failures))
print(f"HCL2 parity: {checked - bad}/{checked} hcl2_upgrade'd templates agree with Packer 1.6.6 "
      f"(verdicts; variables of {inspected} inspected, sources of {sources_compared})")
sys.exit(1 if failures or checked == 0 else 0)
PY
