// SshCommunicator on libssh.
//
// The session runs in non-blocking mode: waiting for a guest to boot, running a command and
// feeding a command's stdin are loops of our own, so that cancellation, deadlines and
// keep-alives are checked every few tens of milliseconds. SFTP and SCP are libssh's blocking
// APIs (libssh 0.10 offers no other); they switch the session to blocking mode for the
// duration and check cancellation between 64 KiB chunks.

// libssh marks its SCP API deprecated in favour of SFTP, but SCP is exactly what a server
// without SFTP may still offer.
#define SSH_SUPPRESS_DEPRECATED

#include "imgbake/ssh.h"

#include <fcntl.h>
#include <libssh/callbacks.h>
#include <libssh/libssh.h>
#include <libssh/sftp.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <optional>
#include <utility>
#include <vector>

#include "imgbake/error.h"

namespace imgbake {

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// A connection attempt gets this long to reach the server's banner. Under qemu user
// networking the TCP connection is accepted by the host whether or not the guest listens, so
// only the banner tells that sshd is up; a short limit keeps the polling brisk.
constexpr milliseconds kBannerTimeout{3000};
// Once the banner arrived, key exchange and authentication get longer: an emulated (TCG)
// guest can take seconds for the key exchange, and cutting it off would only start over.
constexpr milliseconds kHandshakeTimeout{15000};
constexpr milliseconds kRetryDelay{250};      // after a failed connection
constexpr milliseconds kAuthRetryDelay{500};  // after a refused login
// Opening a channel and the requests on it (pty, exec) are answered at once by any live server.
constexpr milliseconds kRequestTimeout{30000};
// After the exit status, output that keeps coming comes from background jobs holding the
// channel open; like run_process, take what is there and don't wait for them.
constexpr milliseconds kAfterExitGrace{500};
constexpr size_t kChunk = 64 * 1024;

struct SessionDeleter {
  void operator()(ssh_session s) const {
    ssh_disconnect(s);
    ssh_free(s);
  }
};
using SessionPtr = std::unique_ptr<ssh_session_struct, SessionDeleter>;

struct KeyDeleter {
  void operator()(ssh_key k) const { ssh_key_free(k); }
};
using KeyPtr = std::unique_ptr<ssh_key_struct, KeyDeleter>;

struct SftpDeleter {
  void operator()(sftp_session s) const { sftp_free(s); }
};
using SftpPtr = std::unique_ptr<sftp_session_struct, SftpDeleter>;

struct ChannelDeleter {
  void operator()(ssh_channel c) const { ssh_channel_free(c); }
};
using ChannelPtr = std::unique_ptr<ssh_channel_struct, ChannelDeleter>;

// Removes a half-written download unless it completed (done = true).
struct UnlinkUnlessDone {
  const std::string& path;
  bool done = false;
  ~UnlinkUnlessDone() {
    if (!done) ::unlink(path.c_str());
  }
};

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  // For files written to: a failing close can be the only sign of a failed write.
  int release_and_close() {
    int r = ::close(fd_);
    fd_ = -1;
    return r;
  }

 private:
  int fd_;
};

std::string quote(std::string_view s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'')
      out += "'\\''";
    else
      out += c;
  }
  out += '\'';
  return out;
}

std::string octal(mode_t mode) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(mode & 07777));
  return buf;
}

