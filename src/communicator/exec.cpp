// ExecCommunicator: commands in a namespace sandbox over a root filesystem directory, files
// moved with openat2(RESOLVE_IN_ROOT) so that the tree's symlinks resolve inside it.
#include "imgbake/exec.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <random>
#include <tuple>
#include <utility>
#include <vector>

#include "imgbake/error.h"
#include "imgbake/temp_file.h"
#include "imgbake/unique_fd.h"
#include "imgbake/util.h"
#include "sandbox_policy.h"

namespace imgbake {

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using util::UniqueFd;

constexpr const char* kDefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
// The command line starts by printing this to stderr (and it is taken out again): what came
// before it is the sandbox tool's own complaint, not the command's output, and no marker means
// the sandbox never started the command.
constexpr std::string_view kStartedMarker = "imgbake-exec: command started";
constexpr size_t kCopyChunk = 1 << 20;
constexpr int kMaxSymlinkHops = 40;     // the kernel's own limit
constexpr int kMaxDownloadDepth = 256;  // a directory symlink loop ends here, not at PATH_MAX
// The mountpoints the sandbox mounts over, at the top of the tree.
constexpr std::array<const char*, 3> kMountpoints = {"proc", "dev", "tmp"};

std::string errno_text(int e = errno) { return std::strerror(e); }

bool write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

bool valid_env_name(const std::string& name) {
  if (name.empty() || std::isdigit(static_cast<unsigned char>(name[0]))) return false;
  return std::all_of(name.begin(), name.end(), [](unsigned char c) { return std::isalnum(c) || c == '_'; });
}

std::string random_suffix() {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  static const char kChars[] = "abcdefghijklmnopqrstuvwxyz0123456789";
  std::string s;
  for (int i = 0; i < 8; ++i) s += kChars[rng() % (sizeof kChars - 1)];
  return s;
}

// An executable named `name`: /usr/bin first, then $PATH. Empty when there is none.
std::string find_program(const std::string& name) {
  std::string usr_bin = "/usr/bin/" + name;
  if (::access(usr_bin.c_str(), X_OK) == 0) return usr_bin;
  const char* path = std::getenv("PATH");
  for (const auto& dir : util::split(path ? path : kDefaultPath, ':')) {
    if (dir.empty()) continue;
    std::string candidate = dir + "/" + name;
    struct stat st;
    if (::stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(candidate.c_str(), X_OK) == 0)
      return candidate;
  }
  return {};
}

// openat2 with RESOLVE_IN_ROOT: `rel` resolves as if `base` were "/", absolute symlinks and
// ".." included. O_CLOEXEC is added.
int open_in_root(int base, const std::string& rel, uint64_t flags, mode_t mode = 0) {
  struct open_how how = {};
  how.flags = flags | O_CLOEXEC;
  how.mode = (flags & (O_CREAT | O_TMPFILE)) ? mode : 0;
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  const char* path = rel.empty() ? "." : rel.c_str();
  for (int attempt = 0;; ++attempt) {
    long fd = ::syscall(SYS_openat2, base, path, &how, sizeof how);
    if (fd >= 0) return static_cast<int>(fd);
    // EAGAIN: a rename elsewhere raced with a ".." lookup; the kernel asks us to retry.
    if ((errno == EINTR || errno == EAGAIN) && attempt < 100) continue;
    return -1;  // ENOSYS (Linux before 5.6) is explained by Impl::fail
  }
}

// "a/b/c" -> {"a/b", "c"}; "c" -> {"", "c"}.
std::pair<std::string, std::string> split_last(const std::string& rel) {
  size_t slash = rel.find_last_of('/');
  if (slash == std::string::npos) return {"", rel};
  return {rel.substr(0, slash), rel.substr(slash + 1)};
}

// "/a/b/" -> "a/b"; "/" -> "".
std::string relative_to_slash(std::string path) {
  size_t first = path.find_first_not_of('/');
  if (first == std::string::npos) return "";
  while (path.back() == '/') path.pop_back();
  return path.substr(first);
}

std::string join_rel(const std::string& a, const std::string& b) {
  if (a.empty()) return b;
  if (b.empty()) return a;
  return a + "/" + b;
}

void write_all(int fd, const char* data, size_t n, const std::string& what) {
  while (n > 0) {
    ssize_t w = ::write(fd, data, n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) throw BuildError(what + ": " + errno_text());
    data += w;
    n -= static_cast<size_t>(w);
  }
}

// Copies `from` to `to` in chunks, checking for cancellation between them.
void copy_fd(int from, int to, const CancelToken& cancel, const std::string& reading, const std::string& writing) {
  std::vector<char> buf(kCopyChunk);
  while (true) {
    cancel.throw_if_cancelled();
    ssize_t n = ::read(from, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw BuildError(reading + ": " + errno_text());
    if (n == 0) return;
    write_all(to, buf.data(), static_cast<size_t>(n), writing);
  }
}

// A directory's access and modification times, put back after the sandbox added and removed
// an entry (a mountpoint) in it. The change time cannot be put back.
struct DirTimes {
  int fd;
  struct timespec times[2];
};

}  // namespace

struct ExecCommunicator::Impl {
  ExecOptions opts;
  UniqueFd root;         // the tree, O_RDONLY | O_DIRECTORY
  fs::path private_dir;  // 0700, on the host: holds the scratch /tmp; removed by the destructor
  fs::path scratch;      // the commands' /tmp, on the host
  UniqueFd scratch_fd;

