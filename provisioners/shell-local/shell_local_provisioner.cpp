#include "imgbake/provisioner.h"
#include "imgbake/shell_local.h"

namespace imgbake {
namespace {

class ShellLocalProvisioner : public Provisioner {
 public:
  void prepare(ConfigReader& cfg) override { runner_.prepare(cfg); }
  std::set<std::string> runtime_keys() const override { return {"execute_command"}; }
  void provision(State& st) override { runner_.run(st, {}); }
  nlohmann::json key_material() const override { return runner_.key_material(); }
  // It runs on the host: an image builder's cache never skips it.
  HostEffect host_effect() const override { return HostEffect::HostOnly; }

 private:
  ShellLocalRunner runner_;
};

}  // namespace
}  // namespace imgbake

IMGBAKE_REGISTER_PROVISIONER("shell-local", imgbake::ShellLocalProvisioner)
