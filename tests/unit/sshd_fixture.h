// Real OpenSSH servers on 127.0.0.1 for tests: one `sshd -D` per configuration, with keys made
// by ssh-keygen, and the small helpers their tests share (files, ports, polling).
//
// Tests skip, saying why, when /usr/sbin/sshd is missing or does not start (Debian: apt-get
// install openssh-server).
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>

#include "imgbake/cancel.h"
#include "imgbake/process.h"

namespace sshd_fixture {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

inline std::string ReadFile(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

inline void WriteFile(const fs::path& p, const std::string& data, mode_t mode) {
  {
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    out << data;
  }
  ::chmod(p.c_str(), mode);
}

inline mode_t ModeOf(const fs::path& p) {
  struct stat st;
  if (::stat(p.c_str(), &st) != 0) return 0;
  return st.st_mode & 07777;
}

inline std::string RandomBytes(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string s(n, '\0');
  for (size_t i = 0; i < n; i += 8) {
    uint64_t v = rng();
    std::memcpy(s.data() + i, &v, std::min<size_t>(8, n - i));
  }
  return s;
}

// A port nothing listens on (yet).
inline int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0)
    port = ntohs(a.sin_port);
  close(fd);
  return port;
}

inline bool Accepts(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  close(fd);
  return ok;
}

template <typename Cond>
inline bool Eventually(Cond cond, std::chrono::milliseconds limit = 3000ms) {
  auto deadline = Clock::now() + limit;
  while (Clock::now() < deadline) {
    if (cond()) return true;
    std::this_thread::sleep_for(50ms);
  }
  return cond();
}

inline std::string UserName() {
  struct passwd* pw = getpwuid(geteuid());
  return pw ? pw->pw_name : "root";
}

inline int Shell(const std::string& script) {
  imgbake::ProcessSpec spec;
  spec.argv = {"sh", "-c", script};
  spec.timeout = 30s;
  imgbake::CancelToken cancel;
  return imgbake::run_process(spec, nullptr, nullptr, cancel);
}

// One sshd -D process with a configuration of its own.
class Sshd {
 public:
  struct Options {
    bool sftp = true;
    bool scp = true;
    // Where the Subsystem line says sftp-server is (a missing path: the server runs it through
    // the shell, which says "not found" on stderr and ends the channel, as on a guest without it).
    std::string sftp_server = "/usr/lib/openssh/sftp-server";
  };
  // The host key and authorized_keys are in `keys`; the rest in `dir`.
  Sshd(fs::path keys, fs::path dir, int port, Options opts)
      : keys_(std::move(keys)), dir_(std::move(dir)), port_(port), opts_(opts) {}
  ~Sshd() { Stop(); }

  // Returns an empty string when sshd accepts connections, else why not.
  std::string Start() {
    fs::create_directories(dir_);
    const fs::path& keys = keys_;
    std::ofstream cfg(dir_ / "sshd_config");
    cfg << "ListenAddress 127.0.0.1\n"
        << "HostKey " << (keys / "host_key").string() << "\n"
        << "PidFile " << (dir_ / "sshd.pid").string() << "\n"
        << "AuthorizedKeysFile " << (keys / "authorized_keys").string() << "\n"
        << "PermitRootLogin yes\nUsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        // The key files live in a world-writable /tmp.
        << "StrictModes no\n"
        << "MaxStartups 100\nMaxSessions 100\nLogLevel VERBOSE\n";
    if (opts_.sftp) cfg << "Subsystem sftp " << opts_.sftp_server << "\n";
    if (!opts_.scp) {
      // Commands find only these tools, as on a minimal guest without scp.
      fs::path bin = dir_ / "bin";
      fs::create_directories(bin);
      for (const char* tool : {"sh", "bash", "cat", "chmod", "mkdir", "stat", "test", "sleep", "kill", "echo"}) {
        for (const char* d : {"/usr/bin/", "/bin/"}) {
          std::error_code ec;
          if (fs::exists(std::string(d) + tool)) {
            fs::create_symlink(std::string(d) + tool, bin / tool, ec);
            break;
          }
        }
      }
      cfg << "SetEnv PATH=" << bin.string() << "\n";
    }
    cfg.close();
    std::string log = (dir_ / "sshd.log").string();
    std::string conf = (dir_ / "sshd_config").string();
    // Tests run in parallel (ctest -j2) and each picks a free port, then closes it: two of them
    // can pick the same one. Something accepting on the port is then not proof that it is this
    // sshd, so wait for this sshd to say it listens, and take another port when it could not bind.
    std::string why;
    for (int attempt = 0; attempt < 5; ++attempt) {
      if (attempt > 0) port_ = FreePort();
      std::string port = std::to_string(port_);
      { std::ofstream truncate(log, std::ios::trunc); }
      pid_ = fork();
      if (pid_ == 0) {
        int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
          dup2(fd, 1);
          dup2(fd, 2);
        }
        execl("/usr/sbin/sshd", "/usr/sbin/sshd", "-D", "-e", "-f", conf.c_str(), "-p", port.c_str(),
              static_cast<char*>(nullptr));
        _exit(127);
      }
      if (pid_ < 0) return "fork failed";
      const std::string listening = "Server listening on 127.0.0.1 port " + port + ".";
      bool exited = false;
      bool up = Eventually(
          [&] {
            int status;
            if (waitpid(pid_, &status, WNOHANG) == pid_) exited = true;
            return exited || ReadFile(log).find(listening) != std::string::npos;
          },
          5000ms);
      if (up && !exited && Eventually([&] { return Accepts(port_); }, 5000ms)) return "";
      why = "sshd did not start listening on port " + port + "; its log: " + ReadFile(log);
      if (exited) {
        pid_ = -1;  // reaped
      } else {
        Stop();
      }
    }
    return why;
  }
  void Stop() {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      int status;
      waitpid(pid_, &status, 0);
      pid_ = -1;
    }
  }
  int port() const { return port_; }
  std::string log() const { return ReadFile(dir_ / "sshd.log"); }

 private:
  fs::path keys_, dir_;
  int port_;
  Options opts_;
  pid_t pid_ = -1;
};

