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
// Prints warnings and errors; returns true when there were errors.
bool print_diagnostics(const Diagnostics& d, const Masker& masker);

}  // namespace imgbake::cli
