// The build cache shared through a registry: entries as signed OCI artifacts tagged by step key.
#include "imgbake/build_cache.h"

#include <regex>

#include "imgbake/error.h"
#include "imgbake/oci.h"
#include "imgbake/util.h"

namespace imgbake::registry {

namespace {

// What a cache entry's blobs may be: a rootfs layer, a qemu disk level (qcow2), a qemu output disk
// (qcow2 or raw) and a qemu VM state (builders/qemu/step_cache.cpp names the qemu ones).
const std::set<std::string> kBlobMediaTypes = {"application/vnd.oci.image.layer.v1.tar",
                                               "application/vnd.oci.image.layer.v1.tar+gzip",
                                               "application/vnd.oci.image.layer.v1.tar+zstd",
                                               "application/vnd.imgbake.qemu.disk.v1.qcow2",
                                               oci::kDiskQcow2MediaType,
                                               oci::kDiskRawMediaType};
constexpr const char* kStateMediaType = "application/vnd.imgbake.qemu.state.v1.gzip";
// The empty descriptor (OCI 1.1) stands in for the blobs of an entry that has none.
constexpr const char* kEmptyDigest = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";
constexpr uint64_t kMaxConfigSize = 1u << 20;

bool valid_digest(const std::string& d) {
  static const std::regex re("sha256:[0-9a-f]{64}");
  return std::regex_match(d, re);
}

nlohmann::ordered_json descriptor_json(const oci::Descriptor& d) {
  return {{"mediaType", d.media_type}, {"digest", d.digest}, {"size", d.size}};
}

oci::Descriptor descriptor_from(const nlohmann::json& j, const std::string& what) {
  if (!j.is_object() || !j.contains("mediaType") || !j["mediaType"].is_string() || !j.contains("digest") ||
      !j["digest"].is_string() || !j.contains("size") || !j["size"].is_number_unsigned())
    throw BuildError(what + " is not a descriptor (mediaType, digest, size)");
  oci::Descriptor d;
  d.media_type = j["mediaType"].get<std::string>();
  d.digest = j["digest"].get<std::string>();
  d.size = j["size"].get<uint64_t>();
  if (!valid_digest(d.digest)) throw BuildError(what + " has a malformed digest '" + d.digest + "'");
  return d;
}

bool same(const oci::Descriptor& a, const oci::Descriptor& b) {
  return a.media_type == b.media_type && a.digest == b.digest && a.size == b.size;
}

std::string text_of(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_string()) throw BuildError(std::string("the entry has no string '") + key + "'");
  return it->get<std::string>();
}

std::string repo_name(const CacheRepository& r) { return r.ref.registry + "/" + r.ref.repository; }

std::vector<oci::Descriptor> blobs_of(const store::CacheEntry& e) {
  std::vector<oci::Descriptor> out;
  if (!e.empty) out.push_back(e.blob);
  if (!e.state.digest.empty()) out.push_back(e.state);
  return out;
}

}  // namespace

std::string cache_tag(const std::string& key) { return "cache-" + key; }

CacheArtifact make_cache_artifact(const store::CacheEntry& e, const provenance::SigningKey& key) {
  nlohmann::ordered_json payload = {{"key", e.key},         {"material", e.material},     {"empty", e.empty},
                                    {"diff_id", e.diff_id}, {"created_by", e.created_by}, {"created", e.created}};
  if (!e.empty) payload["blob"] = descriptor_json(e.blob);
  if (!e.state.digest.empty()) payload["state"] = descriptor_json(e.state);
  CacheArtifact a;
  a.config = provenance::sign_envelope(key, kCacheEntryPayloadType, payload.dump()).dump();
  a.config_descriptor = {kCacheEntryMediaType, "sha256:" + util::sha256_hex(a.config), a.config.size(), {}};
  a.layers = blobs_of(e);
  if (a.layers.empty()) a.layers.push_back({oci::kEmptyMediaType, kEmptyDigest, 2, {}});
  nlohmann::ordered_json layers = nlohmann::ordered_json::array();
  for (const auto& l : a.layers) layers.push_back(descriptor_json(l));
  nlohmann::ordered_json m = {{"schemaVersion", 2},
                              {"mediaType", oci::kManifestMediaType},
                              {"artifactType", kCacheArtifactType},
                              {"config", descriptor_json(a.config_descriptor)},
                              {"layers", layers},
                              {"annotations", {{"io.imgbake.cache.key", e.key}}}};
  a.manifest = m.dump();
  return a;
}

