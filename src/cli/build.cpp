#include <iostream>

#include "imgbake/cancel.h"
#include "imgbake/error.h"
#include "template_options.h"

namespace imgbake::cli {

Action setup_build(CLI::App& sub, const GlobalOptions& global) {
  struct Opts {
    TemplateOptions t;
    bool force = false;
    bool debug = false;
    std::string on_error = "cleanup";
    int parallel = 0;
    bool machine_readable = false;
    bool timestamp_ui = false;
    std::string version;
    std::vector<std::string> labels;
    std::string signing_key;
    bool no_store = false;
    bool no_cache = false;
    bool explain_cache = false;
  };
  auto o = std::make_shared<Opts>();
  add_template_options(sub, o->t);
  sub.add_flag("--force", o->force,
               "Passed to builders and post-processors that refuse to overwrite an earlier build's output");
  sub.add_flag("--debug", o->debug, "Pause before each step (on a terminal) and run builds one at a time");
  sub.add_option("--on-error", o->on_error, "On failure: cleanup (default), abort, ask, run-cleanup-provisioner")
      ->check(CLI::IsMember({"cleanup", "abort", "ask", "run-cleanup-provisioner"}));
  sub.add_option("--parallel-builds", o->parallel, "How many builds run at once (0 = all)")->check(CLI::Range(0, 1024));
  sub.add_flag("--machine-readable", o->machine_readable,
               "Packer's CSV stream (timestamp,target,type,data...), for scripts written for Packer");
  sub.add_option("--version", o->version, "The version to commit as (default: the template's, else the next number)");
  sub.add_option("--label", o->labels, "Label the committed image: --label key=value (repeatable)");
  sub.add_option("--signing-key", o->signing_key, "Sign the provenance with this private key (PEM)");
  sub.add_flag("--no-store", o->no_store, "Do not commit the artifacts to the store");
  sub.add_flag("--no-cache", o->no_cache, "Run every step of image builders (rootfs) instead of reusing cached layers");
  sub.add_flag("--explain-cache", o->explain_cache,
               "Print each cached step's key and its inputs, and on a miss which input changed");
  sub.add_flag("--timestamp-ui", o->timestamp_ui, "Accepted for Packer compatibility (JSON events carry times)");

  return [o, &global] {
    GlobalOptions g = global;
    g.machine_readable = o->machine_readable;
    BuildOptions opts;
    apply_template_options(o->t, opts);
    opts.force = o->force;
    opts.debug = o->debug;
    opts.on_error = *parse_on_error(o->on_error);
    opts.parallel_builds = o->parallel;
    opts.commit = !o->no_store;
    opts.no_cache = o->no_cache;
    opts.explain_cache = o->explain_cache;
    opts.version = o->version;
    opts.signing_key = o->signing_key;
    for (const auto& kv : o->labels) {
      size_t eq = kv.find('=');
      if (eq == std::string::npos || eq == 0) throw UsageError("--label '" + kv + "': expected key=value");
      opts.labels[kv.substr(0, eq)] = kv.substr(eq + 1);
    }

    Diagnostics diags;
    Template t;
    Variables vars;
    std::vector<BuildPlan> plans;
    try {
      t = load_template_for(o->t, opts);
      for (const auto& w : t.warnings) diags.warn(w.file, w.pos, w.message);
      vars = resolve_variables(t, opts, diags, true);
      plans = plan_builds(t, vars, opts, diags);  // also after variable errors: every problem at once
    } catch (const ConfigError& e) {
      for (const auto& d : e.diagnostics()) diags.error(d.file, d.pos, d.message);
    }
    Ui ui = make_ui(g, vars.masker);
    if (g.output == "json" || g.machine_readable) {
      // CI reads one stream: configuration problems are events (or CSV lines) too.
      for (const auto& d : diags.warnings()) ui.warn("", d.str());
      for (const auto& d : diags.errors()) ui.error("", d.str());
      if (diags.has_errors()) return static_cast<int>(kExitFailure);
    } else if (print_diagnostics(diags, *vars.masker)) {
      return static_cast<int>(kExitFailure);
    }
    // Planning polls no token: until here an interrupt exits at once. The steps poll it and
    // clean up (stop VMs, remove trees) after the first one.
    CooperativeInterrupts interrupts;
    return run_builds(t, plans, opts, ui);
  };
}

}  // namespace imgbake::cli
