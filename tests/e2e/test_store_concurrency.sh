# End-to-end: the image store under concurrency and crashes. Several `imgbake build`
# runs commit into one store at once (with promotions racing them), and builds are
# killed with SIGKILL at random points of a commit; the store must stay consistent:
# unique versions, only complete images, `store check` clean.
. "$(dirname "$0")/lib.sh"

fresh_store() {
  export IMGBAKE_HOME="$TEST_DIR/store"
  export IMGBAKE_CONFIG_HOME="$TEST_DIR/config"
}

need_python() {
  if ! have_python; then
    skip "python3 is not available: the store's JSON is not checked"
    return 1
  fi
}

write_app_template() {
  write_file app.json <<'EOF'
{
  "variables": {"n": "0"},
  "builders": [{"type": "file", "name": "app", "content": "v{{user `n`}}", "target": "out/app.txt"}],
  "imgbake": {"image": "app"}
}
EOF
}

# start_builds COUNT: starts COUNT builds of app.json at once, run I in run$I/ (its own
# out/app.txt) with -var n=I; BUILD_PIDS[I] is its pid, run$I/{stdout,stderr} its output.
declare -a BUILD_PIDS
start_builds() {
  local i
  for i in $(seq 1 "$1"); do
    mkdir -p "run$i"
    (cd "run$i" && exec "$IMGBAKE" build -var "n=$i" ../app.json >stdout 2>stderr </dev/null) &
    BUILD_PIDS[i]=$!
    E2E_BG_PIDS+=("$!")
  done
}

# wait_builds COUNT: waits for them; run$I/rc holds each exit status.
wait_builds() {
  local i rc
  for i in $(seq 1 "$1"); do
    rc=0
    wait "${BUILD_PIDS[i]}" || rc=$?
    echo "$rc" >"run$i/rc"
  done
}

# promoter K: promotes the latest app to channel qaK, again and again, until the
# builds are done (the file builds.done appears) or 60 attempts were made. Attempt J
# leaves promote$K/J.{rc,out,err}.
promoter() {
  local k=$1 j=0 rc
  mkdir -p "promote$k"
  while [ ! -e builds.done ] && [ "$j" -lt 60 ]; do
    j=$((j + 1))
    rc=0
    timeout -k 5 60 "$IMGBAKE" promote app --channel "qa$k" --reason "attempt $k.$j" \
      >"promote$k/$j.out" 2>"promote$k/$j.err" </dev/null || rc=$?
    echo "$rc" >"promote$k/$j.rc"
  done
}

