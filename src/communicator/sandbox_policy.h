// What a command in the exec communicator's sandbox may do: the capabilities it keeps and the
// system calls a seccomp filter denies. A base image is untrusted input (a tarball, an OCI
// layout, a pulled image): its /bin/sh runs as root in the sandbox, so root there must not be
// root on the host. docs/security.md states the threat model.
#pragma once

#include <string>
#include <vector>

#include "imgbake/unique_fd.h"

namespace imgbake::sandbox {

// The capabilities commands keep (Docker's default set, "CAP_CHOWN" …): what a package
// install inside the tree needs (chown, setuid to _apt, setcap, mknod, chroot) and nothing
// that reaches past the tree (no CAP_DAC_READ_SEARCH for open_by_handle_at, no CAP_SYS_ADMIN
// for mount, no CAP_SYS_PTRACE, CAP_SYS_MODULE, CAP_NET_ADMIN …).
const std::vector<std::string>& kept_capabilities();

// setpriv(1)'s --bounding-set argument for the same set ("-all,+chown,…").
std::string setpriv_bounding_set();

// The system calls the filter denies with EPERM (those a non-privileged container is denied:
// mount and the new mount API, open_by_handle_at, ptrace, keyctl, bpf, kernel modules,
// namespaces …); clone with CLONE_NEWUSER is denied too, and clone3 says ENOSYS so that the C
// library falls back to clone, where the flags can be checked.
const std::vector<std::string>& denied_syscalls();

// The filter as the classic BPF program bwrap's --seccomp reads, in a memfd at offset 0
// (close-on-exec: the caller passes it on). Throws BuildError when libseccomp cannot make it.
util::UniqueFd seccomp_filter();

}  // namespace imgbake::sandbox
