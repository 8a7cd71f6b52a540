// A temporary host file with given content: in this process's private temp directory (below),
// registered so that a second Ctrl-C still removes it, and removed when it goes out of scope.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "imgbake/temp_path_guard.h"

namespace imgbake {

// This process's own temporary directory: $TMPDIR (else /tmp)/imgbake-PID-XXXXXX, mode 0700 (other
// users of the host read nothing in it), made on first use and removed when the process exits. One
// that a process killed with SIGKILL left behind is removed by the next imgbake that makes its own
// (sweep_stale_temp_dirs). Throws BuildError naming $TMPDIR when it cannot be made.
const std::filesystem::path& process_temp_dir();
// Removes the imgbake-PID-* directories in `dir` whose process is gone and that belong to this
// user; returns how many. A directory whose PID is alive (possibly reused) is kept.
size_t sweep_stale_temp_dirs(const std::filesystem::path& dir);

class TempFile {
 public:
  // The name is PREFIX-XXXXXX plus `suffix` (e.g. ".sh"). Throws BuildError naming the
  // directory when the file cannot be made. While the file is open for writing, child
  // processes are not started (spawn_mutex): a child forked meanwhile would hold a writable
  // descriptor, and executing the file would fail with "Text file busy".
  TempFile(std::string_view content, std::string_view prefix, mode_t mode, std::string_view suffix = "");
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::optional<util::TempPathGuard> guard_;  // removes the file (registered for a second Ctrl-C)
};

}  // namespace imgbake
