#include "template_options.h"

#include <algorithm>
#include <iostream>
#include <tuple>

#include "imgbake/error.h"

namespace imgbake::cli {

void add_template_options(CLI::App& sub, TemplateOptions& o) {
  sub.add_option("--var", o.vars, "Set a variable: --var name=value (repeatable; -var as in Packer)");
  sub.add_option("--var-file", o.var_files,
                 "A file of variable values: JSON, or *.pkrvars.hcl for HCL2 templates (repeatable)");
  sub.add_option("--only", o.only, "Only the builds whose names match these globs (comma-separated)")->delimiter(',');
  sub.add_option("--except", o.except, "Skip the builds (and post-processors) whose names match these globs")
      ->delimiter(',');
  sub.add_option("template", o.template_path,
                 "The template: a JSON file (- for standard input), a *.pkr.hcl file or a directory of them")
      ->required();
}

void apply_template_options(const TemplateOptions& o, BuildOptions& b) {
  for (const auto& kv : o.vars) {
    size_t eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) throw UsageError("--var '" + kv + "': expected name=value");
    b.vars.emplace_back(kv.substr(0, eq), kv.substr(eq + 1));
  }
  b.var_files = o.var_files;
  b.only = o.only;
  b.except = o.except;
}

Template load_template_for(const TemplateOptions& o, const BuildOptions& b, bool require_all, bool syntax_only) {
  return load_template(o.template_path, VariableInputs{b.vars, b.var_files, require_all, syntax_only});
}

bool print_diagnostics(const Diagnostics& d, const Masker& masker) {
  // In file order, warnings first: the way an editor would list them.
  auto sorted = [](std::vector<Diagnostic> v) {
    std::stable_sort(v.begin(), v.end(), [](const Diagnostic& a, const Diagnostic& b) {
      return std::tie(a.file, a.pos.line, a.pos.col) < std::tie(b.file, b.pos.line, b.pos.col);
    });
    return v;
  };
  for (const auto& w : sorted(d.warnings())) std::cerr << masker.mask(w.str()) << "\n";
  for (const auto& e : sorted(d.errors())) std::cerr << masker.mask(e.str()) << "\n";
  return d.has_errors();
}

}  // namespace imgbake::cli
