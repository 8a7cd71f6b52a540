// The rootfs builder: an OCI image built from a root filesystem directory, without a VM
// and without a daemon. The base (debootstrap, a tarball, an OCI layout or an image of
// the store) is one or more layers; each provisioner runs inside the tree through the exec
// communicator and becomes one layer, the diff of the tree before and after it. Every
// layer is cached in the store under its step key, so an unchanged step is not run again
// and an unchanged build never even unpacks the tree (docs/builders/rootfs.md).
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <memory>
#include <optional>

#include "imgbake/builder.h"
#include "imgbake/cache_remote.h"
#include "imgbake/error.h"
#include "imgbake/exec.h"
#include "imgbake/json_diff.h"
#include "imgbake/layer.h"
#include "imgbake/oci_json.h"
#include "imgbake/process.h"
#include "imgbake/store.h"
#include "imgbake/temp_path_guard.h"
#include "imgbake/util.h"
#include "rootfs_config.h"

namespace imgbake::rootfs {

namespace fs = std::filesystem;

namespace {

constexpr const char* kDefaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

struct LayerRef {
  oci::Descriptor blob;
  std::string diff_id;
  std::string created_by;
  bool empty = false;  // a step that changed nothing: a history entry without a layer
};

// What the steps share: the store, the tree (made only when a step has to run), the
// layers so far and the key chain.
struct Work {
  Config cfg;
  std::unique_ptr<store::Store> store;
  fs::path tree;            // "" until needed
  size_t applied = 0;       // layers of `layers` already in the tree
  bool tree_ready = false;  // the tree holds exactly `layers[0, applied)`
  std::vector<LayerRef> layers;
  nlohmann::ordered_json base_config = nlohmann::ordered_json::object();  // inherited from the base image
  nlohmann::ordered_json base_history = nlohmann::ordered_json::array();
  std::string parent;  // the base's digest
  std::string chain;   // the key of the last step
  std::optional<int64_t> epoch;
  std::unique_ptr<ExecCommunicator> comm;
  size_t slot_index = 0;

