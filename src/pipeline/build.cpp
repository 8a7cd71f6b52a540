#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <set>
#include <thread>

#include "imgbake/build.h"
#include "imgbake/error.h"
#include "imgbake/provenance.h"
#include "imgbake/publish.h"
#include "imgbake/store.h"
#include "imgbake/util.h"
#include "imgbake/version.h"

namespace imgbake {

namespace {

// pause_before, timeout and max_retries, the same for every provisioner type (and for
// the error-cleanup-provisioner).
void run_provisioner(PlannedProvisioner& p, State& st) {
  const ProvisionerDef& def = *p.def;
  if (def.pause_before) {
    st.message("pausing " + util::format_duration(*def.pause_before) + " before this provisioner");
    st.cancel.sleep_for(*def.pause_before);
  }
  int attempts = def.max_retries + 1;
  for (int attempt = 1;; ++attempt) {
    if (def.timeout) st.deadline = std::chrono::steady_clock::now() + *def.timeout;
    try {
      p.impl->provision(st);
      st.deadline.reset();
      return;
    } catch (const Cancelled&) {
      st.deadline.reset();
      st.provisioning_failed = true;
      throw;
    } catch (const std::exception& e) {
      bool timed_out = st.deadline && std::chrono::steady_clock::now() >= *st.deadline;
      st.deadline.reset();
      std::string why = timed_out ? "timed out after " + util::format_duration(*def.timeout) + ": " + e.what()
                                  : std::string(e.what());
      if (attempt >= attempts) {
        st.provisioning_failed = true;
        if (const auto* failed = dynamic_cast<const CommandFailed*>(&e)) throw CommandFailed(why, failed->exit_status);
        throw BuildError(why);
      }
      auto backoff = std::chrono::milliseconds(std::min(1000 << std::min(attempt - 1, 4), 10000));
      st.ui.warn(st.build.name, p.label + " failed (" + why + "); retrying in " + util::format_duration(backoff) +
                                    " (attempt " + std::to_string(attempt + 1) + " of " + std::to_string(attempts) +
                                    ")");
      st.cancel.sleep_for(backoff);
    }
  }
}

// One provisioner as a step.
class ProvisionStep : public Step {
 public:
  explicit ProvisionStep(PlannedProvisioner& p) : p_(p) {}
  std::string name() const override { return p_.label; }
  nlohmann::json key_material(const State&) const override {
    nlohmann::json m = {{"step", "provision"}, {"type", p_.def->type}, {"config", p_.impl->key_material()}};
    // "cache": false: a key no earlier build had, so a step cache runs this step and every later one.
    if (!p_.def->cache) m["uncached"] = nonce_;
    return m;
  }
  void run(State& st) override { run_provisioner(p_, st); }
  HostEffect host_effect() const override { return p_.impl->host_effect(); }

 private:
  PlannedProvisioner& p_;
  std::string nonce_ = util::uuid_v4();
};

// Placed before the provisioners: when provisioning failed, its cleanup runs the
// error-cleanup-provisioner while the machine still exists (before the builder's
// own cleanups), unless -on-error=abort.
class ErrorCleanupStep : public Step {
 public:
  explicit ErrorCleanupStep(PlannedProvisioner* p) : p_(p) {}
  std::string name() const override { return "error-cleanup-provisioner"; }
  nlohmann::json key_material(const State&) const override { return nullptr; }
  void run(State&) override {}
  bool silent() const override { return true; }
  bool is_error_cleanup_hook() const override { return true; }
  bool runs_on_abort() const override { return true; }
  void cleanup(State& st) noexcept override {
    if (!p_ || !st.provisioning_failed || st.cancel.cancelled()) return;
    st.say("provisioning failed: running " + p_->label);
    auto t0 = std::chrono::steady_clock::now();
    st.ui.step_start(st.build.name, p_->label, "");
    bool ok = true;
    try {
      run_provisioner(*p_, st);
    } catch (const std::exception& e) {
      ok = false;
      st.ui.error(st.build.name, p_->label + ": " + e.what());
    }
    st.ui.step_end(st.build.name, p_->label, ok, std::chrono::steady_clock::now() - t0, "");
  }

