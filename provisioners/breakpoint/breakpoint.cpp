// Packer's breakpoint provisioner: pauses the build until the user presses Enter,
// to inspect the machine. Without a terminal (CI) it says so and goes on rather
// than hanging the job.
#include "imgbake/provisioner.h"

namespace imgbake {
namespace {

class BreakpointProvisioner : public Provisioner {
 public:
  void prepare(ConfigReader& cfg) override {
    disable_ = cfg.boolean("disable", false);
    note_ = cfg.string("note");
  }
  void provision(State& st) override {
    if (disable_) {
      st.message("breakpoint disabled, continuing");
      return;
    }
    std::string q = "Pausing at breakpoint" + (note_.empty() ? "" : ": " + note_) + ". Press Enter to continue.";
    if (!st.ui.ask(st.build.name, q)) st.ui.warn(st.build.name, "breakpoint skipped: no terminal to wait on");
    st.cancel.throw_if_cancelled();
  }
  nlohmann::json key_material() const override { return {{"disable", disable_}, {"note", note_}}; }

 private:
  bool disable_ = false;
  std::string note_;
};

}  // namespace
}  // namespace imgbake

IMGBAKE_REGISTER_PROVISIONER("breakpoint", imgbake::BreakpointProvisioner)