  layer::Options layer_options() const {
    layer::Options o;
    o.compression = cfg.compression;
    o.level = cfg.compression_level;
    o.source_date_epoch = epoch;
    return o;
  }
};

std::string short_digest(const std::string& d) { return d.substr(0, std::min<size_t>(d.size(), 19)); }

std::string rfc3339(int64_t epoch) {
  return util::format_rfc3339(std::chrono::system_clock::time_point(std::chrono::seconds(epoch)));
}

// SOURCE_DATE_EPOCH: the environment, else the option, else the last commit time of the
// template's git repository; none of them: no clamping (and a `created` of now).
std::optional<int64_t> find_epoch(const Config& cfg, const State& st) {
  if (const char* e = std::getenv("SOURCE_DATE_EPOCH"); e && *e) {
    char* end = nullptr;
    long long v = std::strtoll(e, &end, 10);
    if (end && *end == '\0' && v >= 0) return v;
    throw BuildError("SOURCE_DATE_EPOCH='" + std::string(e) + "' is not a number of seconds");
  }
  if (cfg.source_date_epoch) return cfg.source_date_epoch;
  fs::path dir =
      st.build.template_path.empty() ? fs::current_path() : fs::absolute(st.build.template_path).parent_path();
  std::string out;
  ProcessSpec spec;
  spec.argv = {"git", "-C", dir.string(), "log", "-1", "--format=%ct"};
  spec.timeout = std::chrono::seconds(10);
  try {
    int rc = run_process(
        spec, [&](std::string_view l) { out += l; }, [](std::string_view) {}, st.cancel);
    if (rc == 0 && !out.empty() && std::all_of(out.begin(), out.end(), ::isdigit)) return std::stoll(out);
  } catch (const Cancelled&) {
    throw;
  } catch (const std::exception&) {
  }
  return std::nullopt;
}

// Looks the step up in the cache, explaining hits and misses when asked. Returns the
// key (sha256 hex) and the entry on a hit.
std::optional<store::CacheEntry> lookup(Work& w, State& st, const std::string& what, const nlohmann::json& material,
                                        std::string& key, std::string& preimage, const std::string& slot) {
  // Secrets (environment_vars, inline commands, config Env …) enter the key as their digests:
  // the key changes when a secret does, and the catalog and --explain-cache never hold one.
  nlohmann::json step = material;
  st.ui.redact_strings(step);
  nlohmann::json pre = {{"prev", w.chain}, {"step", step}};
  preimage = pre.dump();
  key = util::sha256_hex(preimage);
  std::optional<store::CacheEntry> hit;
  if (!st.build.no_cache) hit = store::cache_find(*w.store, st.build.cache_remote.get(), key, slot);
  if (st.build.explain_cache) {
    st.message("cache: " + what + ": key " + key.substr(0, 16) + " = sha256 of " + preimage);
    if (st.build.no_cache) {
      st.message("cache: " + what + ": not looked up (--no-cache)");
    } else if (hit) {
      st.message("cache: " + what + ": hit (" + (hit->empty ? "no changes" : short_digest(hit->blob.digest)) +
                 ", cached " + hit->created + ")");
    } else if (auto last = w.store->cache_last_in_slot(slot)) {
      std::vector<std::string> changes;
      try {
        json_diff(nlohmann::json::parse(last->material), pre, "", changes);
      } catch (const std::exception&) {
      }
      st.message("cache: " + what + ": miss; last time this step had key " + last->key.substr(0, 16) + ", changed:");
      for (const auto& c : changes)
        st.message("  " + (c.starts_with("prev:") ? "prev (an earlier step's key changed): " + c.substr(6) : c));
    } else {
      st.message("cache: " + what + ": miss; this step has not been built before");
    }
  }
  return hit;
}

void record(Work& w, store::CacheRemote* remote, const std::string& key, const std::string& preimage, const LayerRef& l,
            const std::string& slot) {
  store::CacheEntry e;
  e.key = key;
  e.material = preimage;
  e.empty = l.empty;
  e.blob = l.blob;
  e.diff_id = l.diff_id;
  e.created_by = l.created_by;
  store::cache_record(*w.store, remote, e, slot);
}

LayerRef from_cache(const store::CacheEntry& e) { return LayerRef{e.blob, e.diff_id, e.created_by, e.empty}; }

// A fresh directory for the tree, beside the store's blobs (layers are renamed, not copied):
// `root` in a build directory of mode 0700, so that while a build runs no other user of the
// host reaches the image's setuid files and device nodes (or the sandbox's files, made there
// too). `store gc` removes what a killed build left.
fs::path make_tree_dir(Work& w) {
  fs::path tmp = w.store->blobs().temp_dir();
  fs::create_directories(tmp);
  std::string tmpl = (tmp / "rootfs-XXXXXX").string();
  if (!mkdtemp(tmpl.data())) throw BuildError("cannot create a directory in " + tmp.string());  // 0700
  fs::path tree = fs::path(tmpl) / "root";
  std::error_code ec;
  fs::create_directory(tree, ec);
  if (ec) throw BuildError("cannot create a directory in " + tmpl + ": " + ec.message());
  fs::permissions(tree, fs::perms(0755));
  return tree;
}

// Brings the tree up to date with the layers so far (unpacking the ones it lacks).
void materialize(Work& w, State& st) {
  if (w.tree.empty()) w.tree = make_tree_dir(w);
  if (!w.tree_ready) {
    // Start over from an empty tree: whatever is in it is not trusted.
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(w.tree, ec)) fs::remove_all(e.path(), ec);
    w.applied = 0;
    w.tree_ready = true;
  }
  for (; w.applied < w.layers.size(); ++w.applied) {
    const LayerRef& l = w.layers[w.applied];
    if (l.empty) continue;
    st.message("unpacking layer " + std::to_string(w.applied + 1) + " (" + short_digest(l.blob.digest) + ", " +
               util::format_bytes(l.blob.size) + ")");
    w.store->blobs().check_regular(l.blob.digest);
    std::string diff_id = layer::apply(w.store->blobs().path(l.blob.digest), w.tree, st.cancel);
    if (diff_id != l.diff_id) {
      w.tree_ready = false;
      throw BuildError("layer " + l.blob.digest + " unpacks to " + diff_id + ", not the diff_id " + l.diff_id +
                       " it was recorded with (imgbake store check)");
    }
  }
}

// Writes the difference into the store and returns the layer.
LayerRef commit_layer(Work& w, State& st, const layer::Snapshot& before, const std::string& created_by) {
  layer::Snapshot after = layer::scan(w.tree);
  util::TempPathGuard temp(w.store->blobs().temp_dir() / ("layer-" + util::uuid_v4() + ".tar"));
  LayerRef l;
  l.created_by = created_by;
  layer::LayerBlob b = layer::write_diff(w.tree, before, after, temp.path(), w.layer_options(), st.cancel);
  if (b.entries == 0) {
    l.empty = true;  // the guard removes the empty tar
    return l;
  }
  l.blob = w.store->blobs().adopt(b.file, b.digest, b.size, b.media_type);
  temp.dismiss();  // the store owns the file now
  l.diff_id = b.diff_id;
  st.message("layer " + short_digest(b.digest) + ": " + std::to_string(b.entries) + " entries, " +
             util::format_bytes(b.size));
  return l;
}

// ---------------------------------------------------------------------------

class SourceStep : public Step {
 public:
  explicit SourceStep(Work& w) : w_(w) {}
  std::string name() const override { return "source " + w_.cfg.source; }
  nlohmann::json key_material(const State&) const override {
    return {{"step", "rootfs-source"}, {"source", w_.cfg.source}};
  }

