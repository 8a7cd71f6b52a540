#pragma once

#include <set>
#include <string>

#include "imgbake/component_registry.h"
#include "imgbake/config.h"
#include "imgbake/pipeline.h"

namespace imgbake {

struct PostProcessResult {
  std::shared_ptr<Artifact> artifact;  // the new artifact (may be the input itself)
  bool keep_input = false;             // default for keeping the input artifact
  bool force_keep = false;             // keep the input whatever keep_input_artifact says
};

class PostProcessor {
 public:
  virtual ~PostProcessor() = default;
  // Options that hold actions rendered at run time ({{ .Vars }}, {{ .ChecksumType }});
  // every other option must render completely when the template is validated.
  virtual std::set<std::string> runtime_keys() const { return {}; }
  virtual void prepare(ConfigReader& cfg) = 0;
  // `input` may be null (a build without artifact, e.g. the null builder).
  virtual PostProcessResult post_process(State& st, std::shared_ptr<Artifact> input) = 0;
};

using PostProcessorRegistry = ComponentRegistry<PostProcessor>;

}  // namespace imgbake

#define IMGBAKE_REGISTER_POST_PROCESSOR(NAME, CLASS) IMGBAKE_REGISTER(::imgbake::PostProcessor, NAME, CLASS)
