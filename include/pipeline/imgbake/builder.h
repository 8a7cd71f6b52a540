#pragma once

#include <set>
#include <string>

#include "imgbake/component_registry.h"
#include "imgbake/config.h"
#include "imgbake/pipeline.h"

namespace imgbake {

class Builder {
 public:
  virtual ~Builder() = default;
  // Options that hold actions rendered at run time ({{ .Vars }}, {{ .ChecksumType }});
  // every other option must render completely when the template is validated.
  virtual std::set<std::string> runtime_keys() const { return {}; }
  // Reads and validates the builder's options (already interpolated), reporting
  // problems through the reader.
  virtual void prepare(ConfigReader& cfg) = 0;
  // The build's steps, with the provisioning steps spliced in where the machine is
  // ready (after connecting, before shutting down). The last step sets st.artifact.
  virtual StepList steps(StepList provision) = 0;
};

using BuilderRegistry = ComponentRegistry<Builder>;

}  // namespace imgbake

#define IMGBAKE_REGISTER_BUILDER(NAME, CLASS) IMGBAKE_REGISTER(::imgbake::Builder, NAME, CLASS)
