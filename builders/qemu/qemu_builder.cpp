// The qemu builder (Packer's "qemu"): boots a VM from a disk image or an install ISO,
// provisions it over SSH, shuts it down and leaves a compacted disk image. The build is the
// flat list of steps in QemuBuilder::steps() (disk_steps.cpp, vm_steps.cpp); they share one
// QemuRun (qemu_run.h).
#include <random>
#include <set>

#include "imgbake/builder.h"
#include "qemu_config.h"
#include "qemu_run.h"

namespace imgbake::qemu {
namespace {

class QemuBuilder : public Builder {
 public:
  QemuBuilder() : rng_(std::random_device{}()) {}
  std::set<std::string> runtime_keys() const override {
    return {"qemuargs", "boot_command", "cd_content", "http_content", "shutdown_command"};
  }
  void prepare(ConfigReader& cfg) override { read_config(cfg, run_.cfg); }
  StepList steps(StepList provision) override {
    const QemuConfig& c = run_.cfg;
    StepList s;
    s.push_back(make_output_dir_step(run_));
    s.push_back(make_fetch_source_step(run_));
    if (c.communicator == "ssh" && c.ssh_temporary_key_pair) s.push_back(make_temporary_key_step(run_));
    if (!c.cd_files.empty() || !c.cd_content.empty()) s.push_back(make_seed_cd_step(run_));
    s.push_back(make_disk_step(run_));
    if (!c.http_directory.empty() || !c.http_content.empty()) s.push_back(make_http_server_step(run_));
    s.push_back(make_launch_step(run_, rng_));
    if (!c.boot_command.empty()) s.push_back(make_boot_command_step(run_));
    if (c.communicator == "ssh") s.push_back(make_wait_for_ssh_step(run_, rng_));
    size_t index = 0;
    for (auto& p : provision) {
      if (p->is_error_cleanup_hook()) {
        s.push_back(std::move(p));
        continue;
      }
      run_.cache.add_step(p.get());
      s.push_back(make_cached_provision_step(run_, std::move(p), ++index));
    }
    s.push_back(make_shutdown_step(run_));
    s.push_back(make_compact_step(run_));  // also the step cache's conversion (skip_compaction or not)
    s.push_back(make_artifact_step(run_));
    return s;
  }

 private:
  QemuRun run_;
  std::mt19937 rng_;
};

}  // namespace
}  // namespace imgbake::qemu

IMGBAKE_REGISTER_BUILDER("qemu", imgbake::qemu::QemuBuilder)