  // Where a remote path lives: a path relative to `base` (the tree, or the scratch /tmp),
  // without "." or ".." components, and the name it had for messages.
  struct Location {
    int base;
    std::string rel;
    std::string shown;
  };

  Location locate(const std::string& remote) const {
    std::string abs = !remote.empty() && remote.front() == '/' ? remote : opts.workdir + "/" + remote;
    // Lexically: "/tmp/../etc" is /etc whatever /tmp is; leading ".." stop at "/".
    std::string rel = relative_to_slash(fs::path(abs).lexically_normal().generic_string());
    if (rel == "tmp") return {scratch_fd.get(), "", remote};
    if (rel.rfind("tmp/", 0) == 0) return {scratch_fd.get(), rel.substr(4), remote};
    return {root.get(), rel, remote};
  }

  // Where a symlink found in `parent_rel` leads: an absolute target starts again at "/" (and
  // may lead into /tmp), a relative one from the link's directory.
  Location relocate(const Location& from, const std::string& parent_rel, const std::string& target) const {
    if (!target.empty() && target.front() == '/') return locate(target);
    std::string rel =
        relative_to_slash(fs::path("/" + join_rel(parent_rel, target)).lexically_normal().generic_string());
    return {from.base, rel, from.shown};
  }

  std::string where(const Location& l) const {
    return "'" + l.shown + "' (in " + (l.base == scratch_fd.get() ? "the sandbox's /tmp" : opts.root.string()) + ")";
  }

  [[noreturn]] void fail(const std::string& what, int e) const {
    if (e == ENOSYS)
      throw BuildError(what + ": openat2 is not available (the exec communicator needs Linux 5.6 or later)");
    throw BuildError(what + ": " + errno_text(e));
  }

  // ---------------------------------------------------------------------------------- sandbox

