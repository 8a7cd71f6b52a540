#include <iostream>

#include "imgbake/machine_readable.h"
#include "template_options.h"

namespace imgbake::cli {

Action setup_validate(CLI::App& sub, const GlobalOptions& global) {
  struct Opts {
    TemplateOptions t;
    bool syntax_only = false;
    bool machine_readable = false;
  };
  auto o = std::make_shared<Opts>();
  add_template_options(sub, o->t);
  sub.add_flag("--syntax-only", o->syntax_only, "Check only the template's structure, as packer validate -syntax-only");
  sub.add_flag("--machine-readable", o->machine_readable,
               "Packer's CSV lines: nothing when valid, a ui,error line per problem");
  return [o, &global] {
    bool json = global.output == "json" && !o->machine_readable;
    BuildOptions opts;
    apply_template_options(o->t, opts);
    Diagnostics diags;
    std::shared_ptr<Masker> masker = std::make_shared<Masker>();
    try {
      Template t = load_template_for(o->t, opts, !o->syntax_only, o->syntax_only);
      for (const auto& w : t.warnings) diags.warn(w.file, w.pos, w.message);
      if (!o->syntax_only) {
        Variables vars = resolve_variables(t, opts, diags, true);
        masker = vars.masker;
        plan_builds(t, vars, opts, diags);  // also after variable errors: every problem at once
      }
    } catch (const ConfigError& e) {
      for (const auto& d : e.diagnostics()) diags.error(d.file, d.pos, d.message);
    }
    if (json) {
      nlohmann::json errors = nlohmann::json::array(), warnings = nlohmann::json::array();
      for (const auto& d : diags.items()) {
        nlohmann::json j = {
            {"file", d.file}, {"line", d.pos.line}, {"column", d.pos.col}, {"message", masker->mask(d.message)}};
        (d.warning ? warnings : errors).push_back(j);
      }
      std::cout << nlohmann::json{{"valid", !diags.has_errors()}, {"errors", errors}, {"warnings", warnings}}.dump()
                << "\n";
      return diags.has_errors() ? 1 : 0;
    }
    if (o->machine_readable) {
      // As `packer validate -machine-readable`: silent when valid.
      for (const auto& d : diags.items())
        std::cout << packer_line(
            "", "ui", {d.warning ? "say" : "error", (d.warning ? "Warning: " : "Error: ") + masker->mask(d.str())});
      return diags.has_errors() ? 1 : 0;
    }
    if (print_diagnostics(diags, *masker)) return 1;
    std::cout << (o->syntax_only ? "Syntax-only check passed. Everything looks okay.\n"
                                 : "The configuration is valid.\n");
    return 0;
  };
}

}  // namespace imgbake::cli
