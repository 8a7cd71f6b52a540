// The exec sandbox: its command lines (bwrap, unshare), the capabilities commands keep and the
// seccomp filter, made with libseccomp (sandbox_policy.h).
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

// The command's environment is bwrap's own (the process is started with exactly `env`), and
// the command is a file (bound read-only at kCommandPath): neither shows in a process listing.
std::vector<std::string> bwrap_argv(const SandboxSpec& s, int seccomp_fd) {
  std::vector<std::string> a = {s.tool,          "--bind",
                                s.root.string(), "/",
                                "--proc",        "/proc",
                                "--dev",         "/dev",
                                "--bind",        s.scratch.string(),
                                "/tmp",          "--unshare-pid",
                                "--unshare-ipc", "--unshare-uts",
                                "--ro-bind",     s.command_file.string(),
                                kCommandPath};
  if (s.resolv) a.insert(a.end(), {"--ro-bind", "/etc/resolv.conf", "/etc/resolv.conf"});
  if (!s.network) a.emplace_back("--unshare-net");
  // Root in the tree, not on the host: the capabilities a package install needs, no new
  // privileges (bwrap sets no_new_privs), and the seccomp filter.
  a.insert(a.end(), {"--cap-drop", "ALL"});
  for (const auto& cap : kept_capabilities()) a.insert(a.end(), {"--cap-add", cap});
  a.insert(a.end(), {"--seccomp", std::to_string(seccomp_fd), "--die-with-parent"});
  a.insert(a.end(), {"--chdir", s.workdir, "/bin/sh", kCommandPath});
  return a;
}

// unshare + chroot: the mounts are made by a host shell inside the new mount namespace
// (private propagation: nothing reaches the host), then `unshare --root --wd` enters the tree.
// /dev is a tmpfs with the host's harmless device nodes bound in, as bwrap's --dev does.
// That shell stays as PID 1 of the namespace, like bwrap's own init: the command does not
// get PID 1's immunity to signals it has no handler for, the shell's TERM trap kills
// everything in the namespace (the outer unshare ignores TERM while it waits), and its exit
// ends whatever the command left running in the background.
// The command keeps only kept_capabilities() (setpriv, with no_new_privs); the
// seccomp filter is bwrap's alone (docs/security.md).
std::vector<std::string> unshare_argv(const SandboxSpec& s, const std::string& setpriv) {
  static const char* kSetup = R"(set -e
root=$1 scratch=$2 resolv=$3 command=$4
shift 4
mount -t proc -o nosuid,nodev,noexec proc "$root/proc"
mount -t tmpfs -o nosuid,mode=0755,size=1m imgbake-dev "$root/dev"
for n in null zero full random urandom tty; do
: > "$root/dev/$n"
mount --bind "/dev/$n" "$root/dev/$n"
done
mkdir "$root/dev/pts" "$root/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts "$root/dev/pts" 2>/dev/null && ln -s pts/ptmx "$root/dev/ptmx" || true
ln -s /proc/self/fd "$root/dev/fd"
ln -s /proc/self/fd/0 "$root/dev/stdin"
ln -s /proc/self/fd/1 "$root/dev/stdout"
ln -s /proc/self/fd/2 "$root/dev/stderr"
mount --bind "$scratch" "$root/tmp"
: > "$root/dev/.imgbake-command"
mount --bind "$command" "$root/dev/.imgbake-command"
mount -o remount,bind,ro "$root/dev/.imgbake-command"
if [ "$resolv" = 1 ]; then
mount --bind /etc/resolv.conf "$root/etc/resolv.conf"
mount -o remount,bind,ro "$root/etc/resolv.conf"
fi
set +e
"$@" &
command=$!
trap 'kill -KILL -1 2>/dev/null; exit 143' TERM HUP
wait "$command"
)";
  std::vector<std::string> a = {s.tool, "--mount", "--propagation", "private", "--uts", "--ipc"};
  if (!s.network) a.emplace_back("--net");
  a.insert(a.end(), {"--pid", "--fork", "--kill-child", "--", "/bin/sh", "-c", kSetup, "imgbake-exec-setup",
                     s.root.string(), s.scratch.string(), s.resolv ? "1" : "0", s.command_file.string(), setpriv,
                     "--bounding-set", setpriv_bounding_set(), "--inh-caps", "-all", "--no-new-privs"});
  a.insert(a.end(), {s.tool, "--root=" + s.root.string(), "--wd=" + s.workdir, "/bin/sh", kCommandPath});
  return a;
}

}  // namespace imgbake::sandbox
