#include "imgbake/process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "imgbake/error.h"
#include "imgbake/unique_fd.h"

extern char** environ;

namespace imgbake {

namespace {

// Kills the whole group: SIGTERM, then SIGKILL if it is still there after a grace period.
void kill_group(pid_t pid, int& status) {
  kill(-pid, SIGTERM);
  for (int i = 0; i < 30; ++i) {  // up to 3 s
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) {
      kill(-pid, SIGKILL);  // leftovers of the group (background jobs)
      return;
    }
    usleep(100 * 1000);
  }
  kill(-pid, SIGKILL);
  waitpid(pid, &status, 0);
}

// Children get default signal handling, an empty mask, and a process group of their
// own: a terminal's Ctrl-C reaches only us, and we stop the child's whole tree
// ourselves, in order, and then clean up.
void init_child_attributes(posix_spawnattr_t& attr) {
  posix_spawnattr_init(&attr);
  sigset_t def, none;
  sigemptyset(&def);
  sigaddset(&def, SIGINT);
  sigaddset(&def, SIGTERM);
  sigaddset(&def, SIGPIPE);
  sigemptyset(&none);
  posix_spawnattr_setsigdefault(&attr, &def);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
}

// "No such file or directory" for a bare program name means it is not installed, unless the
// directory to run it in is what is missing.
std::string spawn_error(const std::string& program, int rc, const std::string& cwd = "") {
  if (rc == ENOENT && !cwd.empty() && ::access(cwd.c_str(), F_OK) != 0)
    return "cannot run '" + program + "': its working directory " + cwd + " does not exist";
  if (rc == ENOENT && program.find('/') == std::string::npos)
    return "cannot run '" + program + "': it is not installed (not found on PATH)";
  return "cannot run '" + program + "': " + std::strerror(rc);
}

}  // namespace

void LineSplitter::feed(const char* data, size_t n) {
  buf_.append(data, n);
  size_t start = 0;
  while (true) {
    size_t nl = buf_.find('\n', start);
    if (nl == std::string::npos) break;
    size_t end = nl;
    if (end > start && buf_[end - 1] == '\r') --end;
    if (sink_) sink_(std::string_view(buf_).substr(start, end - start));
    start = nl + 1;
  }
  buf_.erase(0, start);
}

void LineSplitter::flush() {
  if (!buf_.empty() && sink_) sink_(buf_);
  buf_.clear();
}

std::mutex& spawn_mutex() {
  static std::mutex mu;
  return mu;
}

