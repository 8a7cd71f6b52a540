#include "imgbake/temp_file.h"

#include <fcntl.h>
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

namespace imgbake {

TempFile::TempFile(std::string_view content, std::string_view prefix, mode_t mode, std::string_view suffix) {
  const char* tmpdir = std::getenv("TMPDIR");
  std::string dir = tmpdir && *tmpdir ? tmpdir : "/tmp";
  std::string tmpl = dir + "/" + std::string(prefix) + "-XXXXXX" + std::string(suffix);
  std::lock_guard lock(spawn_mutex());
  int fd = mkostemps(tmpl.data(), static_cast<int>(suffix.size()), O_CLOEXEC);
  if (fd < 0) throw BuildError("cannot create a temporary file in " + dir + ": " + std::strerror(errno));
  path_ = tmpl;
  register_temp_path(path_);
  size_t off = 0;
  while (off < content.size()) {
    ssize_t n = ::write(fd, content.data() + off, content.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      std::string why = std::strerror(errno);
      ::close(fd);
      unregister_temp_path(path_);
      std::error_code ec;
      std::filesystem::remove(path_, ec);
      throw BuildError("cannot write the temporary file " + path_ + ": " + why);
    }
    off += static_cast<size_t>(n);
  }
  ::fchmod(fd, mode);
  ::close(fd);
}

TempFile::~TempFile() {
  unregister_temp_path(path_);
  std::error_code ec;
  std::filesystem::remove(path_, ec);
}

}  // namespace imgbake