std::string seconds(milliseconds d) {
  char buf[32];
  if (d >= std::chrono::minutes(2))
    std::snprintf(buf, sizeof buf, "%lldm%llds", static_cast<long long>(d.count() / 60000),
                  static_cast<long long>(d.count() / 1000 % 60));
  else
    std::snprintf(buf, sizeof buf, "%.1f s", static_cast<double>(d.count()) / 1000.0);
  return buf;
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

std::string remote_parent(const std::string& path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

std::string remote_base(const std::string& path) {
  size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

bool valid_env_name(const std::string& name) {
  if (name.empty() || std::isdigit(static_cast<unsigned char>(name[0]))) return false;
  return std::all_of(name.begin(), name.end(), [](unsigned char c) { return std::isalnum(c) || c == '_'; });
}

bool alive(ssh_session s) {
  return s != nullptr && ssh_is_connected(s) != 0 && (ssh_get_status(s) & (SSH_CLOSED | SSH_CLOSED_ERROR)) == 0;
}

// Waits up to `timeout_ms` for the connection (or the cancel token) to become readable;
// libssh itself reads and processes what arrived on its next call.
void wait_io(ssh_session s, const CancelToken& cancel, int timeout_ms, bool writable = false) {
  struct pollfd fds[2] = {{ssh_get_fd(s), static_cast<short>(POLLIN | (writable ? POLLOUT : 0)), 0},
                          {cancel.fd(), POLLIN, 0}};
  poll(fds, 2, timeout_ms);
}

// Repeats a non-blocking libssh call until it is done. `again` is its "call me again" code.
template <typename Fn>
int call_until_done(ssh_session s, const CancelToken& cancel, Clock::time_point deadline, int again, Fn fn) {
  while (true) {
    int rc = fn();
    if (rc != again) return rc;
    cancel.throw_if_cancelled();
    if (Clock::now() >= deadline) return again;
    wait_io(s, cancel, 20);
  }
}

int signal_number(const char* name) {
  static const std::pair<const char*, int> kSignals[] = {
      {"HUP", 1},   {"INT", 2},   {"QUIT", 3},  {"ILL", 4},   {"ABRT", 6},  {"FPE", 8},  {"KILL", 9},
      {"USR1", 10}, {"SEGV", 11}, {"USR2", 12}, {"PIPE", 13}, {"ALRM", 14}, {"TERM", 15}};
  for (const auto& [n, v] : kSignals)
    if (name != nullptr && std::strcmp(name, n) == 0) return v;
  return 0;
}

std::string sftp_error_text(sftp_session sf, ssh_session s) {
  switch (sftp_get_error(sf)) {
    case SSH_FX_EOF: return "unexpected end of file";
    case SSH_FX_NO_SUCH_FILE: return "no such file or directory";
    case SSH_FX_PERMISSION_DENIED: return "permission denied";
    case SSH_FX_NO_SUCH_PATH: return "no such path";
    case SSH_FX_FILE_ALREADY_EXISTS: return "file already exists";
    case SSH_FX_WRITE_PROTECT: return "write-protected filesystem";
    case SSH_FX_NO_MEDIA: return "no media";
    case SSH_FX_OP_UNSUPPORTED: return "operation not supported";
    case SSH_FX_FAILURE: return "failure (a directory, or the disk is full?)";
    default: {
      const char* e = ssh_get_error(s);
      return e && *e ? e : "SFTP error";
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Connecting

struct AttemptResult {
  SessionPtr session;   // set on success
  std::string what;     // why it failed, for the user
  bool counts = false;  // counts against handshake_attempts
};

std::string endpoint(const SshConfig& c) { return c.host + ":" + std::to_string(c.port); }

void set_options(ssh_session s, const SshConfig& c) {
  unsigned int port = static_cast<unsigned int>(c.port);
  int no = 0, yes = 1, verbosity = SSH_LOG_NOLOG;
  bool process_config = false;
  bool ok = ssh_options_set(s, SSH_OPTIONS_HOST, c.host.c_str()) == SSH_OK &&
            ssh_options_set(s, SSH_OPTIONS_PORT, &port) == SSH_OK &&
            (c.username.empty() || ssh_options_set(s, SSH_OPTIONS_USER, c.username.c_str()) == SSH_OK) &&
            ssh_options_set(s, SSH_OPTIONS_LOG_VERBOSITY, &verbosity) == SSH_OK &&
            // The user's ~/.ssh/config (a ProxyCommand, another port) must not redirect a build.
            ssh_options_set(s, SSH_OPTIONS_PROCESS_CONFIG, &process_config) == SSH_OK &&
            // A new machine has a new host key: nothing to check it against, nothing to remember.
            ssh_options_set(s, SSH_OPTIONS_STRICTHOSTKEYCHECK, &no) == SSH_OK &&
            ssh_options_set(s, SSH_OPTIONS_KNOWNHOSTS, "/dev/null") == SSH_OK &&
            ssh_options_set(s, SSH_OPTIONS_GLOBAL_KNOWNHOSTS, "/dev/null") == SSH_OK &&
            // SFTP waits for an answer to every 64 KiB: don't let Nagle delay the requests.
            ssh_options_set(s, SSH_OPTIONS_NODELAY, &yes) == SSH_OK;
  if (!ok) throw BuildError("SSH: invalid option for " + endpoint(c) + ": " + ssh_get_error(s));
}

std::string auth_methods_text(ssh_session s) {
  int m = ssh_userauth_list(s, nullptr);
  std::string out;
  auto add = [&](int bit, const char* name) {
    if (m & bit) out += (out.empty() ? "" : ",") + std::string(name);
  };
  add(SSH_AUTH_METHOD_PUBLICKEY, "publickey");
  add(SSH_AUTH_METHOD_PASSWORD, "password");
  add(SSH_AUTH_METHOD_INTERACTIVE, "keyboard-interactive");
  add(SSH_AUTH_METHOD_HOSTBASED, "hostbased");
  add(SSH_AUTH_METHOD_GSSAPI_MIC, "gssapi-with-mic");
  return out.empty() ? "unknown" : out;
}

// Authenticates an established session; returns an empty string on success, otherwise why not.
std::string authenticate(ssh_session s, const SshConfig& c, ssh_key key, const CancelToken& cancel,
                         Clock::time_point deadline) {
  std::vector<std::string> refused;
  auto result = [&](int rc, const std::string& what) -> std::optional<std::string> {
    if (rc == SSH_AUTH_SUCCESS) return std::string();
    if (rc == SSH_AUTH_AGAIN)
      return "the server did not answer the " + what + " login within " + seconds(kHandshakeTimeout);
    if (rc == SSH_AUTH_ERROR) return "error during " + what + " authentication: " + std::string(ssh_get_error(s));
    refused.push_back(rc == SSH_AUTH_PARTIAL ? what + " was accepted but the server wants more" : what);
    return std::nullopt;
  };
  if (key != nullptr) {
    int rc =
        call_until_done(s, cancel, deadline, SSH_AUTH_AGAIN, [&] { return ssh_userauth_publickey(s, nullptr, key); });
    if (auto r = result(rc, "key " + c.private_key_file)) return *r;
  }
  if (c.agent_auth) {
    int rc = call_until_done(s, cancel, deadline, SSH_AUTH_AGAIN, [&] { return ssh_userauth_agent(s, nullptr); });
    if (auto r = result(rc, "ssh-agent keys")) return *r;
  }
  if (!c.password.empty()) {
    int rc = call_until_done(s, cancel, deadline, SSH_AUTH_AGAIN,
                             [&] { return ssh_userauth_password(s, nullptr, c.password.c_str()); });
    if (auto r = result(rc, "password")) return *r;
    // Servers with PAM often offer the password only as keyboard-interactive prompts.
    if (ssh_userauth_list(s, nullptr) & SSH_AUTH_METHOD_INTERACTIVE) {
      auto kbdint = [&] { return ssh_userauth_kbdint(s, nullptr, nullptr); };
      rc = call_until_done(s, cancel, deadline, SSH_AUTH_AGAIN, kbdint);
      for (int round = 0; rc == SSH_AUTH_INFO && round < 5; ++round) {
        int n = ssh_userauth_kbdint_getnprompts(s);
        for (int i = 0; i < n; ++i) ssh_userauth_kbdint_setanswer(s, static_cast<unsigned>(i), c.password.c_str());
        rc = call_until_done(s, cancel, deadline, SSH_AUTH_AGAIN, kbdint);
      }
      if (rc == SSH_AUTH_INFO) rc = SSH_AUTH_DENIED;
      if (auto r = result(rc, "keyboard-interactive password")) return *r;
    }
  }
  std::string what = "authentication failed: the server refused ";
  for (size_t i = 0; i < refused.size(); ++i) what += (i ? ", " : "") + refused[i];
  const char* user = c.username.empty() ? "(local user name)" : c.username.c_str();
  return what + " for user '" + user + "' (it accepts: " + auth_methods_text(s) + ")";
}

AttemptResult attempt(const SshConfig& c, ssh_key key, const CancelToken& cancel, Clock::time_point overall) {
  AttemptResult res;
  SessionPtr s(ssh_new());
  if (!s) throw BuildError("SSH: cannot allocate a libssh session");
  set_options(s.get(), c);
  ssh_set_blocking(s.get(), 0);

  const auto begun = Clock::now();
  auto deadline = std::min(begun + kBannerTimeout, overall);
  bool tcp_connected = false, banner = false;
  while (true) {
    int rc = ssh_connect(s.get());
    if (!banner && ssh_get_serverbanner(s.get()) != nullptr) {
      banner = true;
      deadline = std::min(Clock::now() + kHandshakeTimeout, overall);
    }
    if (rc == SSH_OK) break;
    if (rc == SSH_ERROR) {
      std::string err = ssh_get_error(s.get());
      if (banner) {
        res.what = "SSH handshake failed: " + err;
        res.counts = true;
      } else if (lower(err).find("refused") != std::string::npos) {
        res.what = "connection refused";
      } else if (tcp_connected) {
        res.what = "banner not received: the connection was closed before the SSH server greeted (" + err + ")";
      } else {
        res.what = "cannot connect: " + err;
      }
      return res;
    }
    cancel.throw_if_cancelled();
    if (!tcp_connected) {
      struct sockaddr_storage peer;
      socklen_t len = sizeof peer;
      int fd = ssh_get_fd(s.get());
      tcp_connected = fd >= 0 && getpeername(fd, reinterpret_cast<struct sockaddr*>(&peer), &len) == 0;
    }
    if (auto now = Clock::now(); now >= deadline) {
      std::string waited = seconds(std::chrono::duration_cast<milliseconds>(now - begun));
      if (banner)
        res.what = "SSH handshake did not complete within " + waited;
      else if (tcp_connected)
        res.what =
            "banner not received within " + waited + " (the port accepts connections, but no SSH server answers yet)";
      else
        res.what = "no answer to the TCP connection within " + waited;
      return res;
    }
    // Until the TCP connection is up, libssh waits for it to become writable.
    wait_io(s.get(), cancel, 20, !tcp_connected);
  }

  std::string failed = authenticate(s.get(), c, key, cancel, deadline);
  if (!failed.empty()) {
    res.what = failed;
    res.counts = true;
    return res;
  }
  res.session = std::move(s);
  return res;
}

// Waits until the server sends its SSH banner, keeping several TCP connections in flight:
// a new one every kProbeInterval, each given kBannerTimeout. Under qemu user networking a
// connection made before the guest's network is up is accepted by the host and then stalls
// (the guest never saw its SYN) until slirp retransmits seconds later; a fresh connection made
// just after sshd starts answers at once. Returns when a banner arrived or `overall` passed;
// the libssh attempt that follows reports what went wrong.
void wait_for_banner(const SshConfig& c, const CancelToken& cancel, Clock::time_point overall,
                     const std::function<void(std::string_view)>& progress) {
  constexpr milliseconds kProbeInterval{250};
  addrinfo hints = {};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (getaddrinfo(c.host.c_str(), std::to_string(c.port).c_str(), &hints, &res) != 0 || !res) return;
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> guard(res, freeaddrinfo);
  struct Probe {
    int fd;
    Clock::time_point started;
  };
  std::vector<Probe> probes;
  auto close_probe = [&](size_t i) {
    ::close(probes[i].fd);
    probes.erase(probes.begin() + static_cast<std::ptrdiff_t>(i));
  };
  Clock::time_point next = Clock::now();
  bool found = false;
  std::string last;
  auto saw = [&](const std::string& what) {
    if (what != last && progress) progress("SSH on " + endpoint(c) + " not ready: " + what);
    last = what;
  };
  while (!found && Clock::now() < overall && !cancel.cancelled()) {
    auto now = Clock::now();
    if (now >= next && probes.size() < 16) {
      int fd = ::socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      if (fd >= 0) {
        if (::connect(fd, res->ai_addr, res->ai_addrlen) == 0 || errno == EINPROGRESS)
          probes.push_back({fd, now});
        else
          ::close(fd);
      }
      next = now + kProbeInterval;
    }
    for (size_t i = probes.size(); i-- > 0;) {
      if (now - probes[i].started > kBannerTimeout) {
        saw("banner not received within " + seconds(kBannerTimeout) +
            " (the port accepts connections, but no SSH server answers yet)");
        close_probe(i);
      }
    }
    std::vector<pollfd> fds;
    fds.reserve(probes.size() + 1);
    for (const auto& p : probes) fds.push_back({p.fd, POLLIN, 0});
    fds.push_back({cancel.fd(), POLLIN, 0});
    ::poll(fds.data(), fds.size(), 50);
    for (size_t i = probes.size(); i-- > 0;) {
      if (!(fds[i].revents & (POLLIN | POLLERR | POLLHUP))) continue;
      char buf[8];
      ssize_t n = ::recv(probes[i].fd, buf, sizeof buf, MSG_PEEK);
      if (n >= 4 && std::memcmp(buf, "SSH-", 4) == 0) found = true;
      if (n == 0) saw("the connection was closed before the SSH server greeted");
      if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
        saw(errno == ECONNREFUSED ? "connection refused" : std::string("cannot connect: ") + std::strerror(errno));
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) || n >= 4) close_probe(i);
    }
  }
  for (const auto& p : probes) ::close(p.fd);
}

SessionPtr establish(const SshConfig& c, ssh_key key, const CancelToken& cancel,
                     const std::function<void(std::string_view)>& progress) {
  auto start = Clock::now();
  auto overall = start + c.timeout;
  int refusals = 0;
  const int max_refusals = std::max(1, c.handshake_attempts);
  std::string last;
  if (progress) progress("Waiting for SSH on " + endpoint(c) + " (timeout " + seconds(c.timeout) + ")");
  wait_for_banner(c, cancel, overall, progress);
  while (true) {
    cancel.throw_if_cancelled();
    AttemptResult r = attempt(c, key, cancel, overall);
    if (r.session) {
      if (progress) {
        const char* banner = ssh_get_serverbanner(r.session.get());
        progress("Connected to SSH on " + endpoint(c) + " after " +
                 seconds(std::chrono::duration_cast<milliseconds>(Clock::now() - start)) +
                 (banner ? std::string(" (") + banner + ")" : std::string()));
      }
      return std::move(r.session);
    }
    if (r.counts && ++refusals >= max_refusals)
      throw BuildError("SSH on " + endpoint(c) + ": " + r.what + "; gave up after " + std::to_string(refusals) +
                       (refusals == 1 ? " attempt" : " attempts"));
    if (r.what != last && progress) progress("SSH on " + endpoint(c) + " not ready: " + r.what);
    last = r.what;
    auto left = std::chrono::duration_cast<milliseconds>(overall - Clock::now());
    if (left.count() <= 0)
      throw BuildError("timed out after " + seconds(c.timeout) + " waiting for SSH on " + endpoint(c) +
                       "; last attempt: " + last);
    cancel.sleep_for(std::min(left, r.counts ? kAuthRetryDelay : kRetryDelay));
  }
}

// ---------------------------------------------------------------------------------------------
// Running commands

struct ExecIo {
  std::function<void(const char*, size_t)> out, err;
  // Fills the buffer with the command's next stdin bytes; 0 means end of input. Empty: no input.
  std::function<size_t(char*, size_t)> in;
};

struct ExecResult {
  int status = 0;
  bool disconnected = false;
};

struct ExecOptions {
  std::optional<milliseconds> timeout;
  bool pty = false;
  // Report the remote shell's pid, so that cancelling can kill its process group.
  bool killable = false;
  milliseconds request_timeout = kRequestTimeout;
  bool may_reconnect = true;
};

// The first thing a killable command prints (to stderr): its shell's pid. OpenSSH refuses
// signal requests for root logins ("session signalling requires privilege separation") and
// dropbear ignores them, so stopping a command means killing its process group by pid.
constexpr std::string_view kPidMarker = "\\036imgbake-pid ";  // as printf's format
constexpr std::string_view kPidMarkerSeen = "\x1eimgbake-pid ";

// Takes the pid line out of stderr (login scripts may print before it) and passes on the rest.
class PidLineFilter {
 public:
  explicit PidLineFilter(const std::function<void(const char*, size_t)>& sink) : sink_(sink) {}
  void feed(const char* d, size_t n) {
    if (!scanning_) return forward(d, n);
    pending_.append(d, n);
    size_t start = 0;
    while (scanning_) {
      size_t nl = pending_.find('\n', start);
      if (nl == std::string::npos) break;
      std::string_view line(pending_.data() + start, nl - start);
      if (line.substr(0, kPidMarkerSeen.size()) == kPidMarkerSeen) {
        pid_ = std::strtol(std::string(line.substr(kPidMarkerSeen.size())).c_str(), nullptr, 10);
        scanning_ = false;
      } else {
        forward(pending_.data() + start, nl + 1 - start);
      }
      start = nl + 1;
    }
    scanned_ += start;
    pending_.erase(0, start);
    if (scanning_ && scanned_ + pending_.size() > 4096) scanning_ = false;  // no marker is coming
    if (!scanning_) flush();
  }
  void flush() {
    scanning_ = false;
    std::string rest = std::move(pending_);
    pending_.clear();
    if (!rest.empty()) forward(rest.data(), rest.size());
  }
  std::optional<long> pid() const { return pid_ > 0 ? std::optional<long>(pid_) : std::nullopt; }

 private:
  void forward(const char* d, size_t n) {
    if (sink_) sink_(d, n);
  }
  const std::function<void(const char*, size_t)>& sink_;
  std::string pending_;
  size_t scanned_ = 0;
  bool scanning_ = true;
  long pid_ = 0;
};

struct ExitInfo {
  bool have = false;
  int status = -1;
  Clock::time_point at;
};

// The session is non-blocking except inside one of these: SFTP and SCP need blocking mode.
// Restores the previous mode, so that scopes nest (a recursive download).
class BlockingScope {
 public:
  explicit BlockingScope(ssh_session s) : s_(s), was_(ssh_is_blocking(s)) { ssh_set_blocking(s_, 1); }
  ~BlockingScope() { ssh_set_blocking(s_, was_); }
  BlockingScope(const BlockingScope&) = delete;
  BlockingScope& operator=(const BlockingScope&) = delete;

 private:
  ssh_session s_;
  int was_;
};

}  // namespace

// ---------------------------------------------------------------------------------------------

struct SshCommunicator::Impl {
  SshConfig config;
  // Hooked to the SFTP channel; outlive the session (declared before it).
  ssh_channel_callbacks_struct sftp_callbacks{};
  std::string sftp_stderr;
  KeyPtr key;
  SessionPtr session;
  SftpPtr sftp;  // after `session`: freed first
  bool sftp_unavailable = false;
  bool scp_unavailable = false;
  bool scp_probed = false;
  SshCommunicator* owner = nullptr;

  void note(const std::string& msg) const {
    if (owner && owner->log) owner->log(msg);
  }
  std::string where() const { return endpoint(config); }

  void drop_connection() {
    sftp.reset();
    session.reset();
    // A reboot may bring up another system (an installer's, then the installed one).
    sftp_unavailable = scp_unavailable = scp_probed = false;
  }

  void ensure_connected(const CancelToken& cancel) {
    cancel.throw_if_cancelled();
    if (alive(session.get())) return;
    bool had = session != nullptr;
    drop_connection();
    if (had) note("SSH connection to " + where() + " was lost; reconnecting");
    session = establish(config, key.get(), cancel, [this](std::string_view m) { note(std::string(m)); });
  }

  // Opens a session channel. A connection found dead here ran nothing yet: reconnect once.
  // Puts the session in non-blocking mode: not to be called inside a BlockingScope.
  ChannelPtr open_channel(const CancelToken& cancel, milliseconds timeout, bool may_reconnect) {
    for (int round = 0;; ++round) {
      if (may_reconnect)
        ensure_connected(cancel);
      else if (!alive(session.get()))
        throw BuildError("the SSH connection to " + where() + " is gone");
      ssh_session s = session.get();
      ssh_set_blocking(s, 0);
      ChannelPtr ch(ssh_channel_new(s));
      int rc = SSH_ERROR;
      if (ch) {
        rc = call_until_done(s, cancel, Clock::now() + timeout, SSH_AGAIN,
                             [&] { return ssh_channel_open_session(ch.get()); });
        if (rc == SSH_OK) return ch;
      }
      std::string err = ssh_get_error(s);
      if (rc == SSH_AGAIN)
        throw BuildError("SSH server " + where() + " did not open a session channel within " + seconds(timeout));
      if (round == 0 && may_reconnect && !alive(s)) {
        ch.reset();
        drop_connection();
        continue;
      }
      throw BuildError("cannot open an SSH session channel on " + where() + ": " + err);
    }
  }

  // SIGTERM to a remote process group, over a channel of its own.
  void kill_remote_group(long pid) {
    if (!alive(session.get())) return;
    CancelToken never;  // the caller's token has fired; this must still run, briefly
    ExecOptions o;
    o.timeout = milliseconds(500);
    o.request_timeout = milliseconds(500);
    o.may_reconnect = false;
    const std::string p = std::to_string(pid);
    try {
      // OpenSSH makes the shell a session (and process group) leader; elsewhere kill at least the shell.
      exec("kill -TERM -" + p + " 2>/dev/null || kill -TERM " + p, ExecIo{}, o, never);
    } catch (const std::exception&) {
      // Best effort: the machine is usually torn down after a cancellation anyway.
    }
  }

  // Runs `command_line` on a new channel, feeding `io.in` to its stdin and its output to
  // `io.out` and `io.err` as it arrives. Returns the exit status (128+N for signal N), or
  // `disconnected` when the connection dropped (or the channel closed) before one came.
  ExecResult exec(const std::string& command_line, const ExecIo& io_in, const ExecOptions& opts,
                  const CancelToken& cancel) {
    ExecIo io = io_in;
    std::string command = command_line;
    std::optional<PidLineFilter> pid_filter;
    if (opts.killable && !opts.pty) {
      command = "printf '" + std::string(kPidMarker) + "%s\\n' \"$$\" >&2; " + command;
      pid_filter.emplace(io_in.err);
      io.err = [&pid_filter](const char* d, size_t n) { pid_filter->feed(d, n); };
    }
    auto remote_pid = [&] {
      if (!pid_filter) return std::optional<long>();
      auto pid = pid_filter->pid();
      pid_filter->flush();
      return pid;
    };
    ChannelPtr ch = open_channel(cancel, opts.request_timeout, opts.may_reconnect);
    ssh_session s = session.get();
    ExitInfo info;
    ssh_channel_callbacks_struct cb{};
    ssh_callbacks_init(&cb);
    cb.userdata = &info;
    cb.channel_exit_status_function = [](ssh_session, ssh_channel, int status, void* user) {
      auto* i = static_cast<ExitInfo*>(user);
      i->have = true;
      i->status = status;
      i->at = Clock::now();
    };
    // Like Go's x/crypto/ssh (and so Packer): a command killed by signal N exits 128+N.
    cb.channel_exit_signal_function = [](ssh_session, ssh_channel, const char* signal, int, const char*, const char*,
                                         void* user) {
      auto* i = static_cast<ExitInfo*>(user);
      i->have = true;
      i->status = 128 + signal_number(signal);
      i->at = Clock::now();
    };
    ssh_set_channel_callbacks(ch.get(), &cb);
    // `cb` lives on this stack: unhook it before the channel (which libssh may keep until the
    // server confirms the close) outlives this call.
    struct Unhook {
      ssh_channel ch;
      ssh_channel_callbacks cb;
      ~Unhook() { ssh_remove_channel_callbacks(ch, cb); }
    } unhook{ch.get(), &cb};

    auto request_deadline = Clock::now() + opts.request_timeout;
    if (opts.pty) {
      int rc = call_until_done(s, cancel, request_deadline, SSH_AGAIN,
                               [&] { return ssh_channel_request_pty_size(ch.get(), "xterm", 80, 24); });
      if (rc != SSH_OK) {
        if (!alive(s)) return {kDisconnected, true};
        throw BuildError("SSH server " + where() + " refused a pty: " + std::string(ssh_get_error(s)));
      }
    }
    int rc = call_until_done(s, cancel, request_deadline, SSH_AGAIN,
                             [&] { return ssh_channel_request_exec(ch.get(), command.c_str()); });
    if (rc != SSH_OK) {
      if (!alive(s)) return {kDisconnected, true};
      throw BuildError("SSH server " + where() + " refused to run a command: " + std::string(ssh_get_error(s)));
    }

    // Without input, stdin is at its end at once: a command that reads it must not hang.
    if (!io.in) ssh_channel_send_eof(ch.get());

    const auto started = Clock::now();
    std::optional<Clock::time_point> deadline;
    if (opts.timeout) deadline = started + *opts.timeout;
    auto last_data = started, last_traffic = started;
    const milliseconds keep_alive = config.keep_alive_interval;
    std::string in_buf;
    size_t in_off = 0;
    bool in_done = !io.in;
    int wait_stream = 0;  // wait on the stream that spoke last
    bool broken = false;
    std::vector<char> buf(kChunk);

    // Reads what libssh has buffered for both streams; returns whether anything came.
    auto drain = [&](int max_reads) {
      bool got = false;
      for (int stream = 0; stream < 2; ++stream) {
        for (int i = 0; i < max_reads; ++i) {
          int n = ssh_channel_read_nonblocking(ch.get(), buf.data(), static_cast<uint32_t>(buf.size()), stream);
          if (n > 0) {
            const auto& sink = stream ? io.err : io.out;
            if (sink) sink(buf.data(), static_cast<size_t>(n));
            got = true;
            wait_stream = stream;
            continue;
          }
          if (n == SSH_ERROR) broken = true;
          break;
        }
      }
      return got;
    };

    // Stops the command: a TERM signal request (OpenSSH honours it, except for root logins),
    // `kill` of its process group when its pid is known, and closing the channel (a hangup
    // for a command on a pty). The channel is closed only once the command has ended, if it
    // ends soon: dropbear 2022.83 drops the whole connection ("Failed assertion
    // `!channel->sent_close'") when a command exits after its channel was closed.
    auto abort_remote = [&] {
      std::optional<long> pid = remote_pid();
      ssh_channel_request_send_signal(ch.get(), "TERM");
      if (pid) kill_remote_group(*pid);
      CancelToken never;
      auto until = Clock::now() + milliseconds(pid ? 500 : 0);
      while (Clock::now() < until && !info.have && !ssh_channel_is_closed(ch.get()) && alive(s) && !broken) {
        drain(16);
        if (!ssh_channel_is_eof(ch.get())) {
          if (ssh_channel_poll_timeout(ch.get(), 20, 0) == SSH_ERROR) break;
        } else {
          wait_io(s, never, 20);
          ssh_channel_get_exit_status(ch.get());
        }
      }
      ssh_channel_close(ch.get());
      ssh_blocking_flush(s, 200);
    };

    while (true) {
      auto now = Clock::now();
      if (!in_done) {
        if (in_off == in_buf.size()) {
          in_buf.resize(kChunk);
          in_buf.resize(io.in(in_buf.data(), in_buf.size()));
          in_off = 0;
          if (in_buf.empty()) {
            ssh_channel_send_eof(ch.get());
            in_done = true;
          }
        }
        if (!in_done) {
          uint32_t window = ssh_channel_window_size(ch.get());
          if (window > 0) {
            uint32_t len = static_cast<uint32_t>(std::min<size_t>(window, in_buf.size() - in_off));
            int n = ssh_channel_write(ch.get(), in_buf.data() + in_off, len);
            if (n == SSH_ERROR) {
              // The command stopped reading (it failed, or the connection dropped): its exit
              // status or the dropped connection tell the rest.
              in_done = true;
            } else if (n > 0) {
              in_off += static_cast<size_t>(n);
              last_traffic = now;
            }
          }
        }
      }

      bool got = drain(16);
      // Reading processed the window adjustments too.
      bool can_write = !in_done && ssh_channel_window_size(ch.get()) > 0;
      now = Clock::now();
      if (got) last_data = last_traffic = now;
      if (broken || !alive(s)) {
        drain(1024);
        remote_pid();
        return {info.have ? info.status : kDisconnected, !info.have};
      }
      if (!got) {
        bool eof = ssh_channel_is_eof(ch.get()) != 0, closed = ssh_channel_is_closed(ch.get()) != 0;
        if (closed || (eof && info.have) ||
            (info.have && now - last_data >= kAfterExitGrace && now - info.at >= kAfterExitGrace)) {
          drain(1024);
          remote_pid();
          // A channel closed without an exit status is what Packer reports as a disconnect.
          return {info.have ? info.status : kDisconnected, !info.have};
        }
      }
      if (cancel.cancelled()) {
        abort_remote();
        throw Cancelled();
      }
      if (deadline && now >= *deadline) {
        abort_remote();
        throw BuildError("remote command timed out after " + seconds(*opts.timeout) + " and was stopped");
      }
      if (keep_alive.count() > 0 && now - last_traffic >= keep_alive) {
        ssh_send_ignore(s, "keepalive");
        last_traffic = now;
      }
      if (got || can_write) continue;
      if (!in_done) {
        // The window is full: the server's adjustment (or output) wakes the socket.
        wait_io(s, cancel, 20);
      } else if (!ssh_channel_is_eof(ch.get())) {
        if (ssh_channel_poll_timeout(ch.get(), 50, wait_stream) == SSH_ERROR) broken = true;
      } else {
        // After EOF libssh's channel polls return at once; wait on the socket for the exit
        // status and the close, and let a non-blocking exit status query process them.
        wait_io(s, cancel, 50);
        if (ssh_channel_get_exit_status(ch.get()) == SSH_ERROR && !alive(s)) broken = true;
      }
    }
  }

  // Runs a helper command and collects its output (capped: these are short).
  ExecResult exec_capture(const std::string& command, const CancelToken& cancel, std::string* out, std::string* err) {
    ExecIo io;
    auto capped = [](std::string* dst) {
      return [dst](const char* d, size_t n) {
        if (dst && dst->size() < 65536) dst->append(d, std::min(n, 65536 - dst->size()));
      };
    };
    io.out = capped(out);
    io.err = capped(err);
    return exec(command, io, ExecOptions{}, cancel);
  }

  void exec_checked(const std::string& command, const std::string& what, const CancelToken& cancel) {
    std::string err;
    ExecResult r = exec_capture(command, cancel, nullptr, &err);
    if (r.disconnected) throw BuildError("SSH connection to " + where() + " lost while " + what);
    if (r.status != 0)
      throw BuildError(what + " failed (exit status " + std::to_string(r.status) + ")" +
                       (err.empty() ? std::string() : ": " + err.substr(0, err.find_last_not_of('\n') + 1)));
  }

  // ------------------------------------------------------------------------------------------
  // Transfers

  sftp_session get_sftp(const CancelToken& cancel) {
    ensure_connected(cancel);
    if (sftp) return sftp.get();
    if (sftp_unavailable) return nullptr;
    ssh_session s = session.get();
    BlockingScope blocking(s);
    SftpPtr sf(sftp_new(s));
    std::string why;
    if (!sf) {
      why = ssh_get_error(s);
    } else {
      keep_stderr_empty(sf->channel);
      if (sftp_init(sf.get()) != SSH_OK) {
        why = "SFTP initialisation failed: " + sftp_error_text(sf.get(), s);
        if (!sftp_stderr.empty()) why += ": " + sftp_stderr.substr(0, sftp_stderr.find_last_not_of('\n') + 1);
        sf.reset();
      }
    }
    if (!sf) {
      if (!alive(s)) throw BuildError("SSH connection to " + where() + " lost while starting SFTP: " + why);
      sftp_unavailable = true;
      note("SFTP is not available on " + where() + " (" + why + "); falling back");
      return nullptr;
    }
    sftp = std::move(sf);
    return sftp.get();
  }

  // libssh 0.10's SFTP reads loop forever on a channel that has ended while its stderr holds
  // unread bytes (ssh_channel_is_eof says no). That is what dropbear produces when its
  // sftp-server is missing: it runs it through the shell ("not found" on stderr, then EOF).
  // So stderr is taken as it comes (and kept for the error message).
  void keep_stderr_empty(ssh_channel ch) {
    sftp_stderr.clear();
    sftp_callbacks = {};
    ssh_callbacks_init(&sftp_callbacks);
    sftp_callbacks.userdata = &sftp_stderr;
    sftp_callbacks.channel_data_function = [](ssh_session, ssh_channel, void* data, uint32_t len, int is_stderr,
                                              void* user) -> int {
      if (!is_stderr) return 0;  // SFTP's own data: left for libssh's SFTP code
      auto* text = static_cast<std::string*>(user);
      if (text->size() < 4096) text->append(static_cast<const char*>(data), std::min<size_t>(len, 4096 - text->size()));
      return static_cast<int>(len);
    };
    ssh_set_channel_callbacks(ch, &sftp_callbacks);
    // What is buffered already (the callback runs when more arrives).
    char buf[1024];
    int n;
    while ((n = ssh_channel_read_nonblocking(ch, buf, sizeof buf, 1)) > 0)
      if (sftp_stderr.size() < 4096) sftp_stderr.append(buf, static_cast<size_t>(n));
  }

  [[noreturn]] void transfer_failed(const std::string& what, const std::string& why) {
    if (!alive(session.get())) {
      drop_connection();
      throw BuildError(what + ": the SSH connection to " + where() + " was lost");
    }
    throw BuildError(what + ": " + why);
  }

  void sftp_upload(sftp_session sf, const std::string& local, int fd, const std::string& remote, mode_t mode,
                   const CancelToken& cancel) {
    const std::string what = "uploading '" + local + "' to '" + remote + "' with SFTP";
    BlockingScope blocking(session.get());
    sftp_file f = sftp_open(sf, remote.c_str(), O_WRONLY | O_CREAT | O_TRUNC, mode & 07777);
    if (!f) transfer_failed(what, sftp_error_text(sf, session.get()));
    std::vector<char> buf(kChunk);
    while (true) {
      if (cancel.cancelled()) {
        sftp_close(f);
        throw Cancelled();
      }
      ssize_t n = ::read(fd, buf.data(), buf.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        sftp_close(f);
        throw BuildError(what + ": cannot read '" + local + "': " + std::strerror(errno));
      }
      if (n == 0) break;
      if (sftp_write(f, buf.data(), static_cast<size_t>(n)) != n) {
        std::string why = sftp_error_text(sf, session.get());
        sftp_close(f);
        transfer_failed(what, why);
      }
    }
    if (sftp_close(f) != SSH_OK) transfer_failed(what, sftp_error_text(sf, session.get()));
    // Creating applied the server's umask, and an existing file kept its mode.
    if (sftp_chmod(sf, remote.c_str(), mode & 07777) != SSH_OK)
      transfer_failed(what + " (setting mode " + octal(mode) + ")", sftp_error_text(sf, session.get()));
  }

  // libssh's ssh_scp_init succeeds whether or not the server has an scp to run (the failure
  // shows only with the first file), so ask first.
  bool scp_usable(const CancelToken& cancel) {
    if (scp_unavailable) return false;
    if (scp_probed) return true;
    ExecResult r = exec_capture("command -v scp >/dev/null 2>&1", cancel, nullptr, nullptr);
    if (r.disconnected) transfer_failed("looking for scp on " + where(), "the connection was lost");
    scp_probed = true;
    if (r.status != 0) scp_gone("there is no scp on the PATH");
    return !scp_unavailable;
  }
  void scp_gone(const std::string& why) {
    scp_unavailable = true;
    note("scp is not available on " + where() + " either (" + why + "); falling back to cat");
  }

  // Returns false when the server's scp does not work (nothing was transferred then).
  bool scp_upload(const std::string& local, int fd, off_t size, const std::string& remote, mode_t mode,
                  const CancelToken& cancel) {
    const std::string what = "uploading '" + local + "' to '" + remote + "' with scp";
    ssh_session s = session.get();
    {
      BlockingScope blocking(s);
      // Like Packer: the target directory is scp's argument and the name comes with the file.
      ssh_scp scp = ssh_scp_new(s, SSH_SCP_WRITE, remote_parent(remote).c_str());
      if (!scp) transfer_failed(what, ssh_get_error(s));
      struct Free {
        ssh_scp scp;
        ~Free() { ssh_scp_free(scp); }
      } free_scp{scp};
      if (ssh_scp_init(scp) != SSH_OK ||
          ssh_scp_push_file64(scp, remote_base(remote).c_str(), static_cast<uint64_t>(size),
                              static_cast<int>(mode & 0777)) != SSH_OK) {
        std::string why = ssh_get_error(s);
        if (!alive(s)) transfer_failed(what, why);
        // An scp that is there but cannot run (missing libraries) ends the channel unheard;
        // a working one answers problems with a message.
        std::string l = lower(why);
        if (l.find("channel is closed") != std::string::npos || l.find("reading status code") != std::string::npos) {
          scp_gone(why);
          return false;
        }
        transfer_failed(what, why);
      }
      std::vector<char> buf(kChunk);
      off_t sent = 0;
      while (sent < size) {
        if (cancel.cancelled()) {
          ssh_scp_close(scp);
          throw Cancelled();
        }
        ssize_t n = ::read(fd, buf.data(), static_cast<size_t>(std::min<off_t>(size - sent, kChunk)));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
          ssh_scp_close(scp);
          throw BuildError(what + ": cannot read '" + local +
                           "': " + (n == 0 ? std::string("file shrank while uploading") : std::strerror(errno)));
        }
        if (ssh_scp_write(scp, buf.data(), static_cast<size_t>(n)) != SSH_OK) transfer_failed(what, ssh_get_error(s));
        sent += n;
      }
      if (ssh_scp_close(scp) != SSH_OK) transfer_failed(what, ssh_get_error(s));
    }
    // scp applies the umask to new files and leaves existing ones' modes alone.
    exec_checked("chmod " + octal(mode) + " " + quote(remote), what + " (setting mode " + octal(mode) + ")", cancel);
    return true;
  }

  void cat_upload(const std::string& local, int fd, const std::string& remote, mode_t mode, const CancelToken& cancel) {
    const std::string what = "uploading '" + local + "' to '" + remote + "' with cat";
    ExecIo io;
    std::string err;
    io.err = [&err](const char* d, size_t n) {
      if (err.size() < 4096) err.append(d, std::min<size_t>(n, 4096 - err.size()));
    };
    io.in = [&](char* dst, size_t n) -> size_t {
      while (true) {
        ssize_t r = ::read(fd, dst, n);
        if (r >= 0) return static_cast<size_t>(r);
        if (errno != EINTR) throw BuildError(what + ": cannot read '" + local + "': " + std::strerror(errno));
      }
    };
    ExecResult r =
        exec("cat > " + quote(remote) + " && chmod " + octal(mode) + " " + quote(remote), io, ExecOptions{}, cancel);
    if (r.disconnected) transfer_failed(what, "the connection was lost");
    if (r.status != 0)
      throw BuildError(what + " failed (exit status " + std::to_string(r.status) + ")" +
                       (err.empty() ? std::string() : ": " + err.substr(0, err.find_last_not_of('\n') + 1)));
  }

  enum class Method { kSftp, kScp, kCat };

  Method upload_file(const std::string& local, const std::string& remote, const CancelToken& cancel) {
    Fd fd(::open(local.c_str(), O_RDONLY | O_CLOEXEC));
    struct stat st;
    if (fd.get() < 0 || fstat(fd.get(), &st) != 0)
      throw BuildError("cannot read '" + local + "': " + std::strerror(errno));
    if (sftp_session sf = get_sftp(cancel)) {
      sftp_upload(sf, local, fd.get(), remote, st.st_mode, cancel);
      return Method::kSftp;
    }
    if (scp_usable(cancel) && scp_upload(local, fd.get(), st.st_size, remote, st.st_mode, cancel)) return Method::kScp;
    cat_upload(local, fd.get(), remote, st.st_mode, cancel);
    return Method::kCat;
  }

  bool remote_dir_exists(const std::string& path, const CancelToken& cancel) {
    if (sftp_session sf = get_sftp(cancel)) {
      BlockingScope blocking(session.get());
      sftp_attributes a = sftp_stat(sf, path.c_str());
      bool is_dir = a && S_ISDIR(a->permissions);
      if (a) sftp_attributes_free(a);
      return is_dir;
    }
    ExecResult r = exec_capture("test -d " + quote(path), cancel, nullptr, nullptr);
    if (r.disconnected) transfer_failed("checking remote directory '" + path + "'", "the connection was lost");
    return r.status == 0;
  }

  // mkdir -p for each directory (parents first), then `fix_modes` sets their exact modes.
  void make_dirs(const std::vector<std::pair<std::string, mode_t>>& dirs, const CancelToken& cancel) {
    if (sftp_session sf = get_sftp(cancel)) {
      BlockingScope blocking(session.get());
      for (const auto& entry : dirs) {
        const std::string& dir = entry.first;
        std::string prefix = dir.front() == '/' ? "/" : "";
        size_t pos = 0;
        while (pos < dir.size()) {
          size_t next = dir.find('/', pos);
          if (next == std::string::npos) next = dir.size();
          if (next > pos) {
            prefix += (prefix.empty() || prefix.back() == '/' ? "" : "/") + dir.substr(pos, next - pos);
            sftp_attributes a = sftp_stat(sf, prefix.c_str());
            bool is_dir = a && S_ISDIR(a->permissions);
            if (a) sftp_attributes_free(a);
            // Owner-writable while it is filled; fix_modes sets the exact mode afterwards.
            if (!is_dir && sftp_mkdir(sf, prefix.c_str(), 0755) != SSH_OK) {
              std::string why = sftp_error_text(sf, session.get());
              a = sftp_stat(sf, prefix.c_str());
              is_dir = a && S_ISDIR(a->permissions);
              if (a) sftp_attributes_free(a);
              if (!is_dir) transfer_failed("creating remote directory '" + prefix + "' with SFTP", why);
            }
          }
          pos = next + 1;
        }
      }
      return;
    }
    batch(
        dirs, "mkdir -p", [](const std::string& d, mode_t) { return quote(d); }, "creating remote directories", cancel);
  }

  void fix_modes(const std::vector<std::pair<std::string, mode_t>>& dirs, const CancelToken& cancel) {
    if (sftp_session sf = get_sftp(cancel)) {
      BlockingScope blocking(session.get());
      for (auto it = dirs.rbegin(); it != dirs.rend(); ++it)
        if (sftp_chmod(sf, it->first.c_str(), it->second & 07777) != SSH_OK)
          transfer_failed("setting the mode of remote directory '" + it->first + "'",
                          sftp_error_text(sf, session.get()));
      return;
    }
    std::vector<std::pair<std::string, mode_t>> reversed(dirs.rbegin(), dirs.rend());
    batch(
        reversed, "true", [](const std::string& d, mode_t m) { return "&& chmod " + octal(m) + " " + quote(d); },
        "setting the modes of remote directories", cancel);
  }

  // Runs `head` followed by one argument per directory, in commands of bounded length.
  template <typename Arg>
  void batch(const std::vector<std::pair<std::string, mode_t>>& dirs, const std::string& head, Arg arg,
             const std::string& what, const CancelToken& cancel) {
    std::string cmd = head;
    size_t args = 0;
    for (const auto& [dir, mode] : dirs) {
      cmd += " " + arg(dir, mode);
      ++args;
      if (cmd.size() > 32768) {
        exec_checked(cmd, what, cancel);
        cmd = head;
        args = 0;
      }
    }
    if (args > 0) exec_checked(cmd, what, cancel);
  }

  // ------------------------------------------------------------------------------------------

  void sftp_download_file(sftp_session sf, const std::string& remote, const std::string& local, mode_t mode,
                          const CancelToken& cancel) {
    const std::string what = "downloading '" + remote + "' to '" + local + "' with SFTP";
    sftp_file f = sftp_open(sf, remote.c_str(), O_RDONLY, 0);
    if (!f) transfer_failed(what, sftp_error_text(sf, session.get()));
    struct Close {
      sftp_file f;
      ~Close() { sftp_close(f); }
    } close_remote{f};
    Fd fd(::open(local.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    if (fd.get() < 0) throw BuildError(what + ": cannot create '" + local + "': " + std::strerror(errno));
    UnlinkUnlessDone cleanup{local};
    std::vector<char> buf(kChunk);
    while (true) {
      cancel.throw_if_cancelled();
      ssize_t n = sftp_read(f, buf.data(), buf.size());
      if (n < 0) transfer_failed(what, sftp_error_text(sf, session.get()));
      if (n == 0) break;
      for (ssize_t off = 0; off < n;) {
        ssize_t w = ::write(fd.get(), buf.data() + off, static_cast<size_t>(n - off));
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) throw BuildError(what + ": cannot write '" + local + "': " + std::strerror(errno));
        off += w;
      }
    }
    if (fchmod(fd.get(), mode & 07777) != 0 || fd.release_and_close() != 0)
      throw BuildError(what + ": cannot write '" + local + "': " + std::strerror(errno));
    cleanup.done = true;
  }

  void sftp_download(sftp_session sf, const std::string& remote, const std::string& local, const CancelToken& cancel) {
    BlockingScope blocking(session.get());
    sftp_attributes a = sftp_stat(sf, remote.c_str());
    if (!a) transfer_failed("downloading '" + remote + "' with SFTP", sftp_error_text(sf, session.get()));
    mode_t mode = a->permissions;
    sftp_attributes_free(a);
    if (!S_ISDIR(mode)) {
      sftp_download_file(sf, remote, local, mode, cancel);
      return;
    }
    std::error_code ec;
    fs::create_directories(local, ec);
    if (ec) throw BuildError("cannot create directory '" + local + "': " + ec.message());
    std::vector<std::string> entries;
    sftp_dir dir = sftp_opendir(sf, remote.c_str());
    if (!dir) transfer_failed("listing remote directory '" + remote + "'", sftp_error_text(sf, session.get()));
    while (sftp_attributes e = sftp_readdir(sf, dir)) {
      std::string name = e->name ? e->name : "";
      if (name != "." && name != ".." && !name.empty()) entries.push_back(name);
      sftp_attributes_free(e);
    }
    bool complete = sftp_dir_eof(dir) != 0;
    sftp_closedir(dir);
    if (!complete) transfer_failed("listing remote directory '" + remote + "'", sftp_error_text(sf, session.get()));
    for (const auto& name : entries) {
      cancel.throw_if_cancelled();
      sftp_download(sf, remote + "/" + name, local + "/" + name, cancel);
    }
    if (::chmod(local.c_str(), mode & 07777) != 0)
      throw BuildError("cannot set the mode of '" + local + "': " + std::strerror(errno));
  }

  void cat_download(const std::string& remote, const std::string& local, const CancelToken& cancel) {
    const std::string what = "downloading '" + remote + "' to '" + local + "' with cat";
    std::string mode_text;
    mode_t mode = 0644;
    // Best effort: busybox and coreutils both have `stat -c`.
    ExecResult st = exec_capture("stat -c %a " + quote(remote), cancel, &mode_text, nullptr);
    if (st.disconnected) transfer_failed(what, "the connection was lost");
    if (st.status == 0) {
      char* end = nullptr;
      unsigned long m = std::strtoul(mode_text.c_str(), &end, 8);
      if (end != mode_text.c_str()) mode = static_cast<mode_t>(m & 07777);
    }
    Fd fd(::open(local.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    if (fd.get() < 0) throw BuildError(what + ": cannot create '" + local + "': " + std::strerror(errno));
    UnlinkUnlessDone cleanup{local};
    ExecIo io;
    std::string err;
    io.out = [&](const char* d, size_t n) {
      while (n > 0) {
        ssize_t w = ::write(fd.get(), d, n);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) throw BuildError(what + ": cannot write '" + local + "': " + std::strerror(errno));
        d += w;
        n -= static_cast<size_t>(w);
      }
    };
    io.err = [&err](const char* d, size_t n) {
      if (err.size() < 4096) err.append(d, std::min<size_t>(n, 4096 - err.size()));
    };
    ExecResult r = exec("cat " + quote(remote), io, ExecOptions{}, cancel);
    if (r.disconnected) transfer_failed(what, "the connection was lost");
    if (r.status != 0)
      throw BuildError(what + " failed (exit status " + std::to_string(r.status) + ")" +
                       (err.empty() ? std::string() : ": " + err.substr(0, err.find_last_not_of('\n') + 1)));
    if (fchmod(fd.get(), mode) != 0 || fd.release_and_close() != 0)
      throw BuildError(what + ": cannot write '" + local + "': " + std::strerror(errno));
    cleanup.done = true;
  }
};

// ---------------------------------------------------------------------------------------------

SshCommunicator::SshCommunicator(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) { impl_->owner = this; }

SshCommunicator::~SshCommunicator() = default;

std::unique_ptr<SshCommunicator> SshCommunicator::connect(const SshConfig& config, const CancelToken& cancel,
                                                          const Progress& progress) {
  if (config.host.empty()) throw BuildError("SSH: no host to connect to");
  if (config.port <= 0 || config.port > 65535) throw BuildError("SSH: invalid port " + std::to_string(config.port));
  if (config.private_key_file.empty() && config.password.empty() && !config.agent_auth)
    throw BuildError("SSH: no way to log in: set a private key file, a password, or agent authentication");
  auto impl = std::make_unique<Impl>();
  impl->config = config;
  if (!config.private_key_file.empty()) {
    // Read once, up front: a missing or encrypted key is a configuration error, not
    // something to retry for five minutes.
    if (::access(config.private_key_file.c_str(), R_OK) != 0)
      throw BuildError("SSH: cannot read private key '" + config.private_key_file + "': " + std::strerror(errno));
    ssh_key key = nullptr;
    if (ssh_pki_import_privkey_file(config.private_key_file.c_str(), nullptr, nullptr, nullptr, &key) != SSH_OK)
      throw BuildError("SSH: cannot load private key '" + config.private_key_file +
                       "' (not a private key, or protected by a passphrase)");
    impl->key.reset(key);
  }
  impl->session = establish(impl->config, impl->key.get(), cancel, progress);
  return std::unique_ptr<SshCommunicator>(new SshCommunicator(std::move(impl)));
}

int SshCommunicator::run(const RemoteCommand& cmd, const LineSink& out, const LineSink& err,
                         const CancelToken& cancel) {
  cancel.throw_if_cancelled();
  // Servers accept environment requests only for names listed in AcceptEnv (usually LANG and
  // LC_*), so the variables are exported by the command line itself.
  std::string line;
  for (const auto& [name, value] : cmd.env) {
    if (!valid_env_name(name)) throw BuildError("invalid environment variable name '" + name + "'");
    line += "export " + name + "=" + quote(value) + "; ";
  }
  line += cmd.command;
  LineSplitter out_lines(out), err_lines(err);
  ExecIo io;
  io.out = [&](const char* d, size_t n) { out_lines.feed(d, n); };
  io.err = [&](const char* d, size_t n) { err_lines.feed(d, n); };
  ExecResult r;
  try {
    ExecOptions opts;
    opts.timeout = cmd.timeout;
    opts.pty = impl_->config.pty;
    opts.killable = true;
    r = impl_->exec(line, io, opts, cancel);
  } catch (...) {
    out_lines.flush();
    err_lines.flush();
    throw;
  }
  out_lines.flush();
  err_lines.flush();
  return r.disconnected ? kDisconnected : r.status;
}

void SshCommunicator::upload(const std::string& local_path, const std::string& remote_path, const CancelToken& cancel) {
  cancel.throw_if_cancelled();
  std::error_code ec;
  auto status = fs::status(local_path, ec);
  if (ec) throw BuildError("cannot upload '" + local_path + "': " + ec.message());
  using Method = Impl::Method;
  auto method_name = [](Method m) { return m == Method::kSftp ? "SFTP" : m == Method::kScp ? "scp" : "cat"; };
  if (!fs::is_directory(status)) {
    Method m = impl_->upload_file(local_path, remote_path, cancel);
    if (m != Method::kSftp)
      impl_->note(std::string("uploaded '") + local_path + "' to '" + remote_path + "' with " + method_name(m));
    return;
  }

  std::string root = remote_path;
  while (root.size() > 1 && root.back() == '/') root.pop_back();
  std::vector<std::pair<std::string, mode_t>> dirs{{root, static_cast<mode_t>(status.permissions())}};
  std::vector<std::pair<std::string, std::string>> files;
  // Symlinks are followed, like Packer's directory uploads (a loop ends in an error).
  for (auto it = fs::recursive_directory_iterator(local_path, fs::directory_options::follow_directory_symlink, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    std::string rel = it->path().lexically_relative(local_path).generic_string();
    std::string remote = root + (root == "/" ? "" : "/") + rel;
    auto st = it->status(ec);
    if (ec) break;
    if (fs::is_directory(st)) {
      dirs.emplace_back(remote, static_cast<mode_t>(st.permissions()));
    } else if (fs::is_regular_file(st)) {
      files.emplace_back(it->path().string(), remote);
    } else {
      impl_->note("skipping '" + it->path().string() + "': not a regular file or directory");
    }
  }
  if (ec) throw BuildError("cannot read directory '" + local_path + "': " + ec.message());
  bool root_existed = impl_->remote_dir_exists(root, cancel);
  impl_->make_dirs(dirs, cancel);
  std::optional<Method> used;
  for (const auto& [local, remote] : files) {
    cancel.throw_if_cancelled();
    used = impl_->upload_file(local, remote, cancel);
  }
  // An existing destination keeps its mode: uploading into /tmp must not drop its sticky bit.
  if (root_existed) dirs.erase(dirs.begin());
  impl_->fix_modes(dirs, cancel);
  if (used && *used != Method::kSftp)
    impl_->note("uploaded directory '" + local_path + "' to '" + root + "' with " + method_name(*used));
}

void SshCommunicator::download(const std::string& remote_path, const std::string& local_path,
                               const CancelToken& cancel) {
  cancel.throw_if_cancelled();
  if (sftp_session sf = impl_->get_sftp(cancel)) {
    impl_->sftp_download(sf, remote_path, local_path, cancel);
    return;
  }
  impl_->cat_download(remote_path, local_path, cancel);
  impl_->note("downloaded '" + remote_path + "' to '" + local_path + "' with cat");
}

}  // namespace imgbake
