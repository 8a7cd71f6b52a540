#include "cli/template_options.h"

#include <iostream>

#include "imgbake/error.h"

namespace imgbake::cli {

void add_template_options(CLI::App& sub, TemplateOptions& o) {
  sub.add_option("--var", o.vars, "Set a variable: --var name=value (repeatable; -var as in Packer)");
  sub.add_option("--var-file", o.var_files, "A JSON file of variable values (repeatable)");
  sub.add_option("--only", o.only, "Only the builds whose names match these globs (comma-separated)")->delimiter(',');
  sub.add_option("--except", o.except, "Skip the builds (and post-processors) whose names match these globs")
      ->delimiter(',');
  sub.add_option("template", o.template_path, "The template (JSON; - for standard input)")->required();
}

void apply_template_options(const TemplateOptions& o, BuildOptions& b) {
  for (const auto& kv : o.vars) {
    size_t eq = kv.find('=');
    if (eq == std::string::npos || eq == 0)
      throw UsageError("--var '" + kv + "': expected name=value");
    b.vars.emplace_back(kv.substr(0, eq), kv.substr(eq + 1));
  }
  b.var_files = o.var_files;
  b.only = o.only;
  b.except = o.except;
}

bool print_diagnostics(const Diagnostics& d, const Masker& masker) {
  for (const auto& w : d.warnings()) std::cerr << masker.mask(w.str()) << "\n";
  for (const auto& e : d.errors()) std::cerr << masker.mask(e.str()) << "\n";
  return d.has_errors();
}

}  // namespace imgbake::cli
