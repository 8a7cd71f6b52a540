#!/usr/bin/env python3
"""Seed layers for fuzz_layer_apply: small tars with every kind of entry the applier handles
(files, directories, symlinks, hardlinks, devices, fifos, whiteouts, opaque markers, a GNU
sparse file, PAX records, a capability xattr) and the hostile ones it must refuse (.., absolute
names, writes through symlinks, whiteouts of . and ..), plain and gzip-compressed.

usage: make_layer_seeds.py DIR
"""
import gzip
import os
import subprocess
import sys
import tarfile
import tempfile

# The tar writer of the e2e suite's hostile inputs (tests/e2e/hostile_inputs.py).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
from hostile_inputs import entry, tar_bytes  # noqa: E402


LAYERS = {
    "tree": [
        entry("etc", tarfile.DIRTYPE),
        entry("etc/hostname", data=b"imgbake\n"),
        entry("etc/shadow", data=b"root:*:19000::::::\n", mode=0o640),
        entry("usr", tarfile.DIRTYPE),
        entry("usr/bin", tarfile.DIRTYPE),
        entry("usr/bin/tool", data=b"#!/bin/sh\necho tool\n", mode=0o4755, uid=1234, gid=1234),
        entry("usr/bin/tool-alias", tarfile.LNKTYPE, linkname="usr/bin/tool"),
        entry("lib", tarfile.SYMTYPE, linkname="usr/lib"),
        entry("usr/lib", tarfile.DIRTYPE),
        entry("lib/libx.so", data=b"\x7fELF"),
        entry("dev", tarfile.DIRTYPE),
        entry("dev/null", tarfile.CHRTYPE, devmajor=1, devminor=3, mode=0o666),
        entry("dev/queue", tarfile.FIFOTYPE),
        entry("ping", data=b"cap", pax_headers={"SCHILY.xattr.security.capability": "\x01\x00\x00\x02"}),
        entry("d" * 70 + "/" + "f" * 60, data=b"long path\n"),
    ],
    "whiteouts": [
        entry("etc", tarfile.DIRTYPE),
        entry("etc/.wh.hostname"),
        entry("var", tarfile.DIRTYPE),
        entry("var/cache", tarfile.DIRTYPE),
        entry("var/cache/.wh..wh..opq"),
        entry("var/cache/kept", data=b"kept\n"),
        entry(".wh.tmp"),
    ],
    "hostile-dotdot": [entry("../escaped", data=b"x"), entry("a/../../escaped", data=b"x")],
    "hostile-absolute": [entry("/etc/escaped", data=b"x")],
    "hostile-symlink-write": [
        entry("esc", tarfile.SYMTYPE, linkname="../../.."),
        entry("esc/escaped", data=b"x"),
        entry("abs", tarfile.SYMTYPE, linkname="/tmp"),
        entry("abs/inside", data=b"lands in the root's tmp"),
    ],
    "hostile-hardlink": [entry("passwd", tarfile.LNKTYPE, linkname="../../etc/passwd")],
    "hostile-whiteouts": [entry("etc", tarfile.DIRTYPE), entry("etc/.wh.."), entry("etc/.wh..."), entry(".wh.")],
    "replace-types": [
        entry("x", tarfile.DIRTYPE),
        entry("x/y", data=b"y"),
        entry("x", data=b"now a file"),
        entry("x", tarfile.SYMTYPE, linkname="x"),
    ],
}


def sparse_layer(tmp):
    """A GNU tar --sparse archive (PAX 1.0 sparse records) of a 1 MiB file with three bytes."""
    root = os.path.join(tmp, "sparse")
    os.makedirs(root)
    with open(os.path.join(root, "disk.img"), "wb") as f:
        f.truncate(1 << 20)
        for offset in (0, 300000, (1 << 20) - 1):
            f.seek(offset)
            f.write(b"x")
    out = os.path.join(tmp, "sparse.tar")
    subprocess.run(["tar", "--sparse", "--format=pax", "-C", root, "-cf", out, "disk.img"], check=True)
    with open(out, "rb") as f:
        return f.read()


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    layers = {name: tar_bytes(entries) for name, entries in LAYERS.items()}
    layers["tree-gnu"] = tar_bytes(LAYERS["tree"][:9], fmt=tarfile.GNU_FORMAT)
    with tempfile.TemporaryDirectory() as tmp:
        layers["sparse"] = sparse_layer(tmp)
    for name, data in list(layers.items()):
        layers[name + ".gz"] = gzip.compress(data, mtime=0)
    for name, data in layers.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
