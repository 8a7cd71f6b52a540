#include "imgbake/temp_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <mutex>

#include "imgbake/error.h"
#include "imgbake/process.h"
#include "imgbake/unique_fd.h"

namespace imgbake {

TempFile::TempFile(std::string_view content, std::string_view prefix, mode_t mode, std::string_view suffix) {
  const char* tmpdir = std::getenv("TMPDIR");
  std::string dir = tmpdir && *tmpdir ? tmpdir : "/tmp";
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
