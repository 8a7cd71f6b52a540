#include "accelerator.h"

#include <fcntl.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <system_error>

#include "imgbake/fetch.h"
#include "imgbake/util.h"

namespace imgbake::qemu {

namespace fs = std::filesystem;

bool kvm_usable() {
  int fd = ::open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (fd < 0) return false;
  ::close(fd);
  return true;
}

AcceleratorVerdicts::AcceleratorVerdicts(fs::path file, std::string host_key)
    : file_(std::move(file)), key_(std::move(host_key)) {}

std::string AcceleratorVerdicts::host_key(const std::string& qemu_binary) {
  struct utsname u = {};
  uname(&u);
  return qemu_binary + "|" + u.release + "|" + u.version;
}

fs::path AcceleratorVerdicts::default_file() {
  return fs::path(default_download_cache_dir()).parent_path() / "accel-verdicts.json";
}

bool AcceleratorVerdicts::kvm_stuck() const {
  try {
    auto j = nlohmann::json::parse(util::read_file(file_));
    return j.is_object() && j.value(key_, "") == "kvm-no-progress";
  } catch (const std::exception&) {
    return false;
  }
}

void AcceleratorVerdicts::remember_kvm_stuck() const {
  nlohmann::json j = nlohmann::json::object();
  try {
    j = nlohmann::json::parse(util::read_file(file_));
    if (!j.is_object()) j = nlohmann::json::object();
  } catch (const std::exception&) {
    // No file yet, or an unreadable one: start a new one.
  }
  j[key_] = "kvm-no-progress";
  std::error_code ec;
  fs::create_directories(file_.parent_path(), ec);
  try {
    util::write_file_atomic(file_, j.dump(2) + "\n");
  } catch (const std::exception&) {
    // Only a cache: the next build probes again.
  }
}

AcceleratorChoice choose_accelerator(const std::string& configured, bool kvm_ok, bool kvm_known_stuck,
                                     const fs::path& verdicts_file) {
  if (!configured.empty() && configured != "auto") return {configured, ""};
  if (!kvm_ok) return {"tcg", "accelerator auto: /dev/kvm is not usable here, using tcg (software emulation)"};
  if (kvm_known_stuck)
    return {"tcg", "accelerator auto: an earlier build found that guests make no progress under kvm on this host (" +
                       verdicts_file.string() + "), using tcg"};
  return {"kvm", ""};
}

}  // namespace imgbake::qemu
