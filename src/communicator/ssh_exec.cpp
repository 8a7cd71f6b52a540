// SshCommunicator: running commands. Each command gets an exec channel of its own; its output
// is streamed as it arrives, its stdin fed from a callback; cancellation and timeouts stop it
// (killing its remote process group), and a dropped connection is reported as RunResult::dropped().
#include "imgbake/ssh.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "imgbake/error.h"
#include "ssh_internal.h"

namespace imgbake {

using namespace ssh_detail;

namespace {

// After the exit status, output that keeps coming comes from background jobs holding the
// channel open; like run_process, take what is there and don't wait for them.
constexpr milliseconds kAfterExitGrace{500};
// How often a session channel the server closed before it ran anything is replaced.
constexpr int kClosedAtOnceRetries = 3;

bool valid_env_name(const std::string& name) {
  if (name.empty() || std::isdigit(static_cast<unsigned char>(name[0]))) return false;
  return std::all_of(name.begin(), name.end(), [](unsigned char c) { return std::isalnum(c) || c == '_'; });
}

int signal_number(const char* name) {
  static const std::pair<const char*, int> kSignals[] = {
      {"HUP", 1},   {"INT", 2},   {"QUIT", 3},  {"ILL", 4},   {"ABRT", 6},  {"FPE", 8},  {"KILL", 9},
      {"USR1", 10}, {"SEGV", 11}, {"USR2", 12}, {"PIPE", 13}, {"ALRM", 14}, {"TERM", 15}};
  for (const auto& [n, v] : kSignals)
    if (name != nullptr && std::strcmp(name, n) == 0) return v;
  return 0;
}

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

}  // namespace

// ---------------------------------------------------------------------------------------------

// Opens a session channel. A connection found dead here ran nothing yet: reconnect once.
// Puts the session in non-blocking mode: not to be called inside a BlockingScope.
ChannelPtr SshCommunicator::Impl::open_channel(const CancelToken& cancel, milliseconds timeout, bool may_reconnect) {
  int closed_at_once = 0;
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
    // dropbear sometimes closes a new channel at once when the previous one was closed before
    // its command's exit was reaped (libssh's scp and SFTP code close that way): nothing ran on
    // it, so take another. libssh reports that as a bare error with a stale message.
    if (ch && rc == SSH_ERROR && ssh_channel_is_closed(ch.get()) && alive(s) && closed_at_once++ < kClosedAtOnceRetries)
      continue;
    std::string err = ssh_get_error(s);
    if (rc == SSH_AGAIN)
      throw BuildError("SSH server " + where() + " did not open a session channel within " + seconds(timeout));
    if (round - closed_at_once == 0 && may_reconnect && !alive(s)) {
      ch.reset();
      drop_connection();
      continue;
    }
    throw BuildError("cannot open an SSH session channel on " + where() + ": " + err);
  }
}

// SIGTERM to a remote process group, over a channel of its own.
void SshCommunicator::Impl::kill_remote_group(long pid) {
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
RunResult SshCommunicator::Impl::exec(const std::string& command_line, const ExecIo& io_in, const ExecOptions& opts,
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
  ChannelPtr ch;
  ssh_session s = nullptr;
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
  // `cb` lives on this stack: unhook it before the channel (which libssh may keep until the
  // server confirms the close) outlives this call.
  struct Unhook {
    ssh_channel ch = nullptr;
    ssh_channel_callbacks cb = nullptr;
    ~Unhook() {
      if (ch) ssh_remove_channel_callbacks(ch, cb);
    }
  } unhook;

  for (int attempt = 0;; ++attempt) {
    if (unhook.ch) ssh_remove_channel_callbacks(unhook.ch, unhook.cb);
    unhook.ch = nullptr;
    ch = open_channel(cancel, opts.request_timeout, opts.may_reconnect);
    s = session.get();
    ssh_set_channel_callbacks(ch.get(), &cb);
    unhook.ch = ch.get();
    unhook.cb = &cb;
    // A channel the server closed before a request reached it ran nothing (see open_channel).
    auto closed_at_once = [&] { return ssh_channel_is_closed(ch.get()) && alive(s) && attempt < kClosedAtOnceRetries; };
    auto request_deadline = Clock::now() + opts.request_timeout;
    if (opts.pty) {
      int rc = call_until_done(s, cancel, request_deadline, SSH_AGAIN,
                               [&] { return ssh_channel_request_pty_size(ch.get(), "xterm", 80, 24); });
      if (rc != SSH_OK && closed_at_once()) continue;
      if (rc != SSH_OK) {
        if (!alive(s)) return RunResult::dropped();
        throw BuildError("SSH server " + where() + " refused a pty: " + std::string(ssh_get_error(s)));
      }
    }
    int rc = call_until_done(s, cancel, request_deadline, SSH_AGAIN,
                             [&] { return ssh_channel_request_exec(ch.get(), command.c_str()); });
    if (rc != SSH_OK && closed_at_once()) continue;
    if (rc != SSH_OK) {
      if (!alive(s)) return RunResult::dropped();
      throw BuildError("SSH server " + where() + " refused to run a command: " + std::string(ssh_get_error(s)));
    }
    break;
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
      return info.have ? RunResult::exited(info.status) : RunResult::dropped();
    }
    if (!got) {
      bool eof = ssh_channel_is_eof(ch.get()) != 0, closed = ssh_channel_is_closed(ch.get()) != 0;
      if (closed || (eof && info.have) ||
          (info.have && now - last_data >= kAfterExitGrace && now - info.at >= kAfterExitGrace)) {
        drain(1024);
        remote_pid();
        // A channel closed without an exit status is what Packer reports as a disconnect.
        return info.have ? RunResult::exited(info.status) : RunResult::dropped();
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
RunResult SshCommunicator::Impl::exec_capture(const std::string& command, const CancelToken& cancel, std::string* out,
                                              std::string* err) {
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

void SshCommunicator::Impl::exec_checked(const std::string& command, const std::string& what,
                                         const CancelToken& cancel) {
  std::string err;
  RunResult r = exec_capture(command, cancel, nullptr, &err);
  if (r.disconnected) throw BuildError("SSH connection to " + where() + " lost while " + what);
  if (r.status != 0)
    throw BuildError(what + " failed (exit status " + std::to_string(r.status) + ")" +
                     (err.empty() ? std::string() : ": " + err.substr(0, err.find_last_not_of('\n') + 1)));
}

// ---------------------------------------------------------------------------------------------

RunResult SshCommunicator::run(const RemoteCommand& cmd, const LineSink& out, const LineSink& err,
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
  RunResult r;
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
  return r;
}

}  // namespace imgbake