int run_process(const ProcessSpec& spec, const LineSink& out, const LineSink& err, const CancelToken& cancel) {
  cancel.throw_if_cancelled();
  if (spec.argv.empty()) throw BuildError("no command to run");

  // {read end, write end}
  auto make_pipe = [] {
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) throw BuildError(std::string("cannot create pipes: ") + std::strerror(errno));
    return std::pair<util::UniqueFd, util::UniqueFd>(p[0], p[1]);
  };
  auto [out_read, out_write] = make_pipe();
  auto [err_read, err_write] = make_pipe();

  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, out_write.get(), 1);
  posix_spawn_file_actions_adddup2(&fa, err_write.get(), 2);
  // dup2 clears close-on-exec on the copy (the same number: clear it by a dup2 to itself)
  for (const auto& [from, to] : spec.inherit_fds) posix_spawn_file_actions_adddup2(&fa, from, to);
  if (!spec.cwd.empty()) posix_spawn_file_actions_addchdir_np(&fa, spec.cwd.c_str());

  posix_spawnattr_t attr;
  init_child_attributes(attr);

  std::map<std::string, std::string> env;
  for (char** e = spec.clear_env ? nullptr : environ; e && *e; ++e) {
    std::string_view kv(*e);
    size_t eq = kv.find('=');
    if (eq != std::string_view::npos) env[std::string(kv.substr(0, eq))] = std::string(kv.substr(eq + 1));
  }
  for (const auto& [k, v] : spec.env_add) env[k] = v;
  std::vector<std::string> env_strings;
  env_strings.reserve(env.size());
  for (const auto& [k, v] : env) env_strings.push_back(k + "=" + v);
  std::vector<char*> envp, argv;
  envp.reserve(env_strings.size() + 1);
  argv.reserve(spec.argv.size() + 1);
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> args = spec.argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  pid_t pid = 0;
  int rc;
  {
    std::lock_guard lock(spawn_mutex());  // glibc's posix_spawn returns once the child has exec'd
    rc = posix_spawnp(&pid, argv[0], &fa, &attr, argv.data(), envp.data());
  }
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  out_write.reset();  // the child has its copies: end of output shows once it (and its children) closed them
  err_write.reset();
  if (rc != 0) throw BuildError(spawn_error(spec.argv[0], rc, spec.cwd));

  register_child_group(pid);
  struct Unregister {
    pid_t pid;
    ~Unregister() { unregister_child_group(pid); }
  } unregister{pid};
  LineSplitter out_lines(out), err_lines(err);
  auto deadline = spec.timeout ? std::optional(std::chrono::steady_clock::now() + *spec.timeout) : std::nullopt;
  int status = 0;
  bool exited = false, cancelled = false, timed_out = false;
  std::chrono::steady_clock::time_point exited_at;
  bool out_open = true, err_open = true;
  char buf[65536];
  while (out_open || err_open) {
    struct pollfd fds[3] = {{out_open ? out_read.get() : -1, POLLIN, 0},
                            {err_open ? err_read.get() : -1, POLLIN, 0},
                            {cancel.fd(), POLLIN, 0}};
    int r = poll(fds, 3, exited ? 50 : 200);
    if (r < 0 && errno != EINTR) break;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
      if (n > 0) {
        (i == 0 ? out_lines : err_lines).feed(buf, static_cast<size_t>(n));
      } else if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) {
        (i == 0 ? out_open : err_open) = false;
      }
    }
    if (cancel.cancelled()) {
      cancelled = true;
      break;
    }
    if (deadline && std::chrono::steady_clock::now() >= *deadline) {
      timed_out = true;
      break;
    }
    if (!exited && waitpid(pid, &status, WNOHANG) == pid) {
      exited = true;
      exited_at = std::chrono::steady_clock::now();
    } else if (exited && (r == 0 || std::chrono::steady_clock::now() - exited_at > std::chrono::milliseconds(500))) {
      // The child is gone but something it started in the background still holds
      // the pipes open (and may keep writing): take what is there, don't wait for it.
      break;
    }
  }
  if (cancelled || timed_out) {
    if (!exited)
      kill_group(pid, status);
    else
      kill(-pid, SIGKILL);
  } else if (!exited) {
    waitpid(pid, &status, 0);
  }
  out_lines.flush();
  err_lines.flush();
  out_read.reset();
  err_read.reset();
  if (cancelled) throw Cancelled();
  if (timed_out) throw BuildError("'" + spec.argv[0] + "' timed out and was stopped");
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 255;
}

BackgroundProcess::BackgroundProcess(const std::vector<std::string>& argv, const std::string& log_path) {
  if (argv.empty()) throw BuildError("no command to run");
  util::UniqueFd log(open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!log) throw BuildError("cannot create " + log_path + ": " + std::strerror(errno));
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, log.get(), 1);
  posix_spawn_file_actions_adddup2(&fa, log.get(), 2);
  posix_spawnattr_t attr;
  init_child_attributes(attr);
  std::vector<std::string> args = argv;
  std::vector<char*> cargv;
  cargv.reserve(args.size() + 1);
  for (auto& a : args) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  pid_t pid = 0;
  int rc;
  {
    std::lock_guard lock(spawn_mutex());
    rc = posix_spawnp(&pid, cargv[0], &fa, &attr, cargv.data(), environ);
  }
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  log.reset();
  if (rc != 0) throw BuildError(spawn_error(argv[0], rc));
  pid_ = pid;
  register_child_group(pid_);
}

BackgroundProcess::~BackgroundProcess() {
  if (!reaped_) stop();
  unregister_child_group(pid_);
}

bool BackgroundProcess::exited() {
  if (reaped_) return true;
  int st = 0;
  if (waitpid(pid_, &st, WNOHANG) == pid_) {
    reaped_ = true;
    status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
    kill(-pid_, SIGKILL);  // anything it left in its group
  }
  return reaped_;
}

bool BackgroundProcess::wait_for(std::chrono::milliseconds d, const CancelToken& cancel) {
  auto deadline = std::chrono::steady_clock::now() + d;
  while (!exited()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    struct pollfd p = {cancel.fd(), POLLIN, 0};
    poll(&p, 1, 50);
    cancel.throw_if_cancelled();
  }
  return true;
}

void BackgroundProcess::stop(std::chrono::milliseconds grace) {
  if (exited()) return;
  kill(-pid_, SIGTERM);
  auto deadline = std::chrono::steady_clock::now() + grace;
  while (!exited() && std::chrono::steady_clock::now() < deadline) usleep(50 * 1000);
  if (!exited()) {
    kill(-pid_, SIGKILL);
    int st = 0;
    waitpid(pid_, &st, 0);
    reaped_ = true;
    status_ = 128 + SIGKILL;
  }
}

}  // namespace imgbake