test_concurrent_builds_and_promotes() {
  need_python || return 0
  fresh_store
  write_app_template
  # The signing key exists beforehand (its first-use creation is tested on its own below).
  expect_exit 0 imgbake keygen || return
  local i k
  declare -a ppids
  start_builds 8
  for k in 1 2 3 4; do
    promoter "$k" &
    ppids[k]=$!
    E2E_BG_PIDS+=("$!")
  done
  wait_builds 8
  touch builds.done
  for k in 1 2 3 4; do wait "${ppids[k]}"; done

  for i in $(seq 1 8); do
    expect_eq "exit status of concurrent build $i" "0" "$(cat "run$i/rc")" || {
      e2e_show_file stdout "run$i/stdout"
      e2e_show_file stderr "run$i/stderr"
    }
  done
  expect_exit 0 imgbake images app --output json || return
  cp "$STDOUT" images.json
  py_check "8 concurrent builds: versions 1..8, unique digests, each holds its own run's file" '
import glob, hashlib, json, re, subprocess, sys
imgs = json.load(open("images.json"))
versions = sorted(int(i["version"]) for i in imgs)
assert versions == list(range(1, 9)), "versions: %r" % [i["version"] for i in imgs]
assert len({i["digest"] for i in imgs}) == 8, "manifest digests are not unique"
by_ref = {i["ref"]: i for i in imgs}
layers = set()
for n in range(1, 9):
    out = open("run%d/stdout" % n).read()
    m = re.search(r"committed (app:\d+) \((sha256:[0-9a-f]{64})\)", out)
    assert m, "run %d does not say what it committed" % n
    ref, digest = m.groups()
    assert by_ref[ref]["digest"] == digest, "run %d committed %s as %s, the store has %s" % (n, ref, digest, by_ref[ref]["digest"])
    show = json.loads(subprocess.check_output([sys.argv[1], "show", ref, "--output", "json"]))
    layer = show["manifest"]["layers"][0]["digest"]
    want = "sha256:" + hashlib.sha256(open("run%d/out/app.txt" % n, "rb").read()).hexdigest()
    assert layer == want, "%s (run %d) holds layer %s, its out/app.txt is %s" % (ref, n, layer, want)
    layers.add(layer)
assert len(layers) == 8, "layer digests are not unique"
' "$IMGBAKE"

  # Every promotion either worked or failed cleanly, and what it said is what happened.
  py_check "4 promoters racing the builds: each attempt ok or a clean failure; the channel moved as they said" '
import glob, json, os, re, subprocess, sys
attempts = 0
for k in range(1, 5):
    said = []
    n = len(glob.glob("promote%d/*.rc" % k))
    for j in range(1, n + 1):
        attempts += 1
        rc = int(open("promote%d/%d.rc" % (k, j)).read())
        out = open("promote%d/%d.out" % (k, j)).read()
        err = open("promote%d/%d.err" % (k, j)).read()
        assert "database is locked" not in err and "busy" not in err, "promote %d.%d: %r" % (k, j, err)
        if rc == 0:
            m = re.fullmatch(r"app:qa%d -> (app:\d+) \(sha256:[0-9a-f]{64}\)\n" % k, out)
            assert m, "promote %d.%d succeeded but said %r" % (k, j, out)
            said.append(m.group(1))
        else:
            assert rc == 1, "promote %d.%d: exit status %d (%r)" % (k, j, rc, err)
            assert err.startswith("imgbake: ") and len(err.strip()) > len("imgbake:"), \
                "promote %d.%d failed without a message: %r" % (k, j, err)
    h = json.loads(subprocess.check_output([sys.argv[1], "history", "app", "--channel", "qa%d" % k, "--output", "json"]))
    moved = [e["to"] for e in h if e["action"] == "promote"]
    assert moved == said, "channel qa%d: promote printed %r but the audit log records %r" % (k, said, moved)
    if said:
        show = subprocess.run([sys.argv[1], "show", "app:qa%d" % k], capture_output=True, text=True).stdout
        assert "image:      %s\n" % said[-1] in show, "app:qa%d is not %s:\n%s" % (k, said[-1], show)
assert attempts >= 4, attempts
' "$IMGBAKE"
  expect_exit 0 imgbake store check
  expect_match "$STDOUT" ': OK$'
  for i in $(seq 1 8); do
    expect_exit 0 imgbake verify "app:$i"
  done
}

test_concurrent_first_builds_share_one_key() {
  need_python || return 0
  # On a fresh machine (no signing key yet) several builds start at once: each one
  # that finds no key creates the default key. Every image must still verify with the
  # key that is left. Racy by nature: up to 5 rounds, stopping at the first failure.
  write_app_template
  local round i bad
  for round in 1 2 3 4 5; do
    export IMGBAKE_HOME="$TEST_DIR/store$round" IMGBAKE_CONFIG_HOME="$TEST_DIR/config$round"
    rm -rf run*
    start_builds 8
    wait_builds 8
    bad=0
    for i in $(seq 1 8); do
      expect_eq "round $round: exit status of build $i" "0" "$(cat "run$i/rc")" || {
        bad=1
        e2e_show_file "build $i stderr" "run$i/stderr"
      }
    done
    expect_file "$IMGBAKE_CONFIG_HOME/signing.key" || bad=1
    expect_exit 0 imgbake store check || {
      bad=1
      echo "      (round $round: $(grep -l 'created the per-user default key' run*/stderr | wc -l) builds said they created the default key)"
    }
    for i in $(seq 1 8); do
      expect_exit 0 imgbake verify "app:$i" || bad=1
    done
    [ "$bad" -eq 0 ] || return 0
  done
}

# A template whose file builder copies a 20 MB source, so that a commit (hashing and
# copying it into the store) takes a while.
write_big_template() {
  head -c 20M /dev/urandom >big.bin
  write_file big.json <<'EOF'
{
  "builders": [{"type": "file", "name": "big", "source": "{{template_dir}}/big.bin", "target": "out/big.bin"}],
  "imgbake": {"image": "big"}
}
EOF
}