// One dropbear server (the SSH server of small guests, and of the walk-through's guest), in a
// mount namespace of its own where sftp-server is missing: /usr/lib/openssh is an empty tmpfs
// there, so the sftp subsystem's program (/usr/lib/sftp-server, a link into it) is not found, and
// the user's home is `dir` (dropbear reads ~/.ssh/authorized_keys). Needs root (unshare, mount).
class Dropbear {
 public:
  Dropbear(fs::path keys, fs::path dir, int port) : keys_(std::move(keys)), dir_(std::move(dir)), port_(port) {}
  ~Dropbear() { Stop(); }

  // Returns an empty string when dropbear accepts connections, else why not.
  std::string Start() {
    if (geteuid() != 0) return "dropbear runs in a mount namespace of its own: the test needs root";
    if (!fs::exists("/usr/sbin/dropbear"))
      return "/usr/sbin/dropbear is missing (Debian: apt-get install dropbear-bin)";
    fs::create_directories(dir_ / "home" / ".ssh");
    fs::copy_file(keys_ / "authorized_keys", dir_ / "home" / ".ssh" / "authorized_keys",
                  fs::copy_options::overwrite_existing);
    ::chmod((dir_ / "home").c_str(), 0700);
    ::chmod((dir_ / "home" / ".ssh").c_str(), 0700);
    ::chmod((dir_ / "home" / ".ssh" / "authorized_keys").c_str(), 0600);
    std::string q = dir_.string();
    if (!fs::exists(dir_ / "host_key") && Shell("dropbearkey -t ed25519 -f '" + q + "/host_key' >/dev/null 2>&1") != 0)
      return "dropbearkey failed";
    std::string home = getenv("HOME") && *getenv("HOME") ? getenv("HOME") : "/root";
    std::string why;
    for (int attempt = 0; attempt < 5; ++attempt) {
      if (attempt > 0) port_ = FreePort();
      std::string log = q + "/dropbear.log";
      { std::ofstream truncate(log, std::ios::trunc); }
      std::string script = "mount -t tmpfs -o mode=0755 none /usr/lib/openssh && mount --bind '" + q + "/home' '" +
                           home + "' && exec /usr/sbin/dropbear -F -E -p 127.0.0.1:" + std::to_string(port_) + " -r '" +
                           q + "/host_key' -P '" + q + "/dropbear.pid'";
      pid_ = fork();
      if (pid_ == 0) {
        int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
          dup2(fd, 1);
          dup2(fd, 2);
        }
        execl("/usr/bin/unshare", "unshare", "-m", "--propagation", "private", "sh", "-c", script.c_str(),
              static_cast<char*>(nullptr));
        _exit(127);
      }
      if (pid_ < 0) return "fork failed";
      bool exited = false;
      bool up = Eventually(
          [&] {
            int status;
            if (waitpid(pid_, &status, WNOHANG) == pid_) exited = true;
            return exited || ReadFile(log).find("Not backgrounding") != std::string::npos;
          },
          5000ms);
      if (up && !exited && Eventually([&] { return Accepts(port_); }, 5000ms)) return "";
      why = "dropbear did not start listening on port " + std::to_string(port_) + "; its log: " + ReadFile(log);
      if (exited) {
        pid_ = -1;
      } else {
        Stop();
      }
    }
    return why;
  }
  void Stop() {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      int status;
      waitpid(pid_, &status, 0);
      pid_ = -1;
    }
  }
  int port() const { return port_; }
  std::string log() const { return ReadFile(dir_ / "dropbear.log"); }

 private:
  fs::path keys_, dir_;
  int port_;
  pid_t pid_ = -1;
};

// Makes host_key, id (the client key, authorized in authorized_keys) and wrong (a key the
// servers don't know) in `dir`. Returns an empty string on success, else why not.
inline std::string MakeSshKeys(const fs::path& dir) {
  std::error_code ec;
  fs::create_directories("/run/sshd", ec);  // sshd's privilege separation directory
  std::string q = dir.string();
  if (Shell("ssh-keygen -q -t ed25519 -N '' -f '" + q + "/host_key' && ssh-keygen -q -t ed25519 -N '' -f '" + q +
            "/id' && ssh-keygen -q -t ed25519 -N '' -f '" + q + "/wrong' && cp '" + q + "/id.pub' '" + q +
            "/authorized_keys'") != 0)
    return "ssh-keygen failed";
  return "";
}

}  // namespace sshd_fixture