  // What run() put into the tree for the command's sake, removed again by the destructor.
  struct TreeRestorer {
    std::vector<std::pair<int, std::string>> created;  // (parent fd, name), removed in reverse
    std::vector<DirTimes> times;
    std::vector<UniqueFd> fds;
    ~TreeRestorer() {
      for (auto it = created.rbegin(); it != created.rend(); ++it) {
        struct stat st;
        if (::fstatat(it->first, it->second.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
        ::unlinkat(it->first, it->second.c_str(), S_ISDIR(st.st_mode) ? AT_REMOVEDIR : 0);
      }
      for (const auto& t : times) ::futimens(t.fd, t.times);
    }
    void remember_times(int dir_fd) {
      for (const auto& t : times)
        if (t.fd == dir_fd) return;
      struct stat st;
      if (::fstat(dir_fd, &st) != 0) return;
      times.push_back({dir_fd, {st.st_atim, st.st_mtim}});
    }
  };

  // Makes sure /proc, /dev and /tmp are directories to mount on. A symlink there would make
  // the mount land wherever it points, on the host: refused.
  void prepare_mountpoints(TreeRestorer& restore) const {
    for (const char* name : kMountpoints) {
      struct stat st;
      if (::fstatat(root.get(), name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
        if (!S_ISDIR(st.st_mode))
          throw BuildError(std::string("the tree ") + opts.root.string() + " has a /" + name +
                           " that is not a directory (a symlink?): the sandbox mounts its own /" + name +
                           " there; make it a plain directory");
        continue;
      }
      if (errno != ENOENT) fail("cannot inspect /" + std::string(name) + " in " + opts.root.string(), errno);
      restore.remember_times(root.get());
      if (::mkdirat(root.get(), name, 0755) != 0)
        fail("cannot create the mountpoint /" + std::string(name) + " in " + opts.root.string(), errno);
      restore.created.emplace_back(root.get(), name);
    }
  }

  // Whether the host's resolv.conf can be bound over the tree's: the tree has a regular file
  // there, or nothing (then an empty file is made to mount on, and removed afterwards). A
  // symlink (systemd-resolved's stub) is left alone: the tree manages its own.
  bool prepare_resolv_conf(TreeRestorer& restore) const {
    struct stat st;
    if (::stat("/etc/resolv.conf", &st) != 0 || !S_ISREG(st.st_mode)) return false;
    if (::fstatat(root.get(), "etc", &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISDIR(st.st_mode)) return false;
    UniqueFd etc(::openat(root.get(), "etc", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!etc.valid()) return false;
    if (::fstatat(etc.get(), "resolv.conf", &st, AT_SYMLINK_NOFOLLOW) == 0) return S_ISREG(st.st_mode);
    if (errno != ENOENT) return false;
    restore.remember_times(etc.get());
    UniqueFd file(::openat(etc.get(), "resolv.conf", O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644));
    if (!file.valid()) fail("cannot create a mountpoint for /etc/resolv.conf in " + opts.root.string(), errno);
    restore.created.emplace_back(etc.get(), "resolv.conf");
    restore.fds.push_back(std::move(etc));
    return true;
  }

  // ---------------------------------------------------------------------------------- files

  // Creates `rel` under `base` and every missing parent (mode 0755 before the umask, as an
  // SFTP mkdir would). Throws when a component exists but is not a directory.
  void make_dirs(int base, const std::string& rel, const std::string& shown) const {
    std::string prefix;
    for (const auto& comp : util::split(rel, '/')) {
      if (comp.empty()) continue;
      std::string parent = prefix;
      prefix = join_rel(prefix, comp);
      UniqueFd d(open_in_root(base, prefix, O_PATH | O_DIRECTORY));
      if (d.valid()) continue;
      if (errno != ENOENT) fail("cannot create directory '" + shown + "': '/" + prefix + "'", errno);
      UniqueFd p(open_in_root(base, parent, O_PATH | O_DIRECTORY));
      if (!p.valid()) fail("cannot create directory '" + shown + "': '/" + parent + "'", errno);
      if (::mkdirat(p.get(), comp.c_str(), 0755) != 0 && errno != EEXIST)
        fail("cannot create directory '" + shown + "': '/" + prefix + "'", errno);
      UniqueFd check(open_in_root(base, prefix, O_PATH | O_DIRECTORY));
      if (!check.valid()) fail("cannot create directory '" + shown + "': '/" + prefix + "'", errno);
    }
  }

  void set_dir_mode(int base, const std::string& rel, mode_t mode, const std::string& shown) const {
    UniqueFd d(open_in_root(base, rel, O_RDONLY | O_DIRECTORY));
    if (!d.valid() || ::fchmod(d.get(), mode & 07777) != 0)
      fail("cannot set the mode of directory '" + shown + "'", errno);
  }

  bool is_dir(const Location& l) const {
    UniqueFd d(open_in_root(l.base, l.rel, O_PATH | O_DIRECTORY));
    return d.valid();
  }

  // Writes `local` to `dest` through a temporary file in the same directory and a rename.
  // A symlink at the destination is followed (the file it points to is replaced), as writing
  // to it over SFTP would.
  void upload_file(const std::string& local, Location dest, const CancelToken& cancel) const {
    const std::string what = "cannot upload '" + local + "' to " + where(dest);
    UniqueFd src(::open(local.c_str(), O_RDONLY | O_CLOEXEC));
    struct stat src_st;
    if (!src.valid() || ::fstat(src.get(), &src_st) != 0)
      throw BuildError("cannot read '" + local + "': " + errno_text());
    if (S_ISDIR(src_st.st_mode)) throw BuildError(what + ": it is a directory");

    auto [parent_rel, name] = split_last(dest.rel);
    UniqueFd parent;
    std::optional<struct stat> existing;
    for (int hops = 0;; ++hops) {
      if (name.empty()) throw BuildError(what + ": the destination is a directory");
      parent = UniqueFd(open_in_root(dest.base, parent_rel, O_PATH | O_DIRECTORY));
      if (!parent.valid()) fail(what + ": its directory '/" + parent_rel + "' is missing or not a directory", errno);
      struct stat st;
      if (::fstatat(parent.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno != ENOENT) fail(what, errno);
        break;
      }
      if (!S_ISLNK(st.st_mode)) {
        if (S_ISDIR(st.st_mode)) throw BuildError(what + ": the destination is a directory");
        existing = st;
        break;
      }
      if (hops >= kMaxSymlinkHops) throw BuildError(what + ": too many levels of symbolic links");
      std::vector<char> target(PATH_MAX + 1);
      ssize_t n = ::readlinkat(parent.get(), name.c_str(), target.data(), PATH_MAX);
      if (n < 0) fail(what, errno);
      dest = relocate(dest, parent_rel, std::string(target.data(), static_cast<size_t>(n)));
      std::tie(parent_rel, name) = split_last(dest.rel);
    }

    std::string temp = "." + name.substr(0, 200) + ".imgbake-" + random_suffix();
    UniqueFd out(::openat(parent.get(), temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!out.valid()) fail(what, errno);
    struct RemoveUnlessDone {
      int dir;
      const std::string& name;
      bool done = false;
      ~RemoveUnlessDone() {
        if (!done) ::unlinkat(dir, name.c_str(), 0);
      }
    } cleanup{parent.get(), temp};
    copy_fd(src.get(), out.get(), cancel, "cannot read '" + local + "'", what);
    // The owner of a file that is replaced stays, as it would when SFTP overwrites it; the
    // mode is the local file's either way (set after chown, which clears set-id bits).
    if (existing && ::fchown(out.get(), existing->st_uid, existing->st_gid) != 0) fail(what, errno);
    if (::fchmod(out.get(), src_st.st_mode & 07777) != 0) fail(what, errno);
    // No fsync: the tree is built to be packed afterwards, and a crash discards the build.
    if (out.close() != 0) fail(what, errno);
    if (::renameat(parent.get(), temp.c_str(), parent.get(), name.c_str()) != 0) fail(what, errno);
    cleanup.done = true;
  }

  void download_file(int src_fd, const struct stat& st, const std::string& local, const std::string& shown,
                     const CancelToken& cancel) const {
    const std::string what = "cannot download " + shown + " to '" + local + "'";
    fs::path local_path(local);
    fs::path dir = local_path.parent_path().empty() ? fs::path(".") : local_path.parent_path();
    std::string temp = (dir / ("." + local_path.filename().string().substr(0, 200) + ".imgbake-XXXXXX")).string();
    UniqueFd out(::mkostemp(temp.data(), O_CLOEXEC));
    if (!out.valid()) throw BuildError(what + ": cannot create a file in '" + dir.string() + "': " + errno_text());
    struct RemoveUnlessDone {
      const std::string& path;
      bool done = false;
      ~RemoveUnlessDone() {
        if (!done) ::unlink(path.c_str());
      }
    } cleanup{temp};
    copy_fd(src_fd, out.get(), cancel, what, what);
    if (::fchmod(out.get(), st.st_mode & 07777) != 0 || out.close() != 0) throw BuildError(what + ": " + errno_text());
    if (::rename(temp.c_str(), local.c_str()) != 0) throw BuildError(what + ": " + errno_text());
    cleanup.done = true;
  }

  void download(const Location& from, const std::string& local, int depth, const CancelToken& cancel,
                const std::function<void(std::string_view)>& log) const {
    cancel.throw_if_cancelled();
    const std::string shown = where(from);
    if (depth > kMaxDownloadDepth)
      throw BuildError("cannot download " + shown + ": directories nested too deep (a symlink loop?)");
    UniqueFd src(open_in_root(from.base, from.rel, O_RDONLY | O_NONBLOCK));
    struct stat st;
    if (!src.valid() || ::fstat(src.get(), &st) != 0) fail("cannot download " + shown, errno);
    if (S_ISREG(st.st_mode)) {
      // Opened non-blocking so that a FIFO could not hang the open; a regular file reads
      // the same either way, but clear it for clarity.
      ::fcntl(src.get(), F_SETFL, ::fcntl(src.get(), F_GETFL) & ~O_NONBLOCK);
      download_file(src.get(), st, local, shown, cancel);
      return;
    }
    if (!S_ISDIR(st.st_mode)) {
      if (depth == 0) throw BuildError("cannot download " + shown + ": not a regular file or directory");
      if (log) log("skipping " + shown + ": not a regular file or directory");
      return;
    }
    std::error_code ec;
    fs::create_directories(local, ec);
    if (ec) throw BuildError("cannot create directory '" + local + "': " + ec.message());
    std::vector<std::string> names;
    {
      DIR* d = ::fdopendir(::dup(src.get()));
      if (d == nullptr) fail("cannot list " + shown, errno);
      struct CloseDir {
        DIR* d;
        ~CloseDir() { ::closedir(d); }
      } close_dir{d};
      errno = 0;
      while (struct dirent* e = ::readdir(d)) {
        std::string n = e->d_name;
        if (n != "." && n != "..") names.push_back(n);
        errno = 0;
      }
      if (errno != 0) fail("cannot list " + shown, errno);
    }
    std::sort(names.begin(), names.end());
    for (const auto& n : names) {
      Location child{from.base, join_rel(from.rel, n), from.shown + (from.shown.ends_with('/') ? "" : "/") + n};
      download(child, local + "/" + n, depth + 1, cancel, log);
    }
    if (::chmod(local.c_str(), st.st_mode & 07777) != 0)
      throw BuildError("cannot set the mode of '" + local + "': " + errno_text());
  }
};

ExecCommunicator::ExecCommunicator(ExecOptions opts) : impl_(std::make_unique<Impl>()) {
  if (opts.root.empty()) throw BuildError("exec communicator: no root directory given");
  std::error_code ec;
  opts.root = fs::absolute(opts.root, ec);
  if (opts.workdir.empty()) opts.workdir = "/";
  if (opts.workdir.front() != '/')
    throw BuildError("exec communicator: the working directory '" + opts.workdir + "' must be an absolute path");
  impl_->root = UniqueFd(::open(opts.root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!impl_->root.valid())
    throw BuildError("exec communicator: cannot open the root directory " + opts.root.string() + ": " + errno_text());
  // A directory only root can enter holds the sandbox's /tmp (which must be world-writable for
  // the tree's users): other users of the host reach neither it nor the command files in it.
  fs::path parent = opts.private_dir.empty() ? process_temp_dir() : opts.private_dir;
  std::string tmpl = (parent / "imgbake-exec-XXXXXX").string();
  if (::mkdtemp(tmpl.data()) == nullptr)  // mode 0700
    throw BuildError("exec communicator: cannot create a private directory under " + parent.string() + ": " +
                     errno_text());
  impl_->private_dir = tmpl;
  impl_->scratch = impl_->private_dir / "tmp";
  // What a /tmp is: writable by all, sticky.
  if (::mkdir(impl_->scratch.c_str(), 0700) != 0 || ::chmod(impl_->scratch.c_str(), 01777) != 0) {
    int e = errno;
    fs::remove_all(tmpl, ec);
    throw BuildError("exec communicator: cannot create the sandbox's /tmp " + impl_->scratch.string() + ": " +
                     errno_text(e));
  }
  impl_->scratch_fd = UniqueFd(::open(impl_->scratch.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  impl_->opts = std::move(opts);
}

ExecCommunicator::~ExecCommunicator() {
  std::error_code ec;
  if (impl_ && !impl_->private_dir.empty()) fs::remove_all(impl_->private_dir, ec);
}

std::string ExecCommunicator::sandbox_tool() {
  const char* forced = std::getenv("IMGBAKE_EXEC_SANDBOX");
  std::string choice = forced ? forced : "";
  if (!choice.empty() && choice != "bwrap" && choice != "unshare")
    throw BuildError("IMGBAKE_EXEC_SANDBOX is '" + choice + "': it must be 'bwrap' or 'unshare' (or unset)");
  if (choice != "unshare" && !find_program("bwrap").empty()) return "bwrap";
  if (choice == "bwrap")
    throw BuildError("IMGBAKE_EXEC_SANDBOX=bwrap, but bwrap is not installed (apt-get install bubblewrap)");
  if (!find_program("unshare").empty()) return "unshare";
  throw BuildError(
      "the exec communicator needs bubblewrap or unshare (util-linux) on the host: apt-get install bubblewrap");
}

RunResult ExecCommunicator::run(const RemoteCommand& cmd, const LineSink& out, const LineSink& err,
                                const CancelToken& cancel) {
  cancel.throw_if_cancelled();
  std::map<std::string, std::string> env = {{"PATH", kDefaultPath}, {"HOME", "/root"}, {"TERM", "dumb"}};
  for (const auto& [k, v] : impl_->opts.env) env[k] = v;
  for (const auto& [k, v] : cmd.env) env[k] = v;
  for (const auto& [k, v] : env)
    if (!valid_env_name(k)) throw BuildError("invalid environment variable name '" + k + "'");

  const std::string kind = sandbox_tool();
  const std::string tool = find_program(kind);
  // The marker gets a line of its own: a syntax error in the command must not stop it.
  const std::string script = "echo '" + std::string(kStartedMarker) + "' >&2\n" + cmd.command;

  Impl::TreeRestorer restore;
  impl_->prepare_mountpoints(restore);
  bool resolv = impl_->opts.network && impl_->prepare_resolv_conf(restore);

  // The command (it may hold secrets) goes in a file only root can read, in the private
  // directory only root can enter, bound read-only into the sandbox's /dev (not part of the
  // tree); the environment is the sandbox tool's own. Neither is in a command line.
  const fs::path command_file = impl_->private_dir / ("command-" + random_suffix());
  {
    UniqueFd f(::open(command_file.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!f.valid() || !write_all(f.get(), script))
      throw BuildError("cannot write the command file " + command_file.string() + ": " + errno_text());
  }
  struct RemoveCommandFile {
    const fs::path& path;
    ~RemoveCommandFile() { ::unlink(path.c_str()); }
  } remove_command_file{command_file};

  sandbox::SandboxSpec box{
      tool, impl_->opts.root, impl_->scratch, command_file, impl_->opts.workdir, impl_->opts.network, resolv};
  ProcessSpec spec;
  spec.clear_env = true;
  spec.env_add = env;
  UniqueFd filter;
  if (kind == "bwrap") {
    filter = sandbox::seccomp_filter();
    constexpr int kFilterFd = 3;
    // A dup2 onto itself may keep close-on-exec: give the child a copy from another number.
    if (filter.get() == kFilterFd) filter = UniqueFd(::fcntl(filter.get(), F_DUPFD_CLOEXEC, kFilterFd + 1));
    if (!filter.valid()) throw BuildError("cannot pass the seccomp filter to bwrap: " + errno_text());
    spec.inherit_fds.emplace_back(filter.get(), kFilterFd);
    spec.argv = sandbox::bwrap_argv(box, kFilterFd);
  } else {
    std::string setpriv = find_program("setpriv");
    if (setpriv.empty()) throw BuildError("the unshare sandbox needs setpriv(1) on the host (util-linux)");
    spec.argv = sandbox::unshare_argv(box, setpriv);
  }
  spec.timeout = cmd.timeout;

  bool started = false;
  std::vector<std::string> setup_lines;
  LineSink err_filter = [&](std::string_view line) {
    if (started) {
      if (err) err(line);
      return;
    }
    if (line == kStartedMarker) {
      started = true;
      // Warnings the tool printed before a command that did start are worth seeing.
      for (const auto& l : setup_lines)
        if (err) err(l);
      setup_lines.clear();
      return;
    }
    if (setup_lines.size() < 50) setup_lines.emplace_back(line);
  };
  const auto begun = Clock::now();
  int status;
  try {
    status = run_process(spec, out, err_filter, cancel);
  } catch (const BuildError& e) {
    if (cmd.timeout && Clock::now() - begun >= *cmd.timeout)
      throw BuildError("command timed out after " + util::format_duration(*cmd.timeout) + " and was stopped");
    throw BuildError("cannot run the sandbox (" + kind + ") for " + impl_->opts.root.string() + ": " + e.what());
  }
  if (!started) {
    std::string why = setup_lines.empty() ? "exit status " + std::to_string(status) : util::join(setup_lines, "; ");
    std::string hint;
    if (why.find("/bin/sh") != std::string::npos) hint = " (the tree needs a /bin/sh)";
    throw BuildError("the sandbox (" + kind + ") did not start the command in " + impl_->opts.root.string() + ": " +
                     why + hint);
  }
  return RunResult::exited(status);
}

void ExecCommunicator::upload(const std::string& local_path, const std::string& remote_path,
                              const CancelToken& cancel) {
  cancel.throw_if_cancelled();
  std::error_code ec;
  auto status = fs::status(local_path, ec);
  if (ec) throw BuildError("cannot upload '" + local_path + "': " + ec.message());
  Impl::Location dest = impl_->locate(remote_path);
  if (!fs::is_directory(status)) {
    impl_->upload_file(local_path, dest, cancel);
    return;
  }

  // As the SSH communicator does: the directories with their local modes, then the files,
  // then the modes (a read-only directory is filled first).
  std::vector<std::pair<std::string, mode_t>> dirs{{dest.rel, static_cast<mode_t>(status.permissions())}};
  std::vector<std::pair<std::string, std::string>> files;
  for (auto it = fs::recursive_directory_iterator(local_path, fs::directory_options::follow_directory_symlink, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    std::string rel = it->path().lexically_relative(local_path).generic_string();
    auto st = it->status(ec);
    if (ec) break;
    if (fs::is_directory(st)) {
      dirs.emplace_back(join_rel(dest.rel, rel), static_cast<mode_t>(st.permissions()));
    } else if (fs::is_regular_file(st)) {
      files.emplace_back(it->path().string(), rel);
    } else if (log) {
      log("skipping '" + it->path().string() + "': not a regular file or directory");
    }
  }
  if (ec) throw BuildError("cannot read directory '" + local_path + "': " + ec.message());
  bool root_existed = impl_->is_dir(dest);
  for (const auto& [rel, mode] : dirs) {
    cancel.throw_if_cancelled();
    impl_->make_dirs(dest.base, rel, remote_path);
  }
  for (const auto& [local, rel] : files) {
    Impl::Location file{dest.base, join_rel(dest.rel, rel),
                        remote_path + (remote_path.ends_with('/') ? "" : "/") + rel};
    impl_->upload_file(local, file, cancel);
  }
  // An existing destination keeps its mode: uploading into /tmp must not drop its sticky bit.
  if (root_existed) dirs.erase(dirs.begin());
  for (auto it = dirs.rbegin(); it != dirs.rend(); ++it)
    impl_->set_dir_mode(dest.base, it->first, it->second, remote_path);
}

void ExecCommunicator::download(const std::string& remote_path, const std::string& local_path,
                                const CancelToken& cancel) {
  cancel.throw_if_cancelled();
  impl_->download(impl_->locate(remote_path), local_path, 0, cancel, log);
}

}  // namespace imgbake