test_kill_during_commit() {
  need_python || return 0
  fresh_store
  write_big_template
  expect_exit 0 imgbake keygen || return
  # One uninterrupted build first: big:1, and how long a whole build takes here. The
  # kills land 0-300 ms into a build, or up to that duration on a slower machine, so
  # that they fall anywhere in it, the commit included.
  local t0 full_ms span
  t0=$(now_ms)
  expect_exit 0 imgbake build big.json || return
  full_ms=$(($(now_ms) - t0))
  span=$((full_ms > 300 ? full_ms : 300))
  local iter pid rc delay ms verified=" " v completed=0 killed=0 ref
  for iter in $(seq 1 24); do
    # New content each time (the first bytes), so every commit stores a new layer blob.
    printf 'iteration %04d\n' "$iter" | dd of=big.bin conv=notrunc status=none
    "$IMGBAKE" build big.json >"build$iter.out" 2>"build$iter.err" </dev/null &
    pid=$!
    E2E_BG_PIDS+=("$pid")
    # A deliberately random point in the build (not a wait for a condition).
    ms=$((RANDOM % (span + 1)))
    delay=$(printf '%d.%03d' $((ms / 1000)) $((ms % 1000)))
    sleep "$delay"
    kill -KILL "$pid" 2>/dev/null
    rc=0
    { wait "$pid"; } 2>/dev/null || rc=$?
    if [ "$rc" -eq 0 ]; then
      completed=$((completed + 1))
      # A build that reported success is in the store.
      ref=$(sed -n 's/^==> big: committed \(big:[0-9]*\) .*/\1/p' "build$iter.out")
      expect_match "build$iter.out" '^==> big: committed big:[0-9]+ ' || continue
    else
      killed=$((killed + 1))
      expect_eq "iteration $iter: status of the killed build" "137" "$rc"
      ref=""
    fi

    expect_exit 0 imgbake store check || {
      echo "      (iteration $iter, killed after $delay s)"
      break
    }
    expect_match "$STDOUT" ': OK$'
    expect_no_match "$STDOUT" '^PROBLEM'
    expect_exit 0 imgbake images big --output json || break
    cp "$STDOUT" images.json
    py_check "iteration $iter: versions and digests are unique" '
import json
imgs = json.load(open("images.json"))
v = [i["version"] for i in imgs]
assert len(v) == len(set(v)), "duplicate versions: %r" % v
d = [i["digest"] for i in imgs]
assert len(d) == len(set(d)), "duplicate digests"
' || break
    if [ -n "$ref" ]; then
      expect_contains "$STDOUT" "\"ref\": \"$ref\""
    fi
    # Every listed image is complete: it verifies (new ones; store check re-checks all).
    for v in $(json_get images.json '" ".join(i["version"] for i in d)'); do
      case "$verified" in *" $v "*) continue ;; esac
      expect_exit 0 imgbake verify "big:$v" || echo "      (iteration $iter, killed after $delay s)"
      verified="$verified$v "
    done
    # The OCI index (rewritten when the store is opened) tags exactly the listed versions.
    py_check "iteration $iter: index.json tags exactly the versions in the catalog" '
import json, sys
idx = json.load(open(sys.argv[1] + "/index.json"))
tags = sorted(m["annotations"]["org.opencontainers.image.ref.name"] for m in idx["manifests"] if "annotations" in m)
want = sorted(i["ref"] for i in json.load(open("images.json")))
assert tags == want, (tags, want)
' "$IMGBAKE_HOME"
  done
  local n_images
  n_images=$(json_get images.json 'len(d)')
  echo "      ($iter kills within ${span} ms: $completed builds had completed, $killed were killed;" \
    "$((n_images - 1 - completed)) killed builds had committed their image)"
  expect_exit 0 imgbake store gc
  expect_match "$STDOUT" '^gc: removed [0-9]+ '
  expect_exit 0 imgbake store check
  expect_match "$STDOUT" ': OK$'
  expect_not_contains "$STDOUT" "unreferenced blob"
  expect_exit 0 imgbake images big --output json
  cp "$STDOUT" images.json
  for v in $(json_get images.json '" ".join(i["version"] for i in d)'); do
    expect_exit 0 imgbake verify "big:$v"
  done
  # The store still takes new builds after all this, as the next version.
  local before
  before=$(json_get images.json 'len(d)')
  expect_exit 0 imgbake build big.json
  expect_exit 0 imgbake images big --output json
  cp "$STDOUT" images.json
  expect_eq "images after one more build" "$((before + 1))" "$(json_get images.json 'len(d)')"
  expect_exit 0 imgbake store check
}

run_test concurrent_builds_and_promotes test_concurrent_builds_and_promotes
run_test concurrent_first_builds_share_one_key test_concurrent_first_builds_share_one_key
run_test kill_during_commit test_kill_during_commit
summary
