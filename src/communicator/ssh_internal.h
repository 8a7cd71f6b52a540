// What the pieces of SshCommunicator share: SshCommunicator::Impl (the session and what is known
// about the server), the libssh RAII wrappers, the exec channel's types, and small helpers.
//
// The session runs in non-blocking mode: waiting for a guest to boot, running a command and
// feeding a command's stdin are loops of our own, so that cancellation, deadlines and
// keep-alives are checked every few tens of milliseconds. SFTP and SCP are libssh's blocking
// APIs (libssh 0.10 offers no other); they switch the session to blocking mode for the
// duration and check cancellation between 64 KiB chunks.
//
// The Impl's methods live with their room:
//   ssh_connect.cpp   banner probes, handshake, authentication, (re)connecting; connect()
//   ssh_exec.cpp      exec channels: streaming, stdin, kill on cancel/timeout, disconnects; run()
//   ssh_transfer.cpp  SFTP, scp and cat transfers; upload() and download()
#pragma once

#include <libssh/callbacks.h>
#include <libssh/libssh.h>
#include <libssh/sftp.h>
#include <poll.h>
#include <sys/types.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "imgbake/cancel.h"
#include "imgbake/ssh.h"

namespace imgbake {

namespace ssh_detail {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// Opening a channel and the requests on it (pty, exec) are answered at once by any live server.
constexpr milliseconds kRequestTimeout{30000};
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

inline std::string quote(std::string_view s) {
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

inline std::string seconds(milliseconds d) {
  char buf[32];
  if (d >= std::chrono::minutes(2))
    std::snprintf(buf, sizeof buf, "%lldm%llds", static_cast<long long>(d.count() / 60000),
                  static_cast<long long>(d.count() / 1000 % 60));
  else
    std::snprintf(buf, sizeof buf, "%.1f s", static_cast<double>(d.count()) / 1000.0);
  return buf;
}

inline std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

inline bool alive(ssh_session s) {
  return s != nullptr && ssh_is_connected(s) != 0 && (ssh_get_status(s) & (SSH_CLOSED | SSH_CLOSED_ERROR)) == 0;
}

// Waits up to `timeout_ms` for the connection (or the cancel token) to become readable;
// libssh itself reads and processes what arrived on its next call.
inline void wait_io(ssh_session s, const CancelToken& cancel, int timeout_ms, bool writable = false) {
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

inline std::string endpoint(const SshConfig& c) { return c.host + ":" + std::to_string(c.port); }

// ---------------------------------------------------------------------------------------------
// Running commands

struct ExecIo {
  std::function<void(const char*, size_t)> out, err;
  // Fills the buffer with the command's next stdin bytes; 0 means end of input. Empty: no input.
  std::function<size_t(char*, size_t)> in;
};

struct ExecOptions {
  std::optional<milliseconds> timeout;
  bool pty = false;
  // Report the remote shell's pid, so that cancelling can kill its process group.
  bool killable = false;
  milliseconds request_timeout = kRequestTimeout;
  bool may_reconnect = true;
};

}  // namespace ssh_detail

// ---------------------------------------------------------------------------------------------

struct SshCommunicator::Impl {
  using milliseconds = ssh_detail::milliseconds;
  using ChannelPtr = ssh_detail::ChannelPtr;
  using ExecIo = ssh_detail::ExecIo;
  using ExecOptions = ssh_detail::ExecOptions;

  SshConfig config;
  // Hooked to the SFTP channel; outlive the session (declared before it).
  ssh_channel_callbacks_struct sftp_callbacks{};
  std::string sftp_stderr;
  ssh_detail::KeyPtr key;
  ssh_detail::SessionPtr session;
  ssh_detail::SftpPtr sftp;  // after `session`: freed first
  bool sftp_unavailable = false;
  bool scp_unavailable = false;
  bool scp_probed = false;
  SshCommunicator* owner = nullptr;

  void note(const std::string& msg) const {
    if (owner && owner->log) owner->log(msg);
  }
  std::string where() const { return ssh_detail::endpoint(config); }

  // ssh_connect.cpp
  void drop_connection();
  void ensure_connected(const CancelToken& cancel);

  // ssh_exec.cpp
  ChannelPtr open_channel(const CancelToken& cancel, milliseconds timeout, bool may_reconnect);
  void kill_remote_group(long pid);
  RunResult exec(const std::string& command_line, const ExecIo& io_in, const ExecOptions& opts,
                 const CancelToken& cancel);
  RunResult exec_capture(const std::string& command, const CancelToken& cancel, std::string* out, std::string* err);
  void exec_checked(const std::string& command, const std::string& what, const CancelToken& cancel);

  // ssh_transfer.cpp
  sftp_session get_sftp(const CancelToken& cancel);
  void keep_stderr_empty(ssh_channel ch);
  [[noreturn]] void transfer_failed(const std::string& what, const std::string& why);
  void sftp_upload(sftp_session sf, const std::string& local, int fd, const std::string& remote, mode_t mode,
                   const CancelToken& cancel);
  bool scp_usable(const CancelToken& cancel);
  void scp_gone(const std::string& why);
  bool scp_upload(const std::string& local, int fd, off_t size, const std::string& remote, mode_t mode,
                  const CancelToken& cancel);
  void cat_upload(const std::string& local, int fd, const std::string& remote, mode_t mode, const CancelToken& cancel);

  enum class Method { kSftp, kScp, kCat };

  Method upload_file(const std::string& local, const std::string& remote, const CancelToken& cancel);
  bool remote_dir_exists(const std::string& path, const CancelToken& cancel);
  void make_dirs(const std::vector<std::pair<std::string, mode_t>>& dirs, const CancelToken& cancel);
  void fix_modes(const std::vector<std::pair<std::string, mode_t>>& dirs, const CancelToken& cancel);
  template <typename Arg>
  void batch(const std::vector<std::pair<std::string, mode_t>>& dirs, const std::string& head, Arg arg,
             const std::string& what, const CancelToken& cancel);
  void sftp_download_file(sftp_session sf, const std::string& remote, const std::string& local, mode_t mode,
                          const CancelToken& cancel);
  void sftp_download(sftp_session sf, const std::string& remote, const std::string& local, const CancelToken& cancel);
  void cat_download(const std::string& remote, const std::string& local, const CancelToken& cancel);
};

}  // namespace imgbake
