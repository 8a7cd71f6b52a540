#!/usr/bin/env python3
"""Hostile inputs for tests/e2e/test_hostile.sh: layer tarballs, OCI layouts and a registry on
127.0.0.1 that answers like a broken or malicious one.

  hostile_inputs.py tar KIND FILE OUTSIDE   a tarball base of KIND (see TARS); OUTSIDE is a
                                            host path that the hostile entries aim at
  hostile_inputs.py layout KIND DIR         an OCI layout (tag "base") broken as KIND says
  hostile_inputs.py registry PORT_FILE      serves /v2/SCENARIO/app (tag v1) until killed; writes
                                            its port to PORT_FILE once it listens
"""
import gzip
import hashlib
import io
import json
import os
import sys
import tarfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"


def entry(name, kind=tarfile.REGTYPE, data=b"", **attrs):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    info.mtime = 1700000000
    for key, value in attrs.items():
        setattr(info, key, value)
    return info, data


def tar_bytes(entries, fmt=tarfile.PAX_FORMAT):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if info.type == tarfile.REGTYPE else None)
    return buf.getvalue()


def huge_size_tar():
    """One header that claims an 8 GiB file (ustar's largest), then the end of the archive."""
    header = bytearray(tarfile.TarInfo("huge").tobuf(format=tarfile.USTAR_FORMAT))
    header[124:136] = b"%011o\0" % ((1 << 33) - 1)
    header[148:156] = b" " * 8
    checksum = sum(header[:512])
    header[148:156] = b"%06o\0 " % checksum
    return bytes(header[:512]) + b"\0" * 1024


def tars(outside):
    """KIND -> the tarball's bytes. `outside` is a host directory the escapes aim at."""
    rel_up = "../" * 12 + outside.lstrip("/")
    return {
        "dotdot": tar_bytes([entry("etc", tarfile.DIRTYPE), entry(rel_up + "/dotdot", data=b"x")]),
        "absolute": tar_bytes([entry(outside + "/absolute", data=b"x")]),
        "symlink-write": tar_bytes([entry("esc", tarfile.SYMTYPE, linkname=rel_up), entry("esc/through-link", data=b"x")]),
        "hardlink-outside": tar_bytes([entry("passwd", tarfile.LNKTYPE, linkname=rel_up + "/hardlink-target")]),
        "whiteout-dot": tar_bytes([entry("etc", tarfile.DIRTYPE), entry("etc/keep", data=b"k"), entry("etc/.wh..")]),
        "whiteout-dotdot": tar_bytes([entry("etc", tarfile.DIRTYPE), entry("etc/.wh...")]),
        "huge-size": huge_size_tar(),
    }


def image(diff_id_ok=True):
    """(manifest bytes, {digest: bytes}, layer digest, config digest) of a one-layer image."""
    layer_tar = tar_bytes([entry("etc", tarfile.DIRTYPE), entry("etc/motd", data=b"hostile test\n")])
    layer = gzip.compress(layer_tar, mtime=0)
    diff_id = "sha256:" + hashlib.sha256(layer_tar if diff_id_ok else b"another tar").hexdigest()
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()
    blobs = {"sha256:" + hashlib.sha256(b).hexdigest(): b for b in (layer, config)}
    layer_digest, config_digest = list(blobs)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": MANIFEST_TYPE,
        "config": {"mediaType": CONFIG_TYPE, "digest": config_digest, "size": len(config)},
        "layers": [{"mediaType": LAYER_TYPE, "digest": layer_digest, "size": len(layer)}],
    }).encode()
    return manifest, blobs, layer_digest, config_digest


def write_layout(kind, out):
    manifest, blobs, layer_digest, _ = image(diff_id_ok=kind != "bad-diff-id")
    if kind == "wrong-size":
        doc = json.loads(manifest)
        doc["layers"][0]["size"] += 100
        manifest = json.dumps(doc).encode()
    if kind == "bad-manifest-json":
        manifest = b'{"schemaVersion": 2, "layers": [{"digest": '
    manifest_digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    blobs[manifest_digest] = manifest
    if kind == "bad-digest":
        blobs[layer_digest] = blobs[layer_digest][:-1] + bytes([blobs[layer_digest][-1] ^ 1])
    if kind == "missing-blob":
        del blobs[layer_digest]
    os.makedirs(os.path.join(out, "blobs", "sha256"), exist_ok=True)
    for digest, data in blobs.items():
        with open(os.path.join(out, "blobs", "sha256", digest[7:]), "wb") as f:
            f.write(data)
    with open(os.path.join(out, "oci-layout"), "w") as f:
        f.write('{"imageLayoutVersion": "1.0.0"}')
    index = json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": MANIFEST_TYPE, "digest": manifest_digest, "size": len(manifest),
        "annotations": {"org.opencontainers.image.ref.name": "base"}}]})
    if kind == "bad-index-json":
        index = index[: len(index) // 2]
    with open(os.path.join(out, "index.json"), "w") as f:
        f.write(index)


class HostileRegistry(BaseHTTPRequestHandler):
    """/v2/SCENARIO/app/...: a registry whose answers are broken as SCENARIO says."""
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status, body=b"", content_type="application/json", headers=None, length=None):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.send_header("Docker-Distribution-API-Version", "registry/2.0")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def not_found(self):
        self.answer(404, b'{"errors":[{"code":"NOT_FOUND","message":"not here"}]}')

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        parts = self.path.split("?")[0].strip("/").split("/")
        if parts == ["v2"]:
            return self.answer(200, b"{}")
        if len(parts) != 5 or parts[0] != "v2" or parts[2] != "app":
            return self.not_found()
        scenario, kind, ref = parts[1], parts[3], parts[4]
        manifest, blobs, layer_digest, _ = image(diff_id_ok=scenario != "bad-diff-id")
        manifest_digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
        if kind == "manifests":
            if scenario == "server-error":
                return self.answer(500, b'{"errors":[{"code":"UNKNOWN","message":"always failing"}]}')
            if scenario == "huge-manifest":
                self.answer(200, b"", MANIFEST_TYPE, length=64 << 20)
                chunk = b" " * (1 << 20)
                try:
                    for _ in range(64):
                        self.wfile.write(chunk)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                return None
            if ref in ("v1", manifest_digest):
                return self.answer(200, manifest, MANIFEST_TYPE, {"Docker-Content-Digest": manifest_digest})
            return self.not_found()
        if kind == "blobs" and ref in blobs:
            data = blobs[ref]
            if ref == layer_digest:
                if scenario == "missing-blob":
                    return self.not_found()
                if scenario == "bad-blob":
                    data = data[:-1] + bytes([data[-1] ^ 1])
                if scenario == "long-blob":
                    data = data + b"\0" * (1 << 20)
            return self.answer(200, data, "application/octet-stream")
        return self.not_found()


def serve(port_file):
    server = ThreadingHTTPServer(("127.0.0.1", 0), HostileRegistry)
    with open(port_file + ".tmp", "w") as f:
        f.write(str(server.server_address[1]))
    os.rename(port_file + ".tmp", port_file)
    server.serve_forever()


def main():
    what = sys.argv[1]
    if what == "tar":
        with open(sys.argv[3], "wb") as f:
            f.write(tars(sys.argv[4])[sys.argv[2]])
    elif what == "layout":
        write_layout(sys.argv[2], sys.argv[3])
    elif what == "registry":
        serve(sys.argv[2])
    else:
        sys.exit("usage: hostile_inputs.py tar|layout|registry ...")


if __name__ == "__main__":
    main()
