"""What the benchmark scripts share: a timed run that fails loudly, a docker-registry on 127.0.0.1
(Debian's distribution registry) for the ones that push or pull, and the tests' local apt mirror."""
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def timed(argv, cwd, env):
    """Runs argv; returns (wall seconds, combined output). Exits with the output's tail on failure."""
    t0 = time.monotonic()
    p = subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    wall = time.monotonic() - t0
    out = p.stdout.decode(errors="replace")
    if p.returncode != 0:
        sys.stderr.write(out[-3000:])
        raise SystemExit(f"{argv[0]} failed with status {p.returncode}")
    return wall, out


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start_registry(directory):
    """Starts docker-registry with its storage in directory; returns (process, "127.0.0.1:PORT")."""
    os.makedirs(directory, exist_ok=True)
    reg = f"127.0.0.1:{free_port()}"
    config = os.path.join(directory, "config.yml")
    with open(config, "w") as f:
        f.write(f"version: 0.1\nlog: {{level: error}}\n"
                f"storage: {{filesystem: {{rootdirectory: {directory}/data}}, delete: {{enabled: true}}}}\n"
                f"http: {{addr: {reg}}}\n")
    proc = subprocess.Popen(["docker-registry", "serve", config], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            urllib.request.urlopen(f"http://{reg}/v2/")
            break
        except urllib.error.HTTPError:
            break
        except OSError:
            time.sleep(0.05)
    return proc, reg


def start_mirror(debs, work):
    """Starts the tests' local apt mirror (tests/fixtures/apt-mirror.sh) over the .debs in debs;
    returns (url, pid)."""
    script = (f'. "{ROOT}/tests/fixtures/apt-mirror.sh" && apt_mirror_start "$1" "$2" >&2 && '
              'echo "$APT_MIRROR_URL $APT_MIRROR_PID"')
    out = subprocess.run(["bash", "-c", script, "mirror", debs, work], check=True, stdout=subprocess.PIPE,
                         text=True).stdout.split()
    return out[0], int(out[1])


def mirror_vars(url):
    """The -var flags that point templates/rootfs-debian.json at the local mirror."""
    return ["-var", f"mirror={url}", "-var", "check_gpg=false", "-var", "apt_options=[trusted=yes]"]
