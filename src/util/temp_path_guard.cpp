#include "imgbake/temp_path_guard.h"

#include <system_error>
#include <utility>

#include "imgbake/cancel.h"

namespace imgbake::util {

TempPathGuard::TempPathGuard(std::filesystem::path path) : path_(std::move(path)) {
  register_temp_path(path_.string());
}

TempPathGuard::~TempPathGuard() {
  if (dismissed_) return;
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
  unregister_temp_path(path_.string());
}

void TempPathGuard::dismiss() noexcept {
  if (dismissed_) return;
  dismissed_ = true;
  unregister_temp_path(path_.string());
}

}  // namespace imgbake::util