  void run(State& st) override {
    w_.store = std::make_unique<store::Store>(st.build.store_home.empty() ? store::Store::default_home()
                                                                          : fs::path(st.build.store_home));
    w_.epoch = find_epoch(w_.cfg, st);
    // What every layer depends on besides its own step: how layers are written and how
    // commands run.
    nlohmann::json settings = {{"compression", layer::media_type(w_.cfg.compression)},
                               {"level", w_.cfg.compression_level},
                               {"source_date_epoch", w_.epoch ? nlohmann::json(*w_.epoch) : nlohmann::json()},
                               {"network", w_.cfg.network},
                               {"env", exec_env(st, w_)}};
    switch (w_.cfg.kind) {
      case SourceKind::Store: from_store(st, settings); break;
      case SourceKind::OciLayout: from_layout(st, w_.cfg.path, settings); break;
      case SourceKind::OciArchive: from_archive(st, settings); break;
      case SourceKind::Tar:
      case SourceKind::Debootstrap: built_base(st, settings); break;
    }
  }

  void cleanup(State&) noexcept override {}

  // The environment commands run with: the base image's Env, then the template's.
  static nlohmann::json exec_env(const State& st, const Work& w) {
    nlohmann::json env = nlohmann::json::object();
    for (const auto* config : {&w.base_config, &st.build.image_config})
      if (config->contains("Env"))
        for (const auto& e : (*config)["Env"]) {
          if (!e.is_string())
            throw BuildError(std::string(config == &w.base_config ? "the base image's config" : "imgbake.config") +
                             ": Env holds " + oci::json_kind(e) + ", not a \"NAME=value\" string");
          std::string s = e.get<std::string>();
          env[s.substr(0, s.find('='))] = s.substr(s.find('=') + 1);
        }
    return env;
  }

 private:
  Work& w_;
  std::optional<int64_t> base_created_;

  // An image of the store: its layers are already blobs; nothing is unpacked yet.
  void from_store(State& st, nlohmann::json& settings) {
    store::ImageRecord img = w_.store->resolve_parent(w_.cfg.path);
    nlohmann::json m = w_.store->manifest(img);
    adopt_manifest(m, img.ref());
    derive_epoch(st, settings, base_created_, "the base image's created time");
    w_.parent = img.manifest_digest;
    w_.chain = util::sha256_hex(nlohmann::json({{"base", img.manifest_digest}, {"settings", settings}}).dump());
    st.message("base: " + img.ref() + " (" + img.manifest_digest + "), " + std::to_string(w_.layers.size()) +
               " layer(s)");
  }

