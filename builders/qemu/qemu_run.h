// What the qemu builder's steps share: the run's state and a few helpers. The steps are in
// disk_steps.cpp (output directory, source, key, seed CD, disk, compaction, artifact) and
// vm_steps.cpp (HTTP server, start, boot command, SSH, shutdown); qemu_builder.cpp lists them.
#pragma once

#include <chrono>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "accelerator.h"
#include "http_server.h"
#include "imgbake/pipeline.h"
#include "imgbake/process.h"
#include "imgbake/ssh.h"
#include "qemu_config.h"
#include "qmp.h"
#include "step_cache.h"

namespace imgbake::qemu {

namespace fs = std::filesystem;

struct QemuRun {
  QemuConfig cfg;
  fs::path output_dir;
  fs::path work_dir;  // short temp dir: the QMP socket path must fit in sun_path
  std::string source_path;
  std::string source_format;
  fs::path disk_path;
  std::vector<std::string> extra_disks;
  std::string cd_path;
  std::unique_ptr<HttpServer> http;
  std::string accel;  // resolved
  int host_port = 0;
  std::unique_ptr<BackgroundProcess> vm;
  std::unique_ptr<QmpClient> qmp;
  std::unique_ptr<SshCommunicator> comm;
  fs::path temp_key;  // private key of the temporary key pair
  bool vm_exited_cleanly = false;
  CheckpointCache cache;  // the step cache (step_cache.h)

  fs::path qemu_log() const { return work_dir / "qemu.log"; }
  fs::path serial_log() const { return work_dir / "serial.log"; }
};

std::string tail_of(const fs::path& p, size_t max_lines);
uintmax_t file_size_or_zero(const fs::path& p);
// Runs a host tool (qemu-img) to completion; throws with its stderr on failure.
std::string run_tool(State& st, const std::vector<std::string>& argv);
nlohmann::json image_info(State& st, const std::string& path);
AcceleratorVerdicts verdicts_for(const QemuConfig& c);
// A new private (0700) directory with a short path, registered for removal after a kill -9:
// QMP socket, logs, and the test instance's overlay.
fs::path make_work_dir();
// A port in [lo, hi] that nothing listens on right now (random start, so parallel builds
// rarely pick the same one; qemu failing to bind is retried by the caller).
int free_port(int lo, int hi, std::mt19937& rng);
// Starts qemu and connects QMP. Shared by the launch step and the accelerator fallback.
void launch(State& st, QemuRun& r, std::mt19937& rng);

// The steps, in the order QemuBuilder::steps() lists them.
std::unique_ptr<Step> make_output_dir_step(QemuRun& r);
std::unique_ptr<Step> make_fetch_source_step(QemuRun& r);
std::unique_ptr<Step> make_temporary_key_step(QemuRun& r);
std::unique_ptr<Step> make_seed_cd_step(QemuRun& r);
std::unique_ptr<Step> make_disk_step(QemuRun& r);
std::unique_ptr<Step> make_http_server_step(QemuRun& r);
std::unique_ptr<Step> make_launch_step(QemuRun& r, std::mt19937& rng);
std::unique_ptr<Step> make_boot_command_step(QemuRun& r);
std::unique_ptr<Step> make_wait_for_ssh_step(QemuRun& r, std::mt19937& rng);
std::unique_ptr<Step> make_shutdown_step(QemuRun& r);
std::unique_ptr<Step> make_compact_step(QemuRun& r);
// A provisioner step with its checkpoint (step_cache.h); `index` counts from 1.
std::unique_ptr<Step> make_cached_provision_step(QemuRun& r, std::unique_ptr<Step> inner, size_t index);
std::unique_ptr<Step> make_artifact_step(QemuRun& r);

// The boot settings an image records (io.imgbake.boot.* labels) for `imgbake test` (test_boot.cpp).
nlohmann::json boot_labels(State& st, const QemuConfig& c);

}  // namespace imgbake::qemu