store::CacheEntry read_cache_artifact(const std::string& key, const std::string& manifest, const std::string& config,
                                      const std::vector<provenance::VerifyingKey>& keys) {
  nlohmann::json m = nlohmann::json::parse(manifest, nullptr, false);
  if (!m.is_object()) throw BuildError("the manifest is not JSON");
  if (m.value("artifactType", "") != kCacheArtifactType || !m.contains("config") || !m.contains("layers") ||
      !m["layers"].is_array())
    throw BuildError("the manifest is not an imgbake cache entry (artifactType " + std::string(kCacheArtifactType) +
                     ")");
  oci::Descriptor cd = descriptor_from(m["config"], "the manifest's config");
  if (cd.media_type != kCacheEntryMediaType || cd.size != config.size() ||
      cd.digest != "sha256:" + util::sha256_hex(config))
    throw BuildError("the manifest's config is not the entry's signed envelope");

  nlohmann::json envelope = nlohmann::json::parse(config, nullptr, false);
  provenance::EnvelopeCheck check = provenance::verify_envelope(envelope, keys);
  if (!check.ok) throw BuildError("its signature is not from a trusted key: " + check.error);
  if (check.payload_type != kCacheEntryPayloadType)
    throw BuildError("its envelope holds '" + check.payload_type + "', not a cache entry");
  nlohmann::json p = nlohmann::json::parse(check.payload, nullptr, false);
  if (!p.is_object()) throw BuildError("the signed entry is not a JSON object");

  store::CacheEntry e;
  e.key = text_of(p, "key");
  e.material = text_of(p, "material");
  if (e.key != key) throw BuildError("it is the entry of key " + e.key.substr(0, 12) + ", not " + key.substr(0, 12));
  if (util::sha256_hex(e.material) != key) throw BuildError("its key material does not hash to its key");
  if (!p.contains("empty") || !p["empty"].is_boolean()) throw BuildError("the entry has no boolean 'empty'");
  e.empty = p["empty"].get<bool>();
  e.diff_id = text_of(p, "diff_id");
  e.created_by = text_of(p, "created_by");
  e.created = text_of(p, "created");
  if (e.empty == p.contains("blob")) throw BuildError("'blob' must be there exactly when the entry is not empty");
  if (!e.empty) {
    e.blob = descriptor_from(p["blob"], "the entry's blob");
    if (!kBlobMediaTypes.count(e.blob.media_type))
      throw BuildError("its blob has media type '" + e.blob.media_type + "', which no cache entry has");
  }
  if (p.contains("state")) {
    e.state = descriptor_from(p["state"], "the entry's VM state");
    if (e.state.media_type != kStateMediaType || e.empty)
      throw BuildError("its VM state has media type '" + e.state.media_type + "' or belongs to no disk level");
  }
  if (!e.diff_id.empty() && !valid_digest(e.diff_id)) throw BuildError("its diff_id is malformed");

  std::vector<oci::Descriptor> want = blobs_of(e);
  const auto& layers = m["layers"];
  if (want.empty()) {
    if (layers.size() != 1 || descriptor_from(layers[0], "the manifest's layer").digest != kEmptyDigest)
      throw BuildError("the manifest lists blobs for an entry that has none");
  } else {
    if (layers.size() != want.size()) throw BuildError("the manifest's layers are not the entry's blobs");
    for (size_t i = 0; i < want.size(); ++i)
      if (!same(descriptor_from(layers[i], "the manifest's layer"), want[i]))
        throw BuildError("the manifest's layers are not the entry's blobs");
  }
  return e;
}

RegistryCache::RegistryCache(std::vector<CacheRepository> from, std::optional<CacheRepository> to,
                             std::vector<provenance::VerifyingKey> keys, Log say, Log warn, const CancelToken& cancel)
    : from_(std::move(from)),
      to_(std::move(to)),
      keys_(std::move(keys)),
      say_(std::move(say)),
      warn_(std::move(warn)),
      cancel_(cancel) {}

RegistryCache::~RegistryCache() = default;

std::optional<store::CacheEntry> RegistryCache::fetch(store::Store& store, const std::string& key,
                                                      const std::string& slot) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& repo : from_) {
    if (unreachable_.count(repo_name(repo))) continue;
    std::optional<store::CacheEntry> e = fetch_from(repo, store, key);
    if (!e) continue;
    store.cache_put(*e, slot);
    ++fetched_;
    return e;
  }
  return std::nullopt;
}