  // The layers of a container image manifest whose blobs are in the store, and its config.
  // `what` names the manifest in errors.
  void adopt_manifest(const nlohmann::json& m, const std::string& what) {
    const std::string config_digest = oci::string_at(oci::object_at(m, "config", what), "digest", what + ": config");
    const std::string config_what = what + ": config " + config_digest;
    nlohmann::json config = oci::parse_json(w_.store->blobs().read(config_digest), config_what);
    const auto& diff_ids =
        oci::array_at(oci::object_at(config, "rootfs", config_what), "diff_ids", config_what + ": rootfs");
    const auto& layers = oci::array_at(m, "layers", what);
    if (diff_ids.size() != layers.size())
      throw BuildError(what + " is not a container image: " + std::to_string(layers.size()) + " layers but " +
                       std::to_string(diff_ids.size()) + " diff_ids");
    for (size_t i = 0; i < layers.size(); ++i) {
      const std::string layer_what = what + ": layers[" + std::to_string(i) + "]";
      std::string mt = oci::string_at(layers[i], "mediaType", layer_what);
      if (!mt.starts_with("application/vnd.oci.image.layer.v1.tar") &&
          !mt.starts_with("application/vnd.docker.image.rootfs.diff.tar"))
        throw BuildError(what + " is not a container image: layer " + std::to_string(i + 1) + " is " + mt +
                         " (the rootfs builder starts from tar layers; a disk image is a qemu builder's source)");
      LayerRef l;
      l.blob.media_type = mt;
      l.blob.digest = oci::string_at(layers[i], "digest", layer_what);
      l.blob.size = oci::size_at(layers[i], "size", layer_what);
      if (!diff_ids[i].is_string())
        throw BuildError(config_what + ": rootfs.diff_ids[" + std::to_string(i) + "] is " +
                         oci::json_kind(diff_ids[i]) + ", not a string");
      l.diff_id = diff_ids[i].get<std::string>();
      l.created_by = "base layer " + std::to_string(i + 1);
      w_.layers.push_back(l);
    }
    if (config.contains("config") && config["config"].is_object())
      w_.base_config = nlohmann::ordered_json::parse(config["config"].dump());
    if (config.contains("history") && config["history"].is_array())
      w_.base_history = nlohmann::ordered_json::parse(config["history"].dump());
    if (config.contains("created") && config["created"].is_string())
      base_created_ = util::parse_rfc3339_seconds(config["created"].get<std::string>());
  }

  // Without SOURCE_DATE_EPOCH, source_date_epoch or a git commit, the time comes from the
  // inputs, so that two builds of the same template from the same base give the same digest
  // (as apko does): the base image's `created`, or a tarball's newest entry.
  void derive_epoch(State& st, nlohmann::json& settings, std::optional<int64_t> t, const std::string& from) {
    if (w_.epoch || !t) return;
    w_.epoch = t;
    settings["source_date_epoch"] = *t;
    st.message("SOURCE_DATE_EPOCH " + std::to_string(*t) + " (" + rfc3339(*t) + "): " + from);
  }

  // An OCI image layout: the manifest tagged `tag` (or the only one); its blobs are copied
  // into the store (checked on the way) unless they are there already.
  void from_layout(State& st, const fs::path& dir, nlohmann::json& settings) {
    const std::string index_what = (dir / "index.json").string();
    nlohmann::json index = oci::parse_json(util::read_file(dir / "index.json"), index_what);
    const nlohmann::json* pick = nullptr;
    std::vector<std::string> names;
    const auto& manifests = oci::array_at(index, "manifests", index_what);
    for (const auto& d : manifests) {
      if (!d.is_object())
        throw BuildError(index_what + ": manifests[" + std::to_string(names.size()) + "] is " + oci::json_kind(d) +
                         ", not an object");
      std::string name =
          d.contains("annotations") ? d["annotations"].value("org.opencontainers.image.ref.name", "") : "";
      if (!d.contains("digest") || !d["digest"].is_string())
        oci::string_at(d, "digest", index_what + ": manifests[" + std::to_string(names.size()) + "]");  // throws
      names.push_back(name.empty() ? d["digest"].get<std::string>() : name);
      if (w_.cfg.tag.empty() ? manifests.size() == 1 : name == w_.cfg.tag) pick = &d;
    }
    if (!pick)
      throw BuildError("no image " +
                       (w_.cfg.tag.empty() ? std::string("(give a tag: oci:PATH:TAG)") : "'" + w_.cfg.tag + "'") +
                       " in the OCI layout " + dir.string() + "; it has: " + util::join(names, ", "));
    std::string digest = (*pick)["digest"].get<std::string>();
    if (!digest.starts_with("sha256:") || digest.size() != 71 ||
        digest.find_first_not_of("0123456789abcdef", 7) != std::string::npos)
      throw BuildError(index_what + ": the digest '" + digest + "' is not a sha256 digest");
    auto blob_path = [&](const std::string& d) { return dir / "blobs" / "sha256" / d.substr(7); };
    auto copy_in = [&](const std::string& d, const std::string& mt) {
      if (w_.store->blobs().exists(d)) return;
      oci::Descriptor got = w_.store->blobs().put_file(blob_path(d), mt);
      if (got.digest != d) {
        w_.store->blobs().remove(got.digest);
        throw BuildError("blob " + d + " of " + dir.string() + " is corrupt (its content is " + got.digest + ")");
      }
    };
    copy_in(digest, oci::kManifestMediaType);
    const std::string manifest_what = dir.string() + ": manifest " + digest;
    nlohmann::json m = oci::parse_json(w_.store->blobs().read(digest), manifest_what);
    copy_in(oci::string_at(oci::object_at(m, "config", manifest_what), "digest", manifest_what + ": config"),
            oci::kConfigMediaType);
    const auto& layers = oci::array_at(m, "layers", manifest_what);
    for (size_t i = 0; i < layers.size(); ++i) {
      const std::string layer_what = manifest_what + ": layers[" + std::to_string(i) + "]";
      copy_in(oci::string_at(layers[i], "digest", layer_what), oci::string_at(layers[i], "mediaType", layer_what));
    }
    adopt_manifest(m, manifest_what);
    derive_epoch(st, settings, base_created_, "the base image's created time");
    w_.parent = digest;
    w_.chain = util::sha256_hex(nlohmann::json({{"base", digest}, {"settings", settings}}).dump());
    st.message("base: " + w_.cfg.source + " (" + digest + "), " + std::to_string(w_.layers.size()) + " layer(s)");
  }

