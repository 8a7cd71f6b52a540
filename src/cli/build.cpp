#include <filesystem>
#include <iostream>
#include <mutex>

#include "imgbake/build_cache.h"
#include "imgbake/cache_remote.h"
#include "imgbake/cancel.h"
#include "imgbake/error.h"
#include "imgbake/publish.h"
#include "imgbake/util.h"
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

// Where the build cache is shared (docs/build-cache.md): --cache-from/--cache-to, else
// $IMGBAKE_CACHE_FROM (comma-separated) and $IMGBAKE_CACHE_TO, else the template's
// imgbake.cache {"from": …, "to": …}.
struct CacheSettings {
  std::vector<std::string> from;
  std::string to;
};

CacheSettings cache_settings(const Template& t, const std::vector<std::string>& flag_from, const std::string& flag_to) {
  CacheSettings cs;
  const json::Value* c = t.imgbake ? t.imgbake->find("cache") : nullptr;
  if (c && !c->is_object()) c = nullptr;
  cs.from = flag_from;
  if (cs.from.empty())
    if (const char* e = std::getenv("IMGBAKE_CACHE_FROM"); e && *e)
      for (auto& part : util::split(e, ','))
        if (!part.empty()) cs.from.push_back(part);
  if (cs.from.empty() && c) {
    if (const json::Value* f = c->find("from"); f && f->is_string()) cs.from.push_back(f->text);
    if (const json::Value* f = c->find("from"); f && f->is_array())
      for (const auto& item : f->items)
        if (item.is_string()) cs.from.push_back(item.text);
  }
  cs.to = flag_to;
  if (cs.to.empty())
    if (const char* e = std::getenv("IMGBAKE_CACHE_TO"); e && *e) cs.to = e;
  if (cs.to.empty() && c)
    if (const json::Value* f = c->find("to"); f && f->is_string()) cs.to = f->text;
  return cs;
}

registry::CacheRepository cache_repository(const std::string& text, const char* what, const RegistryFlags& reg,
                                           Ui& ui) {
  registry::Reference ref = registry::Reference::parse(text);
  if (!ref.tag.empty() || !ref.digest.empty())
    throw UsageError(std::string(what) + " '" + text +
                     "': give REGISTRY/REPOSITORY without a tag or digest (entries are tagged by step key)");
  return registry::CacheRepository{ref, make_registry_client(ref.registry, reg, ui)};
}

// The signing key of the build's provenance, which signs the exported entries too.
provenance::SigningKey cache_signing_key(const Template& t, const std::string& flag) {
  std::string path = flag;
  if (path.empty())
    if (const char* e = std::getenv("IMGBAKE_SIGNING_KEY"); e && *e) path = e;
  if (path.empty() && t.imgbake)
    if (const json::Value* k = t.imgbake->find("signing_key"); k && k->is_string()) path = k->text;
  bool created = false;
  return load_signing_key(path, created);
}

void export_cache(registry::RegistryCache& cache, const std::string& to, const Template& t, const std::string& key,
                  const std::string& home, Ui& ui) {
  store::Store st(home.empty() ? store::Store::default_home() : std::filesystem::path(home));
  registry::CacheExportReport r = cache.export_noted(st, cache_signing_key(t, key));
  ui.message("", "cache: exported " + std::to_string(r.entries) + " step" + (r.entries == 1 ? "" : "s") + " to " + to +
                     " (" + std::to_string(r.blobs_sent) + " blobs, " + util::format_bytes(r.bytes_sent) + " sent; " +
                     std::to_string(r.entries_there) + " already there)");
  for (const auto& f : r.failures) ui.warn("", "cache: not exported: " + f);
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
    std::vector<std::string> cache_from;
    std::string cache_to;
    RegistryFlags reg;
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
  sub.add_option("--cache-from", o->cache_from,
                 "Also look cached steps up in this registry repository (REGISTRY/REPO; repeatable; default "
                 "$IMGBAKE_CACHE_FROM, else the template's imgbake.cache.from)");
  sub.add_option("--cache-to", o->cache_to,
                 "Send the steps this build made or used to this registry repository when it ends (default "
                 "$IMGBAKE_CACHE_TO, else the template's imgbake.cache.to)");
  add_registry_flags(sub, o->reg);
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
    const json::Value* cache_section = t.imgbake ? t.imgbake->find("cache") : nullptr;
    if (cache_section && cache_section->is_bool() && !cache_section->boolean) opts.no_cache = true;
    std::shared_ptr<registry::RegistryCache> cache;
    CacheSettings cs = cache_settings(t, o->cache_from, o->cache_to);
    if (!opts.no_cache && (!cs.from.empty() || !cs.to.empty())) {
      std::vector<registry::CacheRepository> from;
      for (const auto& f : cs.from) from.push_back(cache_repository(f, "--cache-from", o->reg, ui));
      std::optional<registry::CacheRepository> to;
      if (!cs.to.empty()) to = cache_repository(cs.to, "--cache-to", o->reg, ui);
      store::Store st(opts.store_home.empty() ? store::Store::default_home() : std::filesystem::path(opts.store_home));
      cache = std::make_shared<registry::RegistryCache>(
          std::move(from), std::move(to), trusted_keys(st), [&ui](std::string_view l) { ui.message("", l); },
          [&ui](std::string_view l) { ui.warn("", l); }, global_cancel());
      opts.cache_remote = cache;
    }
    // The export runs after the builds, also after a failed one (its checkpoints let the next
    // machine resume before the failing step), not after an interrupt.
    auto finish = [&](int rc) {
      if (cache && cache->exports() && !global_cancel().cancelled())
        export_cache(*cache, cs.to, t, o->signing_key, opts.store_home, ui);
      return rc;
    };
    const json::Value* after = t.imgbake ? t.imgbake->find("test_after_build") : nullptr;
    const bool test = o->test || (after && after->is_bool() && after->boolean);
    if (!test || !opts.commit) return finish(run_builds(t, plans, opts, ui));
    std::mutex mu;
    std::vector<store::ImageRecord> committed;
    const std::string home = opts.store_home;
    int rc = run_builds(t, plans, opts, ui, [&]() -> std::unique_ptr<store::ImageSink> {
      return std::make_unique<RecordingSink>(
          std::make_unique<store::Store>(home.empty() ? store::Store::default_home() : std::filesystem::path(home)), mu,
          committed);
    });
    finish(0);
    if (rc != 0) return rc;
    return test_committed(t, committed, g, o->signing_key, o->junit);
  };
}

}  // namespace imgbake::cli
