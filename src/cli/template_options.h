// Options shared by the verbs that evaluate a template (build, validate).
#pragma once

#include <string>
#include <vector>

#include "cli.h"
#include "imgbake/build.h"

namespace imgbake::cli {

struct TemplateOptions {
  std::string template_path;
  std::vector<std::string> vars;  // "k=v"
  std::vector<std::string> var_files;
  std::vector<std::string> only;
  std::vector<std::string> except;
};

void add_template_options(CLI::App& sub, TemplateOptions& o);
// Fills the variable and selection parts of BuildOptions; throws UsageError.
void apply_template_options(const TemplateOptions& o, BuildOptions& b);
// The template at o.template_path (JSON, or HCL2 evaluated with b's variable values).
Template load_template_for(const TemplateOptions& o, const BuildOptions& b, bool require_all = true,
                           bool syntax_only = false);
// Prints warnings and errors; returns true when there were errors.
bool print_diagnostics(const Diagnostics& d, const Masker& masker);

}  // namespace imgbake::cli