  void from_archive(State& st, nlohmann::json& settings) {
    fs::path dir = make_tree_dir(w_);  // a scratch directory for the unpacked layout
    struct Remove {
      fs::path p;
      ~Remove() {
        std::error_code ec;
        fs::remove_all(p, ec);
      }
    } remove{dir};
    layer::apply(w_.cfg.path, dir, st.cancel);
    from_layout(st, dir, settings);
  }

  // debootstrap or a tarball: the base is made here, once, and cached like a step.
  void built_base(State& st, nlohmann::json& settings) {
    if (w_.cfg.kind == SourceKind::Tar)
      derive_epoch(st, settings, layer::newest_mtime(w_.cfg.path), "the newest file time in " + w_.cfg.path);
    nlohmann::json material = {{"step", "rootfs-base"}, {"settings", settings}};
    std::string created_by;
    if (w_.cfg.kind == SourceKind::Tar) {
      material["tar_sha256"] = util::file_digest_hex(w_.cfg.path);
      created_by = "imgbake rootfs: tar " + fs::path(w_.cfg.path).filename().string();
      w_.parent = "sha256:" + material["tar_sha256"].get<std::string>();
    } else {
      const auto& d = w_.cfg.debootstrap;
      material["debootstrap"] = {{"suite", d.suite},     {"variant", d.variant}, {"components", d.components},
                                 {"include", d.include}, {"mirror", d.mirror},   {"check_gpg", d.check_gpg}};
      created_by = "imgbake rootfs: debootstrap --variant=" + d.variant + " " + d.suite;
    }
    std::string key, preimage, slot = st.build.template_path + "#" + st.build.name + "#base";
    auto hit = lookup(w_, st, "base", material, key, preimage, slot);
    w_.chain = key;
    if (hit) {
      st.message("base: cached layer " + short_digest(hit->blob.digest) + " (" + util::format_bytes(hit->blob.size) +
                 ")");
      w_.layers.push_back(from_cache(*hit));
      return;
    }
    w_.tree = make_tree_dir(w_);
    w_.tree_ready = true;
    if (w_.cfg.kind == SourceKind::Tar) {
      st.message("unpacking " + w_.cfg.path);
      layer::apply(w_.cfg.path, w_.tree, st.cancel);
    } else {
      debootstrap(st);
    }
    LayerRef l = commit_layer(w_, st, layer::Snapshot{}, created_by);
    record(w_, st.build.cache_remote.get(), key, preimage, l, slot);
    w_.layers.push_back(l);
    w_.applied = w_.layers.size();
  }

