// The exec sandbox's capabilities and seccomp filter (sandbox_policy.h), made with libseccomp.
#include "sandbox_policy.h"

#include <fcntl.h>
#include <sched.h>
#include <seccomp.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include "imgbake/error.h"

namespace imgbake::sandbox {

const std::vector<std::string>& kept_capabilities() {
  static const std::vector<std::string> caps = {
      "CAP_CHOWN",   "CAP_DAC_OVERRIDE", "CAP_FSETID",           "CAP_FOWNER",
      "CAP_MKNOD",   "CAP_NET_RAW",      "CAP_SETGID",           "CAP_SETUID",
      "CAP_SETFCAP", "CAP_SETPCAP",      "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT",
      "CAP_KILL",    "CAP_AUDIT_WRITE"};
  return caps;
}

std::string setpriv_bounding_set() {
  std::string out = "-all";
  for (const auto& cap : kept_capabilities()) {
    out += ",+";
    for (char c : cap.substr(4)) out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return out;
}

const std::vector<std::string>& denied_syscalls() {
  static const std::vector<std::string> calls = {
      // file handles: a handle opens any file of the filesystem, past the tree
      "open_by_handle_at", "name_to_handle_at",
      // mounts, old and new API, and namespaces
      "mount", "umount", "umount2", "pivot_root", "move_mount", "open_tree", "fsopen", "fsconfig", "fsmount", "fspick",
      "mount_setattr", "unshare", "setns",
      // other processes and the kernel's keyrings
      "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "keyctl", "add_key", "request_key",
      // the kernel itself
      "bpf", "perf_event_open", "userfaultfd", "init_module", "finit_module", "delete_module", "create_module",
      "kexec_load", "kexec_file_load", "reboot", "swapon", "swapoff", "syslog", "acct", "quotactl", "quotactl_fd",
      "lookup_dcookie", "iopl", "ioperm", "uselib", "ustat", "sysfs", "_sysctl", "nfsservctl", "vm86", "vm86old",
      "get_kernel_syms", "query_module",
      // the host's clock
      "settimeofday", "stime", "clock_settime", "clock_adjtime", "adjtimex"};
  return calls;
}

util::UniqueFd seccomp_filter() {
  struct Release {
    void operator()(scmp_filter_ctx c) const { seccomp_release(c); }
  };
  std::unique_ptr<void, Release> ctx(seccomp_init(SCMP_ACT_ALLOW));
  if (!ctx) throw BuildError("cannot make the sandbox's seccomp filter (libseccomp: seccomp_init failed)");
  auto check = [](int rc, const std::string& what) {
    if (rc < 0) throw BuildError("cannot make the sandbox's seccomp filter: " + what + ": " + std::strerror(-rc));
  };
  // 32-bit and x32 programs in the tree enter through their own system call tables.
#if defined(__x86_64__)
  for (uint32_t arch : {SCMP_ARCH_X86, SCMP_ARCH_X32}) {
    int rc = seccomp_arch_add(ctx.get(), arch);
    if (rc != -EEXIST) check(rc, "adding an architecture");
  }
#endif
  for (const auto& name : denied_syscalls()) {
    int nr = seccomp_syscall_resolve_name(name.c_str());
    if (nr == __NR_SCMP_ERROR) continue;  // not a system call on this architecture
    int rc = seccomp_rule_add(ctx.get(), SCMP_ACT_ERRNO(EPERM), nr, 0);
    // A call some architectures lack is resolved to a negative pseudo-number: no rule needed.
    if (rc == -EDOM || rc == -EINVAL) continue;
    check(rc, "denying " + name);
  }
  check(seccomp_rule_add(ctx.get(), SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1,
                         SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_NEWUSER, CLONE_NEWUSER)),
        "denying clone(CLONE_NEWUSER)");
  int clone3 = seccomp_syscall_resolve_name("clone3");
  if (clone3 != __NR_SCMP_ERROR) check(seccomp_rule_add(ctx.get(), SCMP_ACT_ERRNO(ENOSYS), clone3, 0), "clone3");

  util::UniqueFd fd(::memfd_create("imgbake-seccomp", MFD_CLOEXEC));
  if (!fd.valid())
    throw BuildError(std::string("cannot make the sandbox's seccomp filter: memfd: ") + std::strerror(errno));
  check(seccomp_export_bpf(ctx.get(), fd.get()), "writing the filter");
  if (::lseek(fd.get(), 0, SEEK_SET) != 0)
    throw BuildError(std::string("cannot make the sandbox's seccomp filter: ") + std::strerror(errno));
  return fd;
}

}  // namespace imgbake::sandbox