 private:
  PlannedProvisioner* p_;
};

// The template's "imgbake" section, rendered for this build.
struct ImageSettings {
  std::string image;
  std::string version;
  std::map<std::string, std::string> labels;
  std::vector<std::string> channels;
  std::string signing_key;
  bool embed_build_info = true;
  nlohmann::ordered_json image_config = nlohmann::ordered_json::object();
};

ImageSettings image_settings(const Template& t, const BuildPlan& plan) {
  ImageSettings s;
  s.image = plan.name;
  if (!t.imgbake) return s;
  Diagnostics ignored;  // validated when the plan was made
  json::Value v = render_value(*t.imgbake, plan.interp, RenderSource{t.path, t.raw, ignored});
  if (const auto* i = v.find("image"); i && i->is_string() && !i->text.empty()) s.image = i->text;
  if (const auto* i = v.find("version"); i && i->is_string()) s.version = i->text;
  if (const auto* i = v.find("signing_key"); i && i->is_string()) s.signing_key = i->text;
  if (const auto* i = v.find("embed_build_info"); i && i->is_bool()) s.embed_build_info = i->boolean;
  if (const auto* i = v.find("labels"); i && i->is_object())
    for (const auto& m : i->members) s.labels[m.key] = m.value.text;
  if (const auto* i = v.find("channels"); i && i->is_array())
    for (const auto& c : i->items) s.channels.push_back(c.text);
  if (const auto* i = v.find("config"); i && i->is_object()) {
    ConfigReader r(*i, t.path, "'imgbake.config'", ignored);
    s.image_config = read_image_config(r);
  }
  return s;
}

// Env lists ("K=V"): entries of `over` replace those of `base` with the same name.
nlohmann::ordered_json merge_env(const nlohmann::ordered_json& base, const nlohmann::ordered_json& over) {
  nlohmann::ordered_json out = nlohmann::ordered_json::array();
  auto name_of = [](const std::string& e) { return e.substr(0, e.find('=')); };
  std::set<std::string> overridden;
  for (const auto& e : over) overridden.insert(name_of(e.get<std::string>()));
  for (const auto& e : base)
    if (!overridden.count(name_of(e.get<std::string>()))) out.push_back(e);
  for (const auto& e : over) out.push_back(e);
  return out;
}

// Commits the build's artifacts to the store as NAME:VERSION with signed provenance.
void commit_to_store(const Template& t, const BuildPlan& plan, State& st, BuildSummary& summary,
                     const BuildOptions& opts, std::chrono::system_clock::time_point started,
                     const OpenImageSink& open_sink) {
  std::vector<ArtifactFile> files;
  std::string parent;
  std::optional<store::OciImage> oci;
  for (const auto& a : summary.artifacts) {
    files.insert(files.end(), a->files.begin(), a->files.end());
    if (parent.empty() && a->metadata.contains("parent")) parent = a->metadata["parent"].get<std::string>();
    if (!oci && a->oci_image) oci = *a->oci_image;
  }
  if (files.empty() && !oci) {
    st.message("nothing to commit to the store: the build produced no files");
    return;
  }
  ImageSettings settings = image_settings(t, plan);
  GitFacts git = detect_git(t.dir);
  store::CommitRequest req;
  req.name = settings.image;
  if (!opts.version.empty())
    req.version = opts.version;
  else if (!settings.version.empty())
    req.version = settings.version;
  req.labels = settings.labels;
  for (const auto& [k, v] : opts.labels) req.labels[k] = v;
  // A builder whose image lives elsewhere (amazon-ebs: AMIs in EC2) records where in the config.
  for (const auto& a : summary.artifacts)
    if (a->metadata.contains("image_labels"))
      for (const auto& [k, v] : a->metadata["image_labels"].items())
        if (v.is_string()) req.labels[k] = v.get<std::string>();
  // The build's name as its components see it ({{build_name}}, PACKER_BUILD_NAME): an HCL2
  // source "rootfs" "debian" and a JSON builder named "debian" label their images alike.
  req.labels["io.imgbake.build"] = plan.interp.build_name;
  if (!git.commit.empty()) {
    req.labels["org.opencontainers.image.revision"] = git.commit;
    req.labels["io.imgbake.git.branch"] = git.branch;
    req.labels["io.imgbake.git.dirty"] = git.dirty ? "true" : "false";
  }
  for (auto& [k, v] : req.labels) v = st.ui.mask(v);
  req.builder_type = plan.type;
  req.files = files;
  req.template_digest = "sha256:" + util::sha256_hex(t.raw);
  req.git_commit = git.commit;
  req.parent = parent;
  req.channels = settings.channels;
  req.embed_build_info = settings.embed_build_info;
  if (oci) {
    req.oci = std::move(oci);
    // The template's runtime settings over the builder's (the builder's Env carries PATH).
    for (const auto& [k, v] : settings.image_config.items()) {
      if (k == "Env" && req.oci->config.contains("Env")) {
        req.oci->config["Env"] = merge_env(req.oci->config["Env"], v);
        continue;
      }
      req.oci->config[k] = v;
    }
  }

  std::string key_path = opts.signing_key;
  if (key_path.empty())
    if (const char* e = std::getenv("IMGBAKE_SIGNING_KEY"); e && *e) key_path = e;
  if (key_path.empty()) key_path = settings.signing_key;
  AuditSigningKey audit_key(key_path);  // the commit's audit entries are signed by the same key
  bool created = false;
  provenance::SigningKey key = load_signing_key(key_path, created);
  if (created)
    st.ui.warn(st.build.name, "no signing key was configured: created the per-user default key " +
                                  default_signing_key_path().string() + " (imgbake keygen makes others)");

  provenance::BuildFacts facts;
  facts.builder_type = plan.type;
  facts.build_name = plan.name;
  facts.imgbake_version = kVersion;
  facts.template_path = t.path;
  facts.template_sha256 = util::sha256_hex(t.raw);
  if (plan.interp.user_vars)
    for (const auto& [k, v] : *plan.interp.user_vars) {
      const VariableDef* def = t.variable(k);
      facts.variables[k] = def && def->sensitive ? "<sensitive>" : st.ui.mask(v);
    }
  facts.only = opts.only;
  facts.except = opts.except;
  if (!git.commit.empty()) {
    facts.git_commit = git.commit;
    facts.git_branch = git.branch;
    facts.git_dirty = git.dirty;
    if (!git.remote.empty()) facts.git_remote = git.remote;
  }
  if (!parent.empty()) facts.parent = parent;
  for (const auto& a : summary.artifacts) {
    if (a->metadata.contains("provenance_dependencies"))
      for (auto d : a->metadata["provenance_dependencies"]) {
        st.ui.mask_strings(d);
        facts.builder_dependencies.push_back(std::move(d));
      }
    if (a->metadata.contains("provenance_parameters"))
      for (const auto& [k, v] : a->metadata["provenance_parameters"].items()) {
        facts.builder_parameters[k] = v;
        st.ui.mask_strings(facts.builder_parameters[k]);
      }
  }
  facts.invocation_id = st.build.run_uuid;
  facts.started = started;
  facts.finished = std::chrono::system_clock::now();
  for (const auto& s : summary.steps)
    if (!s.key.empty()) facts.steps.push_back({s.name, s.key, std::chrono::duration<double>(s.duration).count()});
  // The host files the provisioners' tools read (manifests, playbooks, roles), once each.
  std::set<std::string> seen_inputs;
  for (const auto& p : plan.provisioners)
    for (const auto& in : p.impl->host_inputs())
      if (in.sha256.size() == 64 && seen_inputs.insert(in.path).second) facts.inputs.push_back({in.path, in.sha256});
  req.make_provenance = [&](const std::string& version, const std::string& manifest_digest,
                            const std::vector<oci::Descriptor>& layers) {
    facts.subjects.push_back({req.name + ":" + version, manifest_digest.substr(7)});
    for (size_t i = 0; i < layers.size(); ++i)
      facts.subjects.push_back({oci::layer_subject_name(layers[i].annotations, i), layers[i].digest.substr(7)});
    // The statement's values are masked too: a secret must not reach provenance by any
    // path (keys are not, so a short secret cannot break the document's structure).
    nlohmann::json statement = provenance::make_statement(facts);
    st.ui.mask_strings(statement);
    std::string payload = statement.dump();
    return provenance::sign_envelope(key, provenance::kInTotoPayloadType, payload);
  };

  std::unique_ptr<store::ImageSink> sink =
      open_sink ? open_sink()
                : std::make_unique<store::Store>(opts.store_home.empty() ? store::Store::default_home()
                                                                         : std::filesystem::path(opts.store_home));
  store::ImageSink& store = *sink;
  req.signature_trusted = store.trusts(key.keyid());
  store::ImageRecord rec = store.commit(req);
  summary.image_ref = rec.ref();
  summary.image_digest = rec.manifest_digest;
  CommitInfo info;
  info.image = rec.name;
  info.version = rec.version;
  info.digest = rec.manifest_digest;
  info.new_version = !rec.unchanged;
  info.store = store.home().string();
  info.signed_by = key.keyid();
  if (!rec.unchanged) info.channels = rec.channels;
  st.ui.commit(st.build.name, info);
  for (const auto& held : rec.held_channels)
    st.ui.say(st.build.name, "channel " + held + " not moved: its policy requires passing tests (imgbake test " +
                                 rec.ref() + ", then promote; or build --test)");
}

bool excluded_post_processor(const std::string& name, const BuildOptions& opts) {
  return std::any_of(opts.except.begin(), opts.except.end(), [&](const auto& g) { return util::glob_match(g, name); });
}

BuildSummary run_one(const Template& t, BuildPlan& plan, const BuildOptions& opts, Ui& ui, const std::string& run_uuid,
                     const OpenImageSink& open_sink) {
  const std::string& template_path = t.path;
  auto started = std::chrono::system_clock::now();
  BuildSummary summary;
  summary.name = plan.name;
  summary.type = plan.type;
  auto t0 = std::chrono::steady_clock::now();
  ui.build_start(plan.name, plan.type);

  BuildInfo info;
  info.name = plan.name;
  info.type = plan.type;
  info.force = opts.force;
  info.debug = opts.debug;
  info.on_error = opts.on_error;
  info.run_uuid = run_uuid;
  info.template_path = template_path;
  info.interp = plan.interp;
  info.interp.defer_unknown = false;
  info.store_home = opts.store_home;
  info.no_cache = opts.no_cache;
  info.explain_cache = opts.explain_cache;
  info.cache_remote = opts.cache_remote;
  info.commit = opts.commit;
  info.image_config = image_settings(t, plan).image_config;
  // The image config ships inside the image, for anyone who pulls it: a sensitive value there
  // would be published, masking cannot help. Refused before anything runs.
  for (const auto& [k, v] : info.image_config.items()) {
    const std::string text = v.dump();
    if (ui.mask(text) == text) continue;
    summary.error = "imgbake.config." + k +
                    " holds a sensitive value: the image config ships with the image, so the value would be "
                    "published with it; give it to the container at run time instead (e.g. podman run -e)";
    ui.error(plan.name, summary.error);
    summary.duration = std::chrono::steady_clock::now() - t0;
    ui.build_end(summary);
    return summary;
  }
  State st(ui, global_cancel(), std::move(info));

  StepList provision;
  provision.push_back(
      std::make_unique<ErrorCleanupStep>(plan.cleanup_provisioner ? &*plan.cleanup_provisioner : nullptr));
  for (auto& p : plan.provisioners) provision.push_back(std::make_unique<ProvisionStep>(p));
  StepList steps = plan.builder->steps(std::move(provision));
  StepOutcome outcome = run_steps(steps, st);
  summary.steps = outcome.steps;
  summary.ok = outcome.ok;
  summary.cancelled = outcome.cancelled;
  summary.error = outcome.error;

  if (outcome.ok) {
    std::shared_ptr<Artifact> original = st.artifact;
    // The builder's artifact is deleted only when post-processors ran and none of the
    // first ones in their chains asked to keep it; a chain that -except skipped has no say.
    bool keep_original = true;
    bool any_chain_ran = false;
    bool pp_failed = false;
    for (auto& chain : plan.chains) {
      std::shared_ptr<Artifact> prior = original;
      for (size_t j = 0; j < chain.size() && !pp_failed; ++j) {
        auto& pp = chain[j];
        if (excluded_post_processor(pp.def->name, opts)) break;  // the rest of this chain is skipped too
        if (j == 0 && !any_chain_ran) {
          any_chain_ran = true;
          keep_original = false;
        }
        if (global_cancel().cancelled()) {
          summary.cancelled = true;
          pp_failed = true;
          break;
        }
        auto p0 = std::chrono::steady_clock::now();
        ui.step_start(plan.name, pp.label, "");
        try {
          PostProcessResult r = pp.impl->post_process(st, prior);
          auto d = std::chrono::steady_clock::now() - p0;
          ui.step_end(plan.name, pp.label, true, d, "");
          summary.steps.push_back({pp.label, d, true, ""});
          bool keep = r.keep_input;
          if (!r.force_keep && pp.def->keep_input_artifact) keep = *pp.def->keep_input_artifact;
          if (r.force_keep) keep = true;
          if (j == 0) {
            keep_original = keep_original || keep;
          } else if (!keep && prior && prior != r.artifact) {
            prior->destroy();
            std::erase(summary.artifacts, prior);
          }
          if (r.artifact && r.artifact != prior) summary.artifacts.push_back(r.artifact);
          prior = r.artifact ? r.artifact : prior;
        } catch (const Cancelled&) {
          ui.step_end(plan.name, pp.label, false, std::chrono::steady_clock::now() - p0, "");
          summary.cancelled = true;
          pp_failed = true;
          summary.error = pp.label + ": interrupted";
        } catch (const std::exception& e) {
          ui.step_end(plan.name, pp.label, false, std::chrono::steady_clock::now() - p0, "");
          ui.error(plan.name, pp.label + ": " + e.what());
          pp_failed = true;
          summary.error = pp.label + ": " + e.what();
        }
      }
      if (pp_failed) break;
    }
    if (original) {
      if (keep_original) {
        summary.artifacts.insert(summary.artifacts.begin(), original);
      } else if (!pp_failed) {
        ui.message(plan.name, "deleting the builder's artifact: no post-processor kept it (keep_input_artifact)");
        original->destroy();
      } else {
        summary.artifacts.insert(summary.artifacts.begin(), original);
      }
    }
    summary.ok = !pp_failed;
    if (summary.ok && opts.commit && !global_cancel().cancelled()) {
      auto c0 = std::chrono::steady_clock::now();
      ui.step_start(plan.name, "commit to store", "");
      try {
        commit_to_store(t, plan, st, summary, opts, started, open_sink);
        ui.step_end(plan.name, "commit to store", true, std::chrono::steady_clock::now() - c0, "");
      } catch (const std::exception& e) {
        ui.step_end(plan.name, "commit to store", false, std::chrono::steady_clock::now() - c0, "");
        summary.ok = false;
        summary.error = std::string("commit to store: ") + e.what();
        ui.error(plan.name, summary.error, "commit to store");
      }
    }
  }
  summary.duration = std::chrono::steady_clock::now() - t0;
  for (const auto& a : summary.artifacts) ui.artifact(plan.name, *a);
  ui.build_end(summary);
  return summary;
}

}  // namespace

int run_builds(const Template& t, std::vector<BuildPlan>& plans, const BuildOptions& opts, Ui& ui,
               const OpenImageSink& open_sink) {
  std::string run_uuid = util::uuid_v4();
  std::vector<BuildSummary> results(plans.size());
  size_t limit = opts.debug ? 1 : opts.parallel_builds <= 0 ? plans.size() : static_cast<size_t>(opts.parallel_builds);

  std::mutex mu;
  std::condition_variable cv;
  size_t running = 0;
  std::vector<std::thread> threads;
  for (size_t i = 0; i < plans.size(); ++i) {
    {
      std::unique_lock lock(mu);
      cv.wait(lock, [&] { return running < limit; });
      ++running;
    }
    threads.emplace_back([&, i] {
      try {
        results[i] = run_one(t, plans[i], opts, ui, run_uuid, open_sink);
      } catch (const std::exception& e) {
        results[i].name = plans[i].name;
        results[i].type = plans[i].type;
        results[i].error = e.what();
        ui.error(plans[i].name, e.what());
      }
      std::lock_guard lock(mu);
      --running;
      cv.notify_all();
    });
  }
  for (auto& th : threads) th.join();
  ui.summary(results);

  if (global_cancel().cancelled()) return 128 + global_cancel().signal();
  bool all_ok = std::all_of(results.begin(), results.end(), [](const auto& r) { return r.ok; });
  return all_ok ? kExitOk : kExitFailure;
}

}  // namespace imgbake
