// The template model: Packer's legacy JSON format, parsed with positions.
// parse_template() does what `packer validate -syntax-only` does (structure and
// types of the template itself); components validate their own options later.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <utility>
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
  // PACKER_BUILD_NAME and {{build_name}}: the name (JSON) or the source's name (HCL2, where
  // `name` is Packer's "[BUILD.]TYPE.NAME"). Empty: the same as `name`.
  std::string build_name;
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
  // imgbake's own: "cache": false makes the builders' step caches run this step (and every
  // later one) on every build (docs/templates.md).
  bool cache = true;
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
  // An HCL2 template (*.pkr.hcl): variables already hold their final values (-var, -var-file,
  // PKR_VAR_*, *.auto.pkrvars.hcl applied while loading) and options are evaluated.
  bool hcl = false;
  std::vector<std::string> files;    // HCL2: the files read, in load order
  std::vector<std::string> secrets;  // HCL2: sensitive variables' values (and each string inside)

  const VariableDef* variable(std::string_view name) const;
};

// The variable values given on the command line; an HCL2 template needs them to evaluate.
struct VariableInputs {
  std::vector<std::pair<std::string, std::string>> vars;  // -var k=v, in order
  std::vector<std::string> var_files;                     // -var-file, in order
  // Unset required variables are errors (validate, build); inspect lists them instead.
  bool require_all = true;
  // `validate --syntax-only`, as Packer 1.6.6 does it for HCL2: the files, the top-level
  // blocks and the variable declarations are checked; locals, sources and builds are not read.
  bool syntax_only = false;
};

// A -var-file in JSON: its object, or nullopt after an error (file:line:col) in `d`.
std::optional<json::Value> read_json_var_file(const std::string& path, Diagnostics& d);

// A JSON template file, or an HCL2 one: a `*.pkr.hcl` file, or a directory of them
// (docs/templates-hcl2.md). Throws ConfigError listing every problem.
Template load_template(const std::string& path, const VariableInputs& inputs = {});
bool is_hcl_template(const std::string& path);

// Reads and parses a template file. Throws ConfigError listing every problem
// (file:line:col: message). "-" reads standard input.
Template parse_template_file(const std::string& path);
Template parse_template_text(std::string text, const std::string& path);

}  // namespace imgbake