  void debootstrap(State& st) {
    const auto& d = w_.cfg.debootstrap;
    // Its own mount namespace: debootstrap mounts /proc and /sys inside the target, and a
    // failure must not leave them mounted under a directory that is about to be deleted.
    ProcessSpec spec;
    spec.argv = {"unshare", "--mount", "--propagation", "private", "debootstrap"};
    if (d.variant != "default" && d.variant != "-") spec.argv.push_back("--variant=" + d.variant);
    if (!d.components.empty()) spec.argv.push_back("--components=" + util::join(d.components, ","));
    if (!d.include.empty()) spec.argv.push_back("--include=" + util::join(d.include, ","));
    if (!d.check_gpg) spec.argv.push_back("--no-check-gpg");
    spec.argv.insert(spec.argv.end(), {d.suite, w_.tree.string(), d.mirror});
    st.message("debootstrap " + d.suite + " (" + d.variant + ") from " + d.mirror);
    std::vector<std::string> tail;
    auto keep = [&](std::string_view line) {
      tail.emplace_back(line);
      if (tail.size() > 20) tail.erase(tail.begin());
    };
    int rc = run_process(
        spec,
        [&](std::string_view line) {
          keep(line);
          if (line.starts_with("I: Base system installed") || line.starts_with("W:") || line.starts_with("E:"))
            st.message(std::string(line));
        },
        [&](std::string_view line) { keep(line); }, st.cancel);
    if (rc != 0) {
      std::string log;
      std::error_code ec;
      if (fs::exists(w_.tree / "debootstrap" / "debootstrap.log", ec))
        log = "\n" + util::read_file(w_.tree / "debootstrap" / "debootstrap.log");
      if (log.size() > 4000) log = "\n..." + log.substr(log.size() - 4000);
      throw BuildError("debootstrap failed with exit status " + std::to_string(rc) + ":\n" + util::join(tail, "\n") +
                       log);
    }
    // Files that only say when and how the tree was made; they would make two builds differ.
    for (const char* p :
         {"var/log/bootstrap.log", "var/cache/ldconfig/aux-cache", "var/log/dpkg.log", "var/log/alternatives.log",
          "var/cache/debconf/config.dat-old", "var/cache/debconf/templates.dat-old", "var/lib/dpkg/status-old",
          "var/lib/dpkg/diversions-old"}) {
      std::error_code ec;
      fs::remove(w_.tree / p, ec);
    }
  }
};

// One provisioner as one layer, or a cache hit that skips it.
class LayerStep : public Step {
 public:
  LayerStep(Work& w, std::unique_ptr<Step> inner, size_t index) : w_(w), inner_(std::move(inner)), index_(index) {}
  std::string name() const override { return inner_->name(); }
  nlohmann::json key_material(const State& st) const override { return inner_->key_material(st); }
  bool runs_on_abort() const override { return inner_->runs_on_abort(); }

  void run(State& st) override {
    nlohmann::json material = inner_->key_material(st);
    std::string key, preimage, slot = st.build.template_path + "#" + st.build.name + "#" + std::to_string(index_);
    auto hit = lookup(w_, st, name(), material, key, preimage, slot);
    w_.chain = key;
    st.step_cache = StepCache{hit.has_value(), key};
    if (hit) {
      std::string what = hit->empty ? std::string("no changes") : "layer " + short_digest(hit->blob.digest);
      HostEffect effect = inner_->host_effect();
      if (effect == HostEffect::None) {
        st.message("cached: " + what + " (step key " + key.substr(0, 12) + "); not run");
        w_.layers.push_back(from_cache(*hit));
        return;
      }
      // Its effect is on the host (a download, a shell-local command): the cache holds its
      // layer, not that effect, so it runs; a step that reads the machine gets the tree,
      // brought up from the cached layers.
      st.message("cached: " + what + " (step key " + key.substr(0, 12) +
                 "); it runs anyway: its effect is on the host");
      if (effect == HostEffect::FromMachine) {
        materialize(w_, st);
        st.communicator = communicator(st);
      }
      inner_->run(st);
      w_.layers.push_back(from_cache(*hit));
      return;
    }
    materialize(w_, st);
    st.communicator = communicator(st);
    layer::Snapshot before = layer::scan(w_.tree);
    w_.tree_ready = false;  // until the layer is recorded, the tree is ahead of `layers`
    inner_->run(st);
    LayerRef l = commit_layer(w_, st, before, "imgbake rootfs: " + name());
    record(w_, st.build.cache_remote.get(), key, preimage, l, slot);
    w_.layers.push_back(l);
    w_.applied = w_.layers.size();
    w_.tree_ready = true;
  }

  void cleanup(State& st) noexcept override { inner_->cleanup(st); }
  HostEffect host_effect() const override { return inner_->host_effect(); }

 private:
  Work& w_;
  std::unique_ptr<Step> inner_;
  size_t index_;

