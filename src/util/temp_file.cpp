#include "imgbake/temp_file.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <mutex>

#include "imgbake/cancel.h"
#include "imgbake/error.h"
#include "imgbake/process.h"
#include "imgbake/unique_fd.h"

namespace imgbake {

namespace fs = std::filesystem;

namespace {

constexpr std::string_view kDirPrefix = "imgbake-";

fs::path temp_root() {
  const char* tmpdir = std::getenv("TMPDIR");
  return tmpdir && *tmpdir ? fs::path(tmpdir) : fs::path("/tmp");
}

// The PID in "imgbake-PID-XXXXXX", or 0 when `name` is not such a name.
pid_t pid_of(const std::string& name) {
  if (!name.starts_with(kDirPrefix)) return 0;
  const std::string rest = name.substr(kDirPrefix.size());
  const size_t dash = rest.find('-');
  if (dash == 0 || dash == std::string::npos || dash > 9 || rest.size() != dash + 7) return 0;
  if (rest.find_first_not_of("0123456789") != dash) return 0;
  return static_cast<pid_t>(std::stol(rest.substr(0, dash)));
}

class ProcessTempDir {
 public:
  ProcessTempDir() {
    const fs::path root = temp_root();
    sweep_stale_temp_dirs(root);
    std::string tmpl = (root / (std::string(kDirPrefix) + std::to_string(::getpid()) + "-XXXXXX")).string();
    if (::mkdtemp(tmpl.data()) == nullptr)  // mode 0700
      throw BuildError("cannot create a temporary directory in " + root.string() + ": " + std::strerror(errno) +
                       " (set TMPDIR to a writable directory)");
    path_ = tmpl;
    owner_ = ::getpid();
    register_temp_path(path_.string());  // a second Ctrl-C removes it once it is empty
  }
  ~ProcessTempDir() {
    if (::getpid() != owner_) return;  // never from a forked child
    unregister_temp_path(path_.string());
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
  pid_t owner_ = 0;
};

}  // namespace

size_t sweep_stale_temp_dirs(const fs::path& dir) {
  size_t removed = 0;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const pid_t pid = pid_of(e.path().filename().string());
    if (pid <= 0 || pid == ::getpid()) continue;
    struct stat st {};
    if (::lstat(e.path().c_str(), &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != ::geteuid()) continue;
    if (::kill(pid, 0) == 0 || errno != ESRCH) continue;  // alive (or not ours to signal): kept
    std::error_code rec;
    if (fs::remove_all(e.path(), rec) > 0 && !rec) ++removed;
  }
  return removed;
}

const fs::path& process_temp_dir() {
  static ProcessTempDir dir;
  return dir.path();
}

TempFile::TempFile(std::string_view content, std::string_view prefix, mode_t mode, std::string_view suffix) {
  const std::string dir = process_temp_dir().string();
  std::string tmpl = dir + "/" + std::string(prefix) + "-XXXXXX" + std::string(suffix);
  std::lock_guard lock(spawn_mutex());
  util::UniqueFd fd(mkostemps(tmpl.data(), static_cast<int>(suffix.size()), O_CLOEXEC));
  if (!fd) throw BuildError("cannot create a temporary file in " + dir + ": " + std::strerror(errno));
  path_ = tmpl;
  guard_.emplace(path_);  // a constructor that throws below leaves no file either
  size_t off = 0;
  while (off < content.size()) {
    ssize_t n = ::write(fd.get(), content.data() + off, content.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw BuildError("cannot write the temporary file " + path_ + ": " + std::strerror(errno));
    off += static_cast<size_t>(n);
  }
  ::fchmod(fd.get(), mode);
}

}  // namespace imgbake
