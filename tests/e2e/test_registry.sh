#!/usr/bin/env bash
# End-to-end: push, pull, copy and login against real registries (Debian's docker-registry,
# started here on 127.0.0.1), checked with skopeo as an independent reader and writer.
. "$(dirname "$0")/lib.sh"

SRC=$IMGBAKE_SOURCE_DIR
require_tools docker-registry skopeo htpasswd python3

. "$(dirname "$0")/registry_lib.sh"

start_registry "$E2E_ROOT/reg" || exit 1
PORT=$REGISTRY_PORT
REG=127.0.0.1:$PORT
INSECURE=(--insecure-registry "$REG")

build_hello() {
  expect_exit 0 imgbake build "$SRC/templates/hello.json"
}

test_push_then_skopeo_reads_it() {
  build_hello || return
  local digest
  digest=$(imgbake show hello:1 --output json | json_get /dev/stdin 'd["digest"]')
  expect_exit 0 imgbake push hello:1 "$REG/team/hello" "${INSECURE[@]}" --tag stable --output json || return
  expect_eq "pushed digest" "$digest" "$(json_get <(tail -n 1 "$STDOUT") 'd["digest"]')"
  expect_eq "tags" '["1", "stable"]' "$(json_get <(tail -n 1 "$STDOUT") 'd["tags"]')"
  # One event shape for CI: every line (messages, progress, the report) has event and time.
  py_check "push --output json: one event shape" '
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1])]
assert ev and all("event" in e and "time" in e for e in ev), [e for e in ev if "event" not in e or "time" not in e]
assert ev[-1]["event"] == "push", ev[-1]
assert "type" not in ev[-1], ev[-1]
' "$STDOUT"
  # skopeo, an independent reader, sees the same manifest under both tags.
  expect_exit 0 skopeo inspect --tls-verify=false --raw "docker://$REG/team/hello:1"
  expect_eq "skopeo's manifest digest" "$digest" "sha256:$(sha256sum <"$STDOUT" | cut -d' ' -f1)"
  expect_exit 0 skopeo inspect --tls-verify=false --raw "docker://$REG/team/hello:stable"
  expect_eq "tag stable" "$digest" "sha256:$(sha256sum <"$STDOUT" | cut -d' ' -f1)"
  # The provenance is a referrer, found through the referrers tag schema (distribution 2.8).
  local tag=${digest/:/-}
  expect_exit 0 skopeo inspect --tls-verify=false --raw "docker://$REG/team/hello:$tag"
  expect_contains "$STDOUT" "application/vnd.in-toto+json"
  # A re-push of the unchanged image sends no blob bytes.
  expect_exit 0 imgbake push hello:1 "$REG/team/hello" "${INSECURE[@]}" --output json
  expect_eq "blob bytes of a re-push" "0" "$(json_get <(tail -n 1 "$STDOUT") 'd["blob_bytes"]')"
}

test_push_refuses_to_replace_a_tag() {
  build_hello || return
  expect_exit 0 imgbake build -var greeting=changed "$SRC/templates/hello.json" || return
  local d1 d2 other
  d1=$(imgbake show hello:1 --output json | json_get /dev/stdin 'd["digest"]')
  imgbake images hello --output json >images.json
  other=$(json_get images.json "[i['ref'] for i in d if i['digest'] != '$d1'][-1]")
  d2=$(imgbake show "$other" --output json | json_get /dev/stdin 'd["digest"]')
  check "two different images" test "$d1" != "$d2"
  expect_exit 0 imgbake push hello:1 "$REG/immutable/hello" "${INSECURE[@]}" || return
  # Pushing another image to the version tag 1 is refused, naming both digests; nothing moves.
  expect_exit 1 imgbake push "$other" "$REG/immutable/hello:1" "${INSECURE[@]}"
  expect_contains "$STDERR" "refusing to replace $REG/immutable/hello:1: it points at $d1, not at $other ($d2)"
  expect_contains "$STDERR" "version tags are immutable"
  expect_exit 0 skopeo inspect --tls-verify=false --raw "docker://$REG/immutable/hello:1"
  expect_eq "tag 1 after the refused push" "$d1" "sha256:$(sha256sum <"$STDOUT" | cut -d' ' -f1)"
  # The same image again is fine (nothing to replace); --force replaces.
  expect_exit 0 imgbake push hello:1 "$REG/immutable/hello:1" "${INSECURE[@]}"
  expect_exit 0 imgbake push "$other" "$REG/immutable/hello:1" "${INSECURE[@]}" --force
  expect_exit 0 skopeo inspect --tls-verify=false --raw "docker://$REG/immutable/hello:1"
  expect_eq "tag 1 after push --force" "$d2" "sha256:$(sha256sum <"$STDOUT" | cut -d' ' -f1)"
}

test_pull_into_another_store_verifies() {
  build_hello || return
  expect_exit 0 imgbake push hello:1 "$REG/pull/hello" "${INSECURE[@]}" || return
  local digest
  digest=$(imgbake show hello:1 --output json | json_get /dev/stdin 'd["digest"]')
  export IMGBAKE_HOME=$TEST_DIR/other-store
  expect_exit 0 imgbake pull "$REG/pull/hello:1" "${INSECURE[@]}" --output json || return
  expect_eq "pulled as" "hello:1" "$(json_get <(tail -n 1 "$STDOUT") 'd["local_ref"]')"
  expect_exit 0 imgbake show hello:1 --output json
  expect_eq "same digest in the other store" "$digest" "$(json_get "$STDOUT" 'd["digest"]')"
  expect_exit 0 imgbake verify hello:1
  expect_contains "$STDOUT" "VERIFIED hello:1"
  expect_exit 0 imgbake store check
}

