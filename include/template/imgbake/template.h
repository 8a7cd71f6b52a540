// The template model: Packer's legacy JSON format, parsed with positions.
// parse_template() does what `packer validate -syntax-only` does (structure and
// types of the template itself); components validate their own options later.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "imgbake/error.h"
#include "imgbake/json.h"

namespace imgbake {

struct VariableDef {
  std::string name;
  json::Pos pos;
  bool required = false;  // "null" default
  std::string default_value;
  bool sensitive = false;
};

struct BuilderDef {
  std::string type;
  std::string name;  // defaults to the type; may hold template actions
  json::Pos pos;
  json::Value config;  // the object without "type" and "name"
};

struct ProvisionerDef {
  std::string type;
  json::Pos pos;
  json::Value config;  // the object without the generic keys below
  std::vector<std::string> only;
  std::vector<std::string> except;
  json::Value override;  // object: build name -> partial config, or null
  std::optional<std::chrono::milliseconds> pause_before;
  std::optional<std::chrono::milliseconds> timeout;
  int max_retries = 0;
};

struct PostProcessorDef {
  std::string type;
  std::string name;
  json::Pos pos;
  json::Value config;  // without type, name, only, except, keep_input_artifact
  std::vector<std::string> only;
  std::vector<std::string> except;
  std::optional<bool> keep_input_artifact;
};

struct Template {
  std::string path;  // as given on the command line
  std::string dir;   // absolute directory holding the template ({{template_dir}})
  std::string raw;   // the file's bytes (its sha256 is the template digest)
  json::Value root;
  std::string description;
  std::string min_version;
  std::vector<VariableDef> variables;
  std::vector<std::string> sensitive_variables;
  std::vector<BuilderDef> builders;
  std::vector<ProvisionerDef> provisioners;
  std::optional<ProvisionerDef> cleanup_provisioner;
  std::vector<std::vector<PostProcessorDef>> post_processors;  // chains
  std::optional<json::Value> imgbake;                          // imgbake's own section
  std::vector<Diagnostic> warnings;                            // found while parsing

  const VariableDef* variable(std::string_view name) const;
};

// Reads and parses a template file. Throws ConfigError listing every problem
// (file:line:col: message). "-" reads standard input.
Template parse_template_file(const std::string& path);
Template parse_template_text(std::string text, const std::string& path);

}  // namespace imgbake