  // The sandbox that runs commands in the tree, made once.
  Communicator* communicator(State& st) {
    if (!w_.comm) {
      ExecOptions o;
      o.root = w_.tree;
      o.private_dir = w_.tree.parent_path();
      o.network = w_.cfg.network;
      nlohmann::json env = SourceStep::exec_env(st, w_);  // named: items() must not outlive it
      for (const auto& [k, v] : env.items()) o.env[k] = v.get<std::string>();
      for (const auto* config : {&w_.base_config, &st.build.image_config})
        if (config->contains("WorkingDir")) o.workdir = (*config)["WorkingDir"];
      w_.comm = std::make_unique<ExecCommunicator>(o);
    }
    return w_.comm.get();
  }
};

// The image: layers, history, config; committed by the pipeline (store::CommitRequest::oci).
class ImageStep : public Step {
 public:
  explicit ImageStep(Work& w) : w_(w) {}
  std::string name() const override { return "image"; }
  nlohmann::json key_material(const State&) const override { return {{"step", "rootfs-image"}}; }
  bool silent() const override { return true; }

  void run(State& st) override {
    auto image = std::make_shared<oci::Image>();
    nlohmann::json history = nlohmann::json::parse(w_.base_history.dump());
    std::string created = w_.epoch ? rfc3339(*w_.epoch) : "";
    util::Hasher chain;
    for (const auto& l : w_.layers) {
      bool base = l.created_by.starts_with("base layer");
      if (!l.empty) {
        image->layers.push_back({l.blob, l.diff_id});
        chain.update(l.diff_id.data(), l.diff_id.size());
      }
      if (base && !w_.base_history.empty()) continue;  // the base image's own history says it
      nlohmann::json h = {{"created_by", l.created_by}};
      if (!created.empty()) h["created"] = created;
      if (l.empty) h["empty_layer"] = true;
      history.push_back(h);
    }
    nlohmann::json config = nlohmann::json::parse(w_.base_config.dump());
    if (!config.contains("Env")) config["Env"] = nlohmann::json::array({kDefaultPath});
    auto a = std::make_shared<Artifact>();
    a->builder_type = "rootfs";
    a->id = "sha256:" + chain.hex();
    // Through nlohmann::json: keys sorted, as the image config has always been written.
    image->config = nlohmann::ordered_json::parse(config.dump());
    image->history = nlohmann::ordered_json::parse(history.dump());
    image->created = created;
    a->oci_image = std::move(image);
    if (!w_.parent.empty()) a->metadata["parent"] = w_.parent;
    st.artifact = a;
    if (!st.build.commit) st.message("--no-store: the image is not catalogued; its layers stay in the build cache");
  }

 private:
  Work& w_;
};

// Removes the tree at the end, whatever happened.
class TreeStep : public Step {
 public:
  explicit TreeStep(Work& w) : w_(w) {}
  std::string name() const override { return "tree"; }
  nlohmann::json key_material(const State&) const override { return nullptr; }
  bool silent() const override { return true; }
  bool runs_on_abort() const override { return true; }
  void run(State&) override {}
  void cleanup(State& st) noexcept override {
    w_.comm.reset();
    if (w_.tree.empty()) return;
    std::error_code ec;
    fs::remove_all(w_.tree.parent_path(), ec);  // the build directory (make_tree_dir)
    if (ec) st.ui.warn(st.build.name, "could not remove the build tree " + w_.tree.string() + ": " + ec.message());
    w_.tree.clear();
  }

 private:
  Work& w_;
};

class RootfsBuilder : public Builder {
 public:
  void prepare(ConfigReader& cfg) override { w_.cfg = read_config(cfg); }

  StepList steps(StepList provision) override {
    StepList s;
    s.push_back(std::make_unique<TreeStep>(w_));
    s.push_back(std::make_unique<SourceStep>(w_));
    size_t index = 0;
    for (auto& p : provision) {
      if (p->is_error_cleanup_hook()) {
        s.push_back(std::move(p));
        continue;
      }
      s.push_back(std::make_unique<LayerStep>(w_, std::move(p), ++index));
    }
    s.push_back(std::make_unique<ImageStep>(w_));
    return s;
  }

 private:
  Work w_;
};

}  // namespace

}  // namespace imgbake::rootfs

IMGBAKE_REGISTER_BUILDER("rootfs", imgbake::rootfs::RootfsBuilder)