test_pull_what_skopeo_pushed() {
  build_hello || return
  expect_exit 0 skopeo copy --dest-tls-verify=false "oci:$IMGBAKE_HOME:hello:1" "docker://$REG/skopeo/hello:v7" || return
  export IMGBAKE_HOME=$TEST_DIR/other-store
  expect_exit 0 imgbake pull "$REG/skopeo/hello:v7" "${INSECURE[@]}" --name from-skopeo --version 7 || return
  expect_exit 0 imgbake show from-skopeo:7
  expect_exit 0 imgbake store check
}

test_copy_keeps_the_digest() {
  build_hello || return
  expect_exit 0 imgbake push hello:1 "$REG/src/hello" "${INSECURE[@]}" || return
  local digest
  digest=$(imgbake show hello:1 --output json | json_get /dev/stdin 'd["digest"]')
  expect_exit 0 imgbake copy "$REG/src/hello:1" "$REG/dst/hello:prod" "${INSECURE[@]}" --output json || return
  expect_eq "copied digest" "$digest" "$(json_get <(tail -n 1 "$STDOUT") 'd["digest"]')"
  expect_exit 0 skopeo inspect --tls-verify=false --raw "docker://$REG/dst/hello:prod"
  expect_eq "skopeo sees the same digest" "$digest" "sha256:$(sha256sum <"$STDOUT" | cut -d' ' -f1)"
  expect_exit 0 skopeo inspect --tls-verify=false --raw "docker://$REG/dst/hello:${digest/:/-}"
  expect_contains "$STDOUT" "application/vnd.in-toto+json"
}

test_basic_auth_and_login() {
  htpasswd -Bbn ops 'pa55-word' >htpasswd
  local port
  start_registry "$TEST_DIR/authreg" "$PWD/htpasswd" || return
  port=$REGISTRY_PORT
  local reg=127.0.0.1:$port
  build_hello || return
  export DOCKER_CONFIG=$TEST_DIR/docker-config
  expect_exit 1 imgbake push hello:1 "$reg/team/hello" --insecure-registry "$reg"
  expect_contains "$STDERR" "401"
  printf 'wrong\n' >pw
  timeout 60 "$IMGBAKE" login "$reg" -u ops --password-stdin --insecure-registry "$reg" <pw >"$STDOUT" 2>"$STDERR"
  expect_eq "login with a wrong password fails" 1 "$?"
  expect_not_contains "$STDERR" "wrong"
  printf 'pa55-word\n' >pw
  timeout 60 "$IMGBAKE" login "$reg" -u ops --password-stdin --insecure-registry "$reg" <pw >"$STDOUT" 2>"$STDERR"
  expect_eq "login with the right password" 0 "$?"
  expect_contains "$STDOUT" "Login Succeeded"
  expect_eq "credentials file mode" 600 "$(stat -c %a "$IMGBAKE_CONFIG_HOME/auth.json")"
  expect_exit 0 imgbake push hello:1 "$reg/team/hello" --insecure-registry "$reg" || return
  expect_not_contains "$STDOUT" "pa55-word"
  expect_not_contains "$STDERR" "pa55-word"
  expect_exit 0 skopeo inspect --tls-verify=false --creds ops:pa55-word --raw "docker://$reg/team/hello:1"
  # logout forgets them: the registry answers 401 again, and a second logout says there is nothing.
  expect_exit 0 imgbake logout "$reg"
  expect_contains "$STDOUT" "Removed login credentials for $reg"
  expect_exit 1 imgbake push hello:1 "$reg/team/other" --insecure-registry "$reg"
  expect_contains "$STDERR" "401"
  expect_exit 1 imgbake logout "$reg"
  expect_contains "$STDERR" "not logged in to $reg"
}

test_registries_conf_replaces_the_flag() {
  # podman's and skopeo's registries.conf (here imgbake's own copy of it) marks the registry
  # insecure once, instead of --insecure-registry on every command.
  build_hello || return
  expect_exit 1 imgbake push hello:1 "$REG/conf/hello"
  mkdir -p "$IMGBAKE_CONFIG_HOME"
  printf '[[registry]]\nlocation = "%s"\ninsecure = true\n' "$REG" >"$IMGBAKE_CONFIG_HOME/registries.conf"
  expect_exit 0 imgbake push hello:1 "$REG/conf/hello" || return
  expect_exit 0 imgbake verify "$REG/conf/hello:1"
  # blocked = true: never contacted, and the message names the file and line.
  printf '[[registry]]\nlocation = "%s"\nblocked = true\n' "$REG" >"$IMGBAKE_CONFIG_HOME/registries.conf"
  expect_exit 1 imgbake pull "$REG/conf/hello:1"
  expect_contains "$STDERR" "registry $REG is blocked by $IMGBAKE_CONFIG_HOME/registries.conf:1"
  rm -f "$IMGBAKE_CONFIG_HOME/registries.conf"
}

run_test push_then_skopeo_reads_it test_push_then_skopeo_reads_it
run_test push_refuses_to_replace_a_tag test_push_refuses_to_replace_a_tag
run_test pull_into_another_store_verifies test_pull_into_another_store_verifies
run_test pull_what_skopeo_pushed test_pull_what_skopeo_pushed
run_test copy_keeps_the_digest test_copy_keeps_the_digest
run_test basic_auth_and_login test_basic_auth_and_login
run_test registries_conf_replaces_the_flag test_registries_conf_replaces_the_flag
summary
