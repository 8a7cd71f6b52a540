// The "imgbake" connection plugin for ansible: Python that the ansible provisioner writes into a
// private directory and names in ANSIBLE_CONNECTION_PLUGINS. It sends each command and file
// transfer to the build's communicator through the CommunicatorProxy's socket
// ($IMGBAKE_ANSIBLE_SOCKET), so a playbook run on the host reaches a rootfs tree through the same
// exec sandbox as the shell provisioner. A command's standard input (ansible's pipelining: the
// module on stdin) travels base64-encoded in the request.
#pragma once

namespace imgbake {

inline constexpr const char* kImgbakeConnectionPlugin = R"PY(# Written by imgbake's ansible provisioner.
from __future__ import annotations

DOCUMENTATION = """
name: imgbake
short_description: run tasks through the communicator of an imgbake build
description:
  - Commands and file transfers go to the imgbake process that runs ansible-playbook, over a Unix
    socket; imgbake runs them through the build's communicator (a rootfs build's sandbox).
options:
  imgbake_socket:
    description: The Unix socket imgbake listens on.
    env:
      - name: IMGBAKE_ANSIBLE_SOCKET
    vars:
      - name: ansible_imgbake_socket
"""

import base64
import json
import socket

from ansible.errors import AnsibleConnectionFailure
from ansible.module_utils.common.text.converters import to_bytes
from ansible.plugins.connection import ConnectionBase


class Connection(ConnectionBase):
    transport = "imgbake"
    has_pipelining = True

    def _connect(self):
        self._connected = True
        return self

    def _call(self, request):
        path = self.get_option("imgbake_socket")
        if not path:
            raise AnsibleConnectionFailure("IMGBAKE_ANSIBLE_SOCKET is not set: this connection works only under imgbake")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(path)
            sock.sendall(json.dumps(request).encode() + b"\n")
            data = b""
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        except OSError as e:
            raise AnsibleConnectionFailure("imgbake's socket %s: %s" % (path, e))
        finally:
            sock.close()
        try:
            answer = json.loads(data)
        except ValueError:
            raise AnsibleConnectionFailure("imgbake did not answer (it stopped?)")
        if "error" in answer:
            raise AnsibleConnectionFailure(answer["error"])
        return answer

    def exec_command(self, cmd, in_data=None, sudoable=True):
        super(Connection, self).exec_command(cmd, in_data=in_data, sudoable=sudoable)
        request = {"op": "exec", "cmd": cmd}
        if in_data:
            request["stdin"] = base64.b64encode(to_bytes(in_data)).decode("ascii")
        answer = self._call(request)
        return answer["rc"], to_bytes(answer["stdout"]), to_bytes(answer["stderr"])

    def put_file(self, in_path, out_path):
        super(Connection, self).put_file(in_path, out_path)
        self._call({"op": "put", "local": in_path, "remote": out_path})

    def fetch_file(self, in_path, out_path):
        super(Connection, self).fetch_file(in_path, out_path)
        self._call({"op": "fetch", "remote": in_path, "local": out_path})

    def close(self):
        self._connected = False
)PY";

}  // namespace imgbake
