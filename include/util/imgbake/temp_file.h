// A temporary host file with given content: in $TMPDIR (else /tmp), registered so that a
// second Ctrl-C still removes it, and removed when it goes out of scope.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <string_view>

#include "imgbake/temp_path_guard.h"

namespace imgbake {

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
