// A temporary path (a file or a directory tree) removed when its guard goes out of scope
// unless dismissed: the project's one replacement for `catch (...) { remove(p); throw; }`.
#pragma once

#include <filesystem>

namespace imgbake::util {

class TempPathGuard {
 public:
  // Registers `path` with register_temp_path, so that a second interrupt (which exits at
  // once, without unwinding) removes it too. The path need not exist yet.
  explicit TempPathGuard(std::filesystem::path path);
  // Removes the path (recursively; a symlink itself, not its target) unless dismissed.
  // A path that is already gone is fine; failures to remove are ignored.
  ~TempPathGuard();
  TempPathGuard(const TempPathGuard&) = delete;
  TempPathGuard& operator=(const TempPathGuard&) = delete;

  const std::filesystem::path& path() const noexcept { return path_; }
  // Keeps the path (it was renamed into place, or is someone else's now) and unregisters it.
  void dismiss() noexcept;

 private:
  std::filesystem::path path_;
  bool dismissed_ = false;
};

}  // namespace imgbake::util
