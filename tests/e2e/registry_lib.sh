# Registry helpers for the end-to-end suites that need Debian's docker-registry on 127.0.0.1
# (sourced after lib.sh; registries started here are stopped with the suite's other
# background processes).

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
registry_up() { python3 -c 'import sys, urllib.request, urllib.error
try: urllib.request.urlopen(sys.argv[1])
except urllib.error.HTTPError: pass' "http://127.0.0.1:$1/v2/" 2>/dev/null; }

# start_registry DIR [HTPASSWD]: starts a registry and sets REGISTRY_PORT. Not in $(…): the
# registry's pid must reach this shell's E2E_BG_PIDS, which stops it when the test (or, at the
# top level, the suite) ends.
start_registry() {
  local dir=$1 htpasswd=${2:-} port
  port=$(free_port)
  mkdir -p "$dir/data"
  {
    echo "version: 0.1"
    echo "log: {level: error}"
    echo "storage: {filesystem: {rootdirectory: $dir/data}, delete: {enabled: true}}"
    echo "http: {addr: 127.0.0.1:$port}"
    [ -n "$htpasswd" ] && echo "auth: {htpasswd: {realm: imgbake-test, path: $htpasswd}}"
  } >"$dir/config.yml"
  docker-registry serve "$dir/config.yml" >"$dir/log" 2>&1 &
  E2E_BG_PIDS+=($!)
  wait_for 10 registry_up "$port" || {
    echo "registry did not start: $(cat "$dir/log")" >&2
    return 1
  }
  REGISTRY_PORT=$port
}
