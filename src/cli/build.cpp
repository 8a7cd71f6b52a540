#include <filesystem>
#include <iostream>
#include <mutex>

#include "imgbake/cancel.h"
#include "imgbake/error.h"
#include "imgbake/publish.h"
#include "store_verbs.h"
#include "template_options.h"

namespace imgbake::cli {

namespace {

// The store a build commits to, remembering what was committed (for build --test).
class RecordingSink : public store::ImageSink {
 public:
  RecordingSink(std::unique_ptr<store::Store> st, std::mutex& mu, std::vector<store::ImageRecord>& out)
      : st_(std::move(st)), mu_(mu), out_(out) {}
  const std::filesystem::path& home() const override { return st_->home(); }
  bool trusts(const std::string& keyid) const override { return st_->trusts(keyid); }
  store::ImageRecord commit(const store::CommitRequest& req) override {
    store::ImageRecord rec = st_->commit(req);
    std::lock_guard lock(mu_);
    out_.push_back(rec);
    return rec;
  }

 private:
  std::unique_ptr<store::Store> st_;
  std::mutex& mu_;
  std::vector<store::ImageRecord>& out_;
};

// build --test: each committed image against the template's imgbake.tests; a passing image goes
// into the channels its template named that held it back for a test. 0 when all passed.
int test_committed(const Template& t, const std::vector<store::ImageRecord>& committed, const GlobalOptions& g,
                   const std::string& signing_key, const std::string& junit) {
  const json::Value* tests = t.imgbake ? t.imgbake->find("tests") : nullptr;
  if (!tests) throw UsageError("build --test: the template has no checks ('tests' in its 'imgbake' section)");
  Diagnostics diags;
  const TestSpec spec = read_test_spec(*tests, t.path, diags);
  diags.throw_if_errors();
  auto st = open_store();
  const auto keys = trusted_keys(*st);
  int rc = 0;
  for (const auto& rec : committed) {
    ImageTestOptions opts;
    opts.json_out = g.output == "json";
    opts.signing_key = signing_key;
    opts.spec_name = t.path;
    opts.spec_sha256 = util::sha256_hex(json::serialize(*tests));
    // One report per image: FILE for one, FILE with "-NAME-VERSION" before its extension for several.
    if (!junit.empty()) {
      std::filesystem::path p = junit;
      opts.junit =
          committed.size() == 1
              ? junit
              : (p.parent_path() / (p.stem().string() + "-" + rec.name + "-" + rec.version + p.extension().string()))
                    .string();
    }
    const store::ImageRecord img = st->resolve(rec.ref());
    if (!test_image(*st, img, spec, opts).result.passed()) {
      rc = 1;
      continue;
    }
    for (const auto& channel : rec.held_channels) {
      const Verification v = verify_image(*st, img, keys);
      try {
        st->promote(img.ref(), channel, "passed its tests (build --test)", v.ok, false, &keys);
        if (!opts.json_out) std::cout << img.name << ":" << channel << " -> " << img.ref() << "\n";
      } catch (const store::StoreError& e) {
        std::cerr << "imgbake: " << e.what() << "\n";
        rc = 1;
      }
    }
  }
  return rc;
}

}  // namespace

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
    bool test = false;
    std::string junit;
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
  sub.add_flag("--test", o->test,
               "Test each committed image with the template's imgbake.tests (as imgbake test), record the signed "
               "result, and then move the channels whose policy waited for it");
  sub.add_option("--junit", o->junit,
                 "With --test: also write the results as a JUnit XML report to this file (several images: one file "
                 "each, FILE-NAME-VERSION.xml)");
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
    const json::Value* after = t.imgbake ? t.imgbake->find("test_after_build") : nullptr;
    const bool test = o->test || (after && after->is_bool() && after->boolean);
    if (!test || !opts.commit) return run_builds(t, plans, opts, ui);
    std::mutex mu;
    std::vector<store::ImageRecord> committed;
    const std::string home = opts.store_home;
    int rc = run_builds(t, plans, opts, ui, [&]() -> std::unique_ptr<store::ImageSink> {
      return std::make_unique<RecordingSink>(
          std::make_unique<store::Store>(home.empty() ? store::Store::default_home() : std::filesystem::path(home)), mu,
          committed);
    });
    if (rc != 0) return rc;
    return test_committed(t, committed, g, o->signing_key, o->junit);
  };
}

}  // namespace imgbake::cli
