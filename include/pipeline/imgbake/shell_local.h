// Runs commands on the host (Packer's shell-local), shared by the shell-local
// provisioner and the shell-local post-processor.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "imgbake/config.h"
#include "imgbake/pipeline.h"

namespace imgbake {

// What every command a build runs (shell on the machine, shell-local on the host) finds in its
// environment: PACKER_BUILD_NAME (the HCL2 source name when there is one), PACKER_BUILDER_TYPE,
// IMGBAKE_BUILD_NAME, IMGBAKE_BUILDER_TYPE and PACKER_RUN_UUID.
std::map<std::string, std::string> build_environment(const State& st);

class ShellLocalRunner {
 public:
  void prepare(ConfigReader& cfg);
  // Runs every script in order; throws BuildError on a non-accepted exit status.
  void run(State& st, const std::map<std::string, std::string>& extra_env) const;
  nlohmann::json key_material() const;

 private:
  std::vector<std::string> inline_;
  std::vector<std::string> scripts_;
  std::string inline_shebang_ = "/bin/sh -e";
  std::vector<std::string> environment_vars_;  // "K=V"
  std::map<std::string, std::string> env_;
  std::vector<std::string> execute_command_;
  std::vector<int64_t> valid_exit_codes_ = {0};
  std::string env_var_format_ = "%s='%s' ";
  std::string tempfile_extension_;
  std::vector<std::string> only_on_;
};

}  // namespace imgbake
