// SshCommunicator: connecting. Waits for a booting machine's sshd (several TCP probes in
// flight until one sees the banner), then retries libssh handshakes and logins until one
// succeeds, the server refused too many, or the timeout passes.
#include "imgbake/ssh.h"

#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "imgbake/error.h"
#include "imgbake/unique_fd.h"
#include "ssh_internal.h"

namespace imgbake {

using namespace ssh_detail;

namespace {

// A connection attempt gets this long to reach the server's banner. Under qemu user
// networking the TCP connection is accepted by the host whether or not the guest listens, so
// only the banner tells that sshd is up; a short limit keeps the polling brisk.
constexpr milliseconds kBannerTimeout{3000};
// Once the banner arrived, key exchange and authentication get longer: an emulated (TCG)
// guest can take seconds for the key exchange, and cutting it off would only start over.
constexpr milliseconds kHandshakeTimeout{15000};
constexpr milliseconds kRetryDelay{250};      // after a failed connection
constexpr milliseconds kAuthRetryDelay{500};  // after a refused login

struct AttemptResult {
  SessionPtr session;   // set on success
  std::string what;     // why it failed, for the user
  bool counts = false;  // counts against handshake_attempts
};

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
    util::UniqueFd fd;
    Clock::time_point started;
  };
  std::vector<Probe> probes;  // closed when erased, also when `progress` throws
  auto close_probe = [&](size_t i) { probes.erase(probes.begin() + static_cast<std::ptrdiff_t>(i)); };
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
      util::UniqueFd fd(::socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
      if (fd && (::connect(fd.get(), res->ai_addr, res->ai_addrlen) == 0 || errno == EINPROGRESS))
        probes.push_back({std::move(fd), now});
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
    for (const auto& p : probes) fds.push_back({p.fd.get(), POLLIN, 0});
    fds.push_back({cancel.fd(), POLLIN, 0});
    ::poll(fds.data(), fds.size(), 50);
    for (size_t i = probes.size(); i-- > 0;) {
      if (!(fds[i].revents & (POLLIN | POLLERR | POLLHUP))) continue;
      char buf[8];
      ssize_t n = ::recv(probes[i].fd.get(), buf, sizeof buf, MSG_PEEK);
      if (n >= 4 && std::memcmp(buf, "SSH-", 4) == 0) found = true;
      if (n == 0) saw("the connection was closed before the SSH server greeted");
      if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
        saw(errno == ECONNREFUSED ? "connection refused" : std::string("cannot connect: ") + std::strerror(errno));
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) || n >= 4) close_probe(i);
    }
  }
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

}  // namespace

// ---------------------------------------------------------------------------------------------

void SshCommunicator::Impl::drop_connection() {
  sftp.reset();
  session.reset();
  // A reboot may bring up another system (an installer's, then the installed one).
  sftp_unavailable = scp_unavailable = scp_probed = false;
}

void SshCommunicator::Impl::ensure_connected(const CancelToken& cancel) {
  cancel.throw_if_cancelled();
  if (alive(session.get())) return;
  bool had = session != nullptr;
  drop_connection();
  if (had) note("SSH connection to " + where() + " was lost; reconnecting");
  session = establish(config, key.get(), cancel, [this](std::string_view m) { note(std::string(m)); });
}

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

}  // namespace imgbake
