// Packer's shell-local post-processor: the shell-local provisioner's options, run
// after the build with the artifact's files in the environment.
#include "imgbake/post_processor.h"
#include "imgbake/shell_local.h"
#include "imgbake/util.h"

namespace imgbake {
namespace {

class ShellLocalPostProcessor : public PostProcessor {
 public:
  void prepare(ConfigReader& cfg) override { runner_.prepare(cfg); }
  std::set<std::string> runtime_keys() const override { return {"execute_command"}; }
  PostProcessResult post_process(State& st, std::shared_ptr<Artifact> input) override {
    std::map<std::string, std::string> env;
    if (input) {
      std::vector<std::string> files;
      for (const auto& f : input->files) files.push_back(f.path);
      env["IMGBAKE_ARTIFACT_ID"] = input->id;
      env["IMGBAKE_ARTIFACT_FILES"] = util::join(files, " ");
    }
    runner_.run(st, env);
    return {input, true, false};
  }

 private:
  ShellLocalRunner runner_;
};

}  // namespace
}  // namespace imgbake

IMGBAKE_REGISTER_POST_PROCESSOR("shell-local", imgbake::ShellLocalPostProcessor)