std::optional<store::CacheEntry> RegistryCache::fetch_from(CacheRepository& repo, store::Store& store,
                                                           const std::string& key) {
  const std::string where = repo_name(repo);
  std::optional<Manifest> m;
  try {
    m = repo.client->get_manifest(repo.ref.repository, cache_tag(key));
  } catch (const Cancelled&) {
    throw;
  } catch (const std::exception& ex) {
    // An unreachable cache slows nothing down twice: the build goes on without it.
    unreachable_.insert(where);
    warn_("cache: " + where + " cannot be read (" + ex.what() + "); building without it");
    return std::nullopt;
  }
  if (!m) return std::nullopt;
  try {
    nlohmann::json mj = nlohmann::json::parse(m->bytes, nullptr, false);
    if (!mj.is_object() || !mj.contains("config")) throw BuildError("the manifest is not JSON with a config");
    oci::Descriptor cd = descriptor_from(mj["config"], "the manifest's config");
    if (cd.size > kMaxConfigSize) throw BuildError("its config is " + util::format_bytes(cd.size));
    std::string config;
    repo.client->get_blob(
        repo.ref.repository, cd.digest, cd.size, [&](const char* p, size_t n) { config.append(p, n); }, {}, cancel_);
    store::CacheEntry e = read_cache_artifact(key, m->bytes, config, keys_);
    size_t blobs = 0;
    uint64_t bytes = 0;
    for (const auto& d : blobs_of(e)) {
      if (store.blobs().exists(d.digest)) continue;
      store::BlobWriter w(store.blobs());
      repo.client->get_blob(
          repo.ref.repository, d.digest, d.size, [&](const char* p, size_t n) { w.write(p, n); }, {}, cancel_);
      w.commit(d.digest, d.size, d.media_type);
      ++blobs;
      bytes += d.size;
    }
    say_("cache: step " + key.substr(0, 12) + " from " + where + " (" + std::to_string(blobs) + " blob" +
         (blobs == 1 ? "" : "s") + ", " + util::format_bytes(bytes) + " downloaded)");
    return e;
  } catch (const Cancelled&) {
    throw;
  } catch (const std::exception& ex) {
    warn_("cache: the entry for step " + key.substr(0, 12) + " in " + where + " is not used: " + ex.what());
    return std::nullopt;
  }
}

void RegistryCache::note(const store::CacheEntry& entry) {
  if (!to_) return;
  std::lock_guard<std::mutex> lock(mu_);
  if (noted_.emplace(entry.key, entry).second) order_.push_back(entry.key);
}

CacheExportReport RegistryCache::export_noted(store::Store& store, const provenance::SigningKey& key) {
  CacheExportReport r;
  if (!to_) return r;
  std::lock_guard<std::mutex> lock(mu_);
  Client& c = *to_->client;
  const std::string& repo = to_->ref.repository;
  for (size_t i = 0; i < order_.size(); ++i) {
    const store::CacheEntry& e = noted_.at(order_[i]);
    try {
      CacheArtifact a = make_cache_artifact(e, key);
      std::optional<Manifest> there = c.get_manifest(repo, cache_tag(e.key));
      if (there && there->digest == "sha256:" + util::sha256_hex(a.manifest)) {
        ++r.entries_there;
        continue;
      }
      for (const auto& d : blobs_of(e)) {
        store.blobs().check_regular(d.digest);
        BlobPushResult p = c.push_blob(repo, d.digest, d.size, store.blobs().path(d.digest), "", {}, cancel_);
        if (!p.existed && !p.mounted) ++r.blobs_sent;
        r.bytes_sent += p.bytes_sent;
      }
      if (blobs_of(e).empty()) c.push_blob_bytes(repo, kEmptyDigest, "{}", cancel_);
      c.push_blob_bytes(repo, a.config_descriptor.digest, a.config, cancel_);
      c.put_manifest(repo, cache_tag(e.key), oci::kManifestMediaType, a.manifest);
      ++r.entries;
    } catch (const Cancelled&) {
      throw;
    } catch (const std::exception& ex) {
      // The first failure ends the export: an unreachable registry would fail every entry, each
      // after its retries.
      r.failures.push_back("step " + e.key.substr(0, 12) + ": " + ex.what());
      if (i + 1 < order_.size())
        r.failures.push_back(std::to_string(order_.size() - i - 1) + " more entries were not sent");
      break;
    }
  }
  return r;
}

}  // namespace imgbake::registry
