// SshCommunicator: transfers. Files and directories move with SFTP, falling back to scp and
// then to `cat` over an exec channel for minimal servers (dropbear ships neither).

// libssh marks its SCP API deprecated in favour of SFTP, but SCP is exactly what a server
// without SFTP may still offer.
#define SSH_SUPPRESS_DEPRECATED

#include "imgbake/ssh.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "imgbake/error.h"
#include "imgbake/temp_path_guard.h"
#include "imgbake/unique_fd.h"
#include "ssh_internal.h"

namespace imgbake {

using namespace ssh_detail;

namespace {

namespace fs = std::filesystem;
using util::UniqueFd;

std::string octal(mode_t mode) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(mode & 07777));
  return buf;
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

sftp_session SshCommunicator::Impl::get_sftp(const CancelToken& cancel) {
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
void SshCommunicator::Impl::keep_stderr_empty(ssh_channel ch) {
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

void SshCommunicator::Impl::transfer_failed(const std::string& what, const std::string& why) {
  if (!alive(session.get())) {
    drop_connection();
    throw BuildError(what + ": the SSH connection to " + where() + " was lost");
  }
  throw BuildError(what + ": " + why);
}

void SshCommunicator::Impl::sftp_upload(sftp_session sf, const std::string& local, int fd, const std::string& remote,
                                        mode_t mode, const CancelToken& cancel) {
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
bool SshCommunicator::Impl::scp_usable(const CancelToken& cancel) {
  if (scp_unavailable) return false;
  if (scp_probed) return true;
  RunResult r = exec_capture("command -v scp >/dev/null 2>&1", cancel, nullptr, nullptr);
  if (r.disconnected) transfer_failed("looking for scp on " + where(), "the connection was lost");
  scp_probed = true;
  if (r.status != 0) scp_gone("there is no scp on the PATH");
  return !scp_unavailable;
}

void SshCommunicator::Impl::scp_gone(const std::string& why) {
  scp_unavailable = true;
  note("scp is not available on " + where() + " either (" + why + "); falling back to cat");
}

// Returns false when the server's scp does not work (nothing was transferred then).
bool SshCommunicator::Impl::scp_upload(const std::string& local, int fd, off_t size, const std::string& remote,
                                       mode_t mode, const CancelToken& cancel) {
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

void SshCommunicator::Impl::cat_upload(const std::string& local, int fd, const std::string& remote, mode_t mode,
                                       const CancelToken& cancel) {
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
  RunResult r =
      exec("cat > " + quote(remote) + " && chmod " + octal(mode) + " " + quote(remote), io, ExecOptions{}, cancel);
  if (r.disconnected) transfer_failed(what, "the connection was lost");
  if (r.status != 0)
    throw BuildError(what + " failed (exit status " + std::to_string(r.status) + ")" +
                     (err.empty() ? std::string() : ": " + err.substr(0, err.find_last_not_of('\n') + 1)));
}

SshCommunicator::Impl::Method SshCommunicator::Impl::upload_file(const std::string& local, const std::string& remote,
                                                                 const CancelToken& cancel) {
  UniqueFd fd(::open(local.c_str(), O_RDONLY | O_CLOEXEC));
  struct stat st;
  if (!fd || fstat(fd.get(), &st) != 0) throw BuildError("cannot read '" + local + "': " + std::strerror(errno));
  if (sftp_session sf = get_sftp(cancel)) {
    sftp_upload(sf, local, fd.get(), remote, st.st_mode, cancel);
    return Method::kSftp;
  }
  if (scp_usable(cancel) && scp_upload(local, fd.get(), st.st_size, remote, st.st_mode, cancel)) return Method::kScp;
  cat_upload(local, fd.get(), remote, st.st_mode, cancel);
  return Method::kCat;
}

bool SshCommunicator::Impl::remote_dir_exists(const std::string& path, const CancelToken& cancel) {
  if (sftp_session sf = get_sftp(cancel)) {
    BlockingScope blocking(session.get());
    sftp_attributes a = sftp_stat(sf, path.c_str());
    bool is_dir = a && S_ISDIR(a->permissions);
    if (a) sftp_attributes_free(a);
    return is_dir;
  }
  RunResult r = exec_capture("test -d " + quote(path), cancel, nullptr, nullptr);
  if (r.disconnected) transfer_failed("checking remote directory '" + path + "'", "the connection was lost");
  return r.status == 0;
}

// mkdir -p for each directory (parents first), then `fix_modes` sets their exact modes.
void SshCommunicator::Impl::make_dirs(const std::vector<std::pair<std::string, mode_t>>& dirs,
                                      const CancelToken& cancel) {
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

void SshCommunicator::Impl::fix_modes(const std::vector<std::pair<std::string, mode_t>>& dirs,
                                      const CancelToken& cancel) {
  if (sftp_session sf = get_sftp(cancel)) {
    BlockingScope blocking(session.get());
    for (auto it = dirs.rbegin(); it != dirs.rend(); ++it)
      if (sftp_chmod(sf, it->first.c_str(), it->second & 07777) != SSH_OK)
        transfer_failed("setting the mode of remote directory '" + it->first + "'", sftp_error_text(sf, session.get()));
    return;
  }
  std::vector<std::pair<std::string, mode_t>> reversed(dirs.rbegin(), dirs.rend());
  batch(
      reversed, "true", [](const std::string& d, mode_t m) { return "&& chmod " + octal(m) + " " + quote(d); },
      "setting the modes of remote directories", cancel);
}

// Runs `head` followed by one argument per directory, in commands of bounded length.
template <typename Arg>
void SshCommunicator::Impl::batch(const std::vector<std::pair<std::string, mode_t>>& dirs, const std::string& head,
                                  Arg arg, const std::string& what, const CancelToken& cancel) {
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

void SshCommunicator::Impl::sftp_download_file(sftp_session sf, const std::string& remote, const std::string& local,
                                               mode_t mode, const CancelToken& cancel) {
  const std::string what = "downloading '" + remote + "' to '" + local + "' with SFTP";
  sftp_file f = sftp_open(sf, remote.c_str(), O_RDONLY, 0);
  if (!f) transfer_failed(what, sftp_error_text(sf, session.get()));
  struct Close {
    sftp_file f;
    ~Close() { sftp_close(f); }
  } close_remote{f};
  UniqueFd fd(::open(local.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!fd) throw BuildError(what + ": cannot create '" + local + "': " + std::strerror(errno));
  util::TempPathGuard cleanup(local);  // a half-written download is removed
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
  if (fchmod(fd.get(), mode & 07777) != 0 || fd.close() != 0)
    throw BuildError(what + ": cannot write '" + local + "': " + std::strerror(errno));
  cleanup.dismiss();
}

void SshCommunicator::Impl::sftp_download(sftp_session sf, const std::string& remote, const std::string& local,
                                          const CancelToken& cancel) {
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

void SshCommunicator::Impl::cat_download(const std::string& remote, const std::string& local,
                                         const CancelToken& cancel) {
  const std::string what = "downloading '" + remote + "' to '" + local + "' with cat";
  std::string mode_text;
  mode_t mode = 0644;
  // Best effort: busybox and coreutils both have `stat -c`.
  RunResult st = exec_capture("stat -c %a " + quote(remote), cancel, &mode_text, nullptr);
  if (st.disconnected) transfer_failed(what, "the connection was lost");
  if (st.status == 0) {
    char* end = nullptr;
    unsigned long m = std::strtoul(mode_text.c_str(), &end, 8);
    if (end != mode_text.c_str()) mode = static_cast<mode_t>(m & 07777);
  }
  UniqueFd fd(::open(local.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!fd) throw BuildError(what + ": cannot create '" + local + "': " + std::strerror(errno));
  util::TempPathGuard cleanup(local);  // a half-written download is removed
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
  RunResult r = exec("cat " + quote(remote), io, ExecOptions{}, cancel);
  if (r.disconnected) transfer_failed(what, "the connection was lost");
  if (r.status != 0)
    throw BuildError(what + " failed (exit status " + std::to_string(r.status) + ")" +
                     (err.empty() ? std::string() : ": " + err.substr(0, err.find_last_not_of('\n') + 1)));
  if (fchmod(fd.get(), mode) != 0 || fd.close() != 0)
    throw BuildError(what + ": cannot write '" + local + "': " + std::strerror(errno));
  cleanup.dismiss();
}

// ---------------------------------------------------------------------------------------------

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
