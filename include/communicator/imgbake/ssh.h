// The SSH communicator (libssh): waits for a booting machine's sshd, runs commands with
// their output streamed line by line, and moves files with SFTP, falling back to SCP and
// then to `cat` over an exec channel for minimal servers (dropbear ships neither).
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "imgbake/cancel.h"
#include "imgbake/communicator.h"
#include "imgbake/process.h"

namespace imgbake {

struct SshConfig {
  std::string host;
  int port = 22;
  std::string username;
  std::string password;          // password and keyboard-interactive authentication when set
  std::string private_key_file;  // an unencrypted private key (OpenSSH or PEM format) when set
  // How long to wait, overall, for the machine to accept an SSH login (Packer's ssh_timeout).
  std::chrono::milliseconds timeout{std::chrono::minutes(5)};
  // Logins the server refuses (or handshakes it breaks off) before giving up early: a wrong
  // key will not start working by waiting. Connections that fail don't count: the machine
  // may still be booting.
  int handshake_attempts = 10;
  bool pty = false;
  // An SSH_MSG_IGNORE is sent after this much silence during a command, so that NAT and qemu
  // user networking keep the connection and a dead peer is noticed; 0 turns it off.
  std::chrono::milliseconds keep_alive_interval{std::chrono::seconds(5)};
  bool agent_auth = false;  // try the keys of the agent at $SSH_AUTH_SOCK
};

// One communicator serves one thread at a time: libssh sessions are not thread-safe, and
// none of these methods lock. Distinct communicators may be used from distinct threads.
// The connection is re-established on the next call after it dropped (a reboot, or a
// command whose connection dropped), waiting up to config.timeout again.
class SshCommunicator : public Communicator {
 public:
  using Progress = std::function<void(std::string_view)>;

  // Retries every few hundred milliseconds until the SSH handshake and authentication
  // succeed. Throws Cancelled, or BuildError naming the last failure ("connection refused",
  // "banner not received", "authentication failed: ...") when config.timeout passes or the
  // server refused config.handshake_attempts logins. `progress` (may be empty) hears about
  // each change of state.
  static std::unique_ptr<SshCommunicator> connect(const SshConfig& config, const CancelToken& cancel,
                                                  const Progress& progress);
  ~SshCommunicator() override;
  SshCommunicator(const SshCommunicator&) = delete;
  SshCommunicator& operator=(const SshCommunicator&) = delete;

  // Runs `cmd.command` through the login shell of the remote user, which must be a POSIX
  // shell: the command line is prefixed with `export NAME='value';` for `cmd.env` (servers
  // refuse most environment requests) and with a `printf` of the shell's pid, which is taken
  // out of stderr again. Cancellation and timeouts stop the remote command (SIGTERM to its
  // process group) and close its channel. Commands get an empty stdin.
  RunResult run(const RemoteCommand& cmd, const LineSink& out, const LineSink& err, const CancelToken& cancel) override;
  // Files keep their permission bits. A directory is copied recursively so that
  // `remote_path` becomes a copy of it: parents are created as needed, symlinks are followed,
  // and a destination directory that already existed keeps its own mode.
  void upload(const std::string& local_path, const std::string& remote_path, const CancelToken& cancel) override;
  // Files keep their permission bits; directories are copied recursively (SFTP only).
  void download(const std::string& remote_path, const std::string& local_path, const CancelToken& cancel) override;

  // Hears which transfer method was used when falling back, and reconnections. May be empty.
  std::function<void(std::string_view)> log;

 private:
  struct Impl;
  explicit SshCommunicator(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace imgbake
