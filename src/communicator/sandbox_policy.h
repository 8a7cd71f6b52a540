// What a command in the exec communicator's sandbox may do: the capabilities it keeps and the
// system calls a seccomp filter denies. A base image is untrusted input (a tarball, an OCI
// layout, a pulled image): its /bin/sh runs as root in the sandbox, so root there must not be
// root on the host. docs/security.md states the threat model.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "imgbake/unique_fd.h"

namespace imgbake::sandbox {

// Where the command file is in the sandbox: in its /dev, which is not part of the tree.
inline constexpr const char* kCommandPath = "/dev/.imgbake-command";

// One command's sandbox: the tool (bwrap or unshare, as found on the host), the tree, the host
// directory that is its /tmp, the file holding the command (bound at kCommandPath).
struct SandboxSpec {
  std::string tool;
  std::filesystem::path root, scratch, command_file;
  std::string workdir = "/";
  bool network = false;  // share the host's network
  bool resolv = false;   // bind the host's resolv.conf read-only over the tree's
};

// bwrap's command line; the seccomp filter is read from `seccomp_fd` (seccomp_filter()).
std::vector<std::string> bwrap_argv(const SandboxSpec& s, int seccomp_fd);
// unshare's command line (mounts made by a host shell in the new namespaces, then setpriv,
// then `unshare --root`); `setpriv` is the path of setpriv(1).
std::vector<std::string> unshare_argv(const SandboxSpec& s, const std::string& setpriv);

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
