// The qemu builder's options (Packer 1.6.6's names and defaults, plus the few newer
// Packer options the issue asks for) and the qemu command line they make.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "imgbake/config.h"
#include "imgbake/ssh.h"

namespace imgbake::qemu {

enum class Accelerator { Auto, Kvm, Tcg, None, Other };

struct QemuConfig {
  // Source
  std::vector<std::string> iso_urls;
  std::string iso_checksum;
  std::string iso_target_extension = "iso";
  std::string iso_target_path;  // a cache directory (or file path's directory) instead of the default
  bool iso_skip_cache = false;
  bool disk_image = false;
  bool use_backing_file = false;
  bool skip_resize_disk = false;

  // Machine
  std::string accelerator = "auto";
  Accelerator accel = Accelerator::Auto;
  std::chrono::milliseconds accelerator_probe_timeout{std::chrono::seconds(20)};
  int64_t memory = 512;
  int64_t cpus = 1;
  std::string machine_type = "pc";
  std::string cpu_model;
  std::string net_device = "virtio-net";
  std::string disk_interface = "virtio";
  std::string disk_cache = "writeback";
  std::string disk_discard = "ignore";
  std::string disk_detect_zeroes = "off";
  uint64_t disk_size = 40960ull << 20;  // bytes
  bool disk_size_given = false;
  std::vector<uint64_t> disk_additional_size;
  std::string qemu_binary = "qemu-system-x86_64";
  std::vector<std::vector<std::string>> qemuargs;  // rendered at run time
  std::vector<std::string> qemu_img_args_convert, qemu_img_args_create, qemu_img_args_resize;
  bool headless = false;
  bool use_default_display = false;
  std::string display;
  std::string firmware;
  std::string vm_name;
  std::string output_directory;
  std::string format = "qcow2";
  bool skip_compaction = false;
  bool disk_compression = false;
  int64_t host_port_min = 2222;
  int64_t host_port_max = 4444;
  bool skip_nat_mapping = false;
  std::string cdrom_interface;

  // Boot
  std::string boot_command;  // the list joined; rendered at run time
  std::chrono::milliseconds boot_wait{std::chrono::seconds(10)};
  std::optional<std::chrono::milliseconds> boot_key_interval;
  std::string http_directory;
  std::map<std::string, std::string> http_content;
  std::string http_bind_address = "127.0.0.1";
  int64_t http_port_min = 8000;
  int64_t http_port_max = 9000;
  std::vector<std::string> cd_files;
  std::map<std::string, std::string> cd_content;  // rendered at run time ({{ .SSHPublicKey }})
  std::string cd_label;

  // Shutdown
  std::string shutdown_command;
  std::chrono::milliseconds shutdown_timeout{std::chrono::minutes(5)};

  // Communicator
  std::string communicator = "ssh";
  SshConfig ssh;
  std::string ssh_host;   // empty: 127.0.0.1 with the forwarded port
  int64_t ssh_port = 22;  // the guest's port
  bool ssh_temporary_key_pair = false;
  std::chrono::milliseconds pause_before_connecting{0};
};

// Reads every option (unknown ones are reported by the reader), applying Packer's
// defaults. vm_name and output_directory stay empty when not given: their defaults
// ("packer-NAME", "output-NAME") need the build's name, known when the build runs.
void read_config(ConfigReader& cfg, QemuConfig& out);

// The kind of an "accelerator" value ("" and "auto": Auto); nullopt when it names none.
std::optional<Accelerator> accelerator_kind(const std::string& name);

// Parses Packer's disk_size: a number of MiB, or a number with a suffix K, M, G, T
// (binary units), optionally followed by "B" or "iB". Nullopt when malformed.
std::optional<uint64_t> parse_disk_size(const std::string& text);

// What the command line needs to know that is only known at run time.
struct LaunchFacts {
  std::string accelerator;  // resolved: "kvm", "tcg", "none" or what the user gave
  std::string disk_path;
  std::vector<std::string> extra_disks;
  std::string cd_path;   // the seed CD, if any
  std::string iso_path;  // the install ISO (not for disk_image)
  std::string qmp_socket;
  std::string serial_log;
  int host_port = 0;        // forwarded to the guest's ssh_port; 0 when skip_nat_mapping
  std::string disk_format;  // "": the template's format (the step cache's overlays are qcow2)
  std::string incoming;     // -incoming: the saved VM state to resume (the step cache)
};

// The qemu argv: Packer's defaults, then each qemuargs entry replaces the default
// with the same flag (-device and -drive replace all defaults of that flag) or is
// appended. `qemuargs` has been rendered.
std::vector<std::string> qemu_command_line(const QemuConfig& c, const LaunchFacts& f,
                                           const std::vector<std::vector<std::string>>& qemuargs);

}  // namespace imgbake::qemu
