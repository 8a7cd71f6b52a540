// Which accelerator a VM starts with, and what earlier builds on this host learnt about KVM.
// `accelerator: auto` trusts /dev/kvm only when it can be opened and no earlier build on the
// same host (kernel + qemu binary) found guests making no progress under it (nested "kvm"
// devices that never run a guest exist: see docs/builders/qemu.md).
#pragma once

#include <filesystem>
#include <string>

namespace imgbake::qemu {

// Whether /dev/kvm can be opened for reading and writing.
bool kvm_usable();

// The verdicts file: one entry per host key ("qemu binary|kernel release|kernel version").
class AcceleratorVerdicts {
 public:
  AcceleratorVerdicts(std::filesystem::path file, std::string host_key);
  // This host's key for `qemu_binary` (uname's release and version).
  static std::string host_key(const std::string& qemu_binary);
  // The file in the download cache's parent directory.
  static std::filesystem::path default_file();

  bool kvm_stuck() const;  // an unreadable file counts as "nothing known"
  void remember_kvm_stuck() const;
  const std::filesystem::path& file() const { return file_; }

 private:
  std::filesystem::path file_;
  std::string key_;
};

struct AcceleratorChoice {
  std::string accel;    // what qemu is started with: kvm, tcg, none, or the configured other one
  std::string message;  // why, when it was not simply the configured one ("" otherwise)
};

// The accelerator for `configured` (the template's "accelerator", or IMGBAKE_QEMU_ACCEL).
AcceleratorChoice choose_accelerator(const std::string& configured, bool kvm_usable, bool kvm_known_stuck,
                                     const std::filesystem::path& verdicts_file);

}  // namespace imgbake::qemu
