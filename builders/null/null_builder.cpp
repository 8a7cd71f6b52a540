// The null builder: no machine, only the provisioners (Packer's "null"). With
// communicator "none", provisioners that need a machine (shell, file) refuse to run;
// shell-local and breakpoint work.
#include "imgbake/builder.h"

namespace imgbake {
namespace {

class NullBuilder : public Builder {
 public:
  void prepare(ConfigReader& cfg) override {
    std::string comm = cfg.string("communicator", cfg.has("ssh_host") ? "ssh" : "none");
    if (comm == "ssh") {
      // The SSH communicator (libssh) lands with the qemu builder; until then say so
      // instead of pretending to connect.
      cfg.error("communicator", "communicator \"ssh\" is not available yet in this imgbake build; use \"none\"");
      cfg.accept({"ssh_host", "ssh_port", "ssh_username", "ssh_password", "ssh_private_key_file", "ssh_timeout"});
    } else if (comm != "none") {
      cfg.error("communicator", "unknown communicator '" + comm + "'; the null builder supports \"none\"");
    }
  }

  StepList steps(StepList provision) override { return provision; }
};

}  // namespace
}  // namespace imgbake

IMGBAKE_REGISTER_BUILDER("null", imgbake::NullBuilder)
