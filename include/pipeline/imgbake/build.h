// From a parsed template to runnable builds: variables, -only/-except, component
// preparation (full validation), and the executor that runs builds in parallel.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "imgbake/builder.h"
#include "imgbake/post_processor.h"
#include "imgbake/provisioner.h"
#include "imgbake/store.h"
#include "imgbake/template.h"

namespace imgbake {

struct BuildOptions {
  std::vector<std::pair<std::string, std::string>> vars;  // -var k=v, in order
  std::vector<std::string> var_files;                     // -var-file, in order
  std::vector<std::string> only;                          // globs over build names
  std::vector<std::string> except;
  bool force = false;
  bool debug = false;
  OnError on_error = OnError::Cleanup;
  int parallel_builds = 0;  // 0 = unlimited
  // The store: every successful build is committed as NAME:VERSION unless `commit` is off.
  bool commit = true;
  std::string store_home;                            // "" = Store::default_home()
  std::string version;                               // --version (else the template's, else auto)
  std::map<std::string, std::string> labels;         // --label k=v
  std::string signing_key;                           // --signing-key (else IMGBAKE_SIGNING_KEY, template, default)
  bool no_cache = false;                             // --no-cache: image builders run every step
  bool explain_cache = false;                        // --explain-cache: print each step key's inputs
  std::shared_ptr<store::CacheRemote> cache_remote;  // --cache-from/--cache-to (a registry)
};

struct Variables {
  std::map<std::string, std::string> values;
  std::shared_ptr<Masker> masker = std::make_shared<Masker>();
  // Variables left without a value by an error already reported (a required variable not set,
  // a circular reference, a value that failed to render): plan_builds does not check the
  // settings that use them again, so that one cause is reported once.
  std::set<std::string> failed;
};

// Defaults (rendered, with {{env}} and references to other variables), then
// -var-file files, then -var flags. With `require_all`, unset required variables
// are errors.
Variables resolve_variables(const Template& t, const BuildOptions& opts, Diagnostics& diags, bool require_all);

struct PlannedProvisioner {
  const ProvisionerDef* def = nullptr;
  std::string label;  // "provisioner 2 (shell-local)"
  std::unique_ptr<Provisioner> impl;
};

struct PlannedPostProcessor {
  const PostProcessorDef* def = nullptr;
  std::string label;
  std::unique_ptr<PostProcessor> impl;
};

struct BuildPlan {
  std::string name;
  std::string type;
  std::unique_ptr<Builder> builder;
  std::vector<PlannedProvisioner> provisioners;
  std::optional<PlannedProvisioner> cleanup_provisioner;
  std::vector<std::vector<PlannedPostProcessor>> chains;
  interp::Context interp;
};

// Full validation: every builder/provisioner/post-processor is created and prepared.
// Problems are added to `diags`; plans are returned for the builds that -only/-except select.
std::vector<BuildPlan> plan_builds(const Template& t, const Variables& vars, const BuildOptions& opts,
                                   Diagnostics& diags);

// Where rendered values come from, so that errors point into the file.
struct RenderSource {
  std::string file;
  std::string_view text;  // the file's bytes, for exact columns; may be empty
  Diagnostics& diags;
  // When set, receives the position of each value left unrendered because it uses a variable
  // in Variables::failed (errors later reported at those positions are follow-ons).
  std::set<std::pair<int, int>>* poisoned = nullptr;
  // What is rendered, for errors about the value as a whole ("variable 'x'"); may be empty.
  std::string what{};
};

// Renders every string inside `v` (recursively). Top-level keys listed in `runtime_keys`
// may keep actions that need run-time values ({{ .Vars }}); everywhere else every
// action must render now.
json::Value render_value(const json::Value& v, const interp::Context& ctx, const RenderSource& src,
                         const std::set<std::string>& runtime_keys = {});

// Opens the store a successful build commits to (unless opts.commit is off). Called once per
// build that has something to commit, from that build's thread, after the build and its
// post-processors finished: a build that commits nothing opens no store.
using OpenImageSink = std::function<std::unique_ptr<store::ImageSink>()>;

// Runs the plans (in parallel up to opts.parallel_builds) and returns the exit code. Without
// `open_sink`, builds commit to store::Store at opts.store_home (else Store::default_home());
// unit tests pass a fake.
int run_builds(const Template& t, std::vector<BuildPlan>& plans, const BuildOptions& opts, Ui& ui,
               const OpenImageSink& open_sink = nullptr);

}  // namespace imgbake
