// The amazon-ebs builder (Packer's "amazon-ebs"): launches an EC2 instance from a source AMI,
// provisions it over SSH, stops it and makes an AMI of it, copied to ami_regions. The build is
// the flat list of steps in make_steps() (ebs_image_steps.cpp); they share one EbsRun.
#include <set>
#include <string>

#include "ebs_run.h"
#include "imgbake/builder.h"

namespace imgbake::amazon {
namespace {

class AmazonEbsBuilder : public Builder {
 public:
  // Tags may name run-time values, as in Packer: {{ .SourceAMI }}, {{ .SourceAMIName }}.
  std::set<std::string> runtime_keys() const override {
    return {"tags", "snapshot_tags", "run_tags", "run_volume_tags"};
  }
  void prepare(ConfigReader& cfg) override { read_config(cfg, run_.cfg); }
  StepList steps(StepList provision) override { return make_steps(run_, std::move(provision)); }

 private:
  EbsRun run_;
};

}  // namespace
}  // namespace imgbake::amazon

IMGBAKE_REGISTER_BUILDER("amazon-ebs", imgbake::amazon::AmazonEbsBuilder)
