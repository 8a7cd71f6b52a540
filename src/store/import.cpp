// Pulled images: import_image catalogues an image whose blobs a pull wrote.
#include "catalog.h"
#include "manifest.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "imgbake/provenance.h"
#include "imgbake/util.h"

namespace imgbake::store {

namespace fs = std::filesystem;

using detail::append_audit;
using detail::find_image;
using detail::next_seq_and_number;
using detail::now_rfc3339;
using detail::parse_manifest;
using detail::ParsedManifest;
using detail::Stmt;
using detail::StoreLock;
using detail::string_field;
using detail::Transaction;
using detail::valid_name_part;
using detail::valid_version;

namespace {

constexpr uint64_t kMaxMetadataBlob = 4u << 20;  // configs and build-info.json are read whole

std::string annotation(const nlohmann::json& j, const std::string& key) {
  if (!j.contains("annotations") || !j["annotations"].is_object()) return "";
  const auto& a = j["annotations"];
  return a.contains(key) && a[key].is_string() ? a[key].get<std::string>() : "";
}

// Reads a small JSON blob (a config, build-info.json); a null json when it is not JSON.
nlohmann::json read_metadata(const BlobStore& blobs, const Descriptor& d) {
  if (d.size > kMaxMetadataBlob) return nullptr;
  try {
    return nlohmann::json::parse(blobs.read(d.digest));
  } catch (const std::exception&) {
    return nullptr;
  }
}

// The diff_ids the image's config gives its tar layers, checked against the layers.
std::vector<detail::CheckedDiffId> check_pulled_diff_ids(sqlite3* db, const BlobStore& blobs,
                                                         const ParsedManifest& image, const std::string& what) {
  if (std::none_of(image.layers.begin(), image.layers.end(),
                   [](const Descriptor& l) { return detail::is_tar_layer(l.media_type); }))
    return {};
  nlohmann::json config = read_metadata(blobs, image.config);
  const nlohmann::json* ids = nullptr;
  if (config.is_object() && config.contains("rootfs") && config["rootfs"].is_object() &&
      config["rootfs"].contains("diff_ids") && config["rootfs"]["diff_ids"].is_array())
    ids = &config["rootfs"]["diff_ids"];
  if (!ids || ids->size() != image.layers.size())
    throw StoreError(what + ": the image config (" + image.config.digest + ") lists " +
                     (ids ? std::to_string(ids->size()) : std::string("no")) + " rootfs.diff_ids for " +
                     std::to_string(image.layers.size()) + " layers");
  std::vector<detail::LayerClaim> claims;
  for (size_t i = 0; i < image.layers.size(); ++i)
    claims.emplace_back(image.layers[i], (*ids)[i].is_string() ? (*ids)[i].get<std::string>() : "");
  return detail::check_diff_ids(db, blobs, claims, what);
}

}  // namespace

ImageRecord Store::import_image(const ImportRequest& req) {
  if (!valid_name_part(req.name)) throw StoreError("invalid image name '" + req.name + "'");
  if (req.version && !valid_version(*req.version))
    throw StoreError("invalid version '" + *req.version + "' (no ':', '@', '/' or spaces)");
  const std::string what = "cannot import " + (req.source.empty() ? req.name : req.source);
  const ParsedManifest image = parse_manifest(req.manifest_bytes, what + ": the image manifest");
  const std::string manifest_digest = "sha256:" + util::sha256_hex(req.manifest_bytes);
  StoreLock lock(home_, false);  // gc must not take the blobs between this check and the catalog

  // Every blob must be here already. The content of each was checked against its digest
  // when it was written (BlobWriter, put_file name blobs by their hash), so the size is
  // checked here rather than reading a disk image a second time.
  std::vector<std::string> missing;
  auto need = [&](const Descriptor& d, const std::string& role) {
    std::error_code ec;
    fs::path p = blobs_.path(d.digest);
    if (!fs::exists(p, ec)) {
      missing.push_back("blob " + d.digest + " (" + role + ") is not in the store");
      return;
    }
    uint64_t size = fs::file_size(p, ec);
    if (ec || size != d.size)
      missing.push_back("blob " + d.digest + " (" + role + ") holds " + std::to_string(size) +
                        " bytes, the manifest says " + std::to_string(d.size));
  };
  need(image.config, "the config");
  for (size_t i = 0; i < image.layers.size(); ++i) {
    const auto& l = image.layers[i];
    auto title = l.annotations.find("org.opencontainers.image.title");
    need(l, "layer " + std::to_string(i + 1) + (title == l.annotations.end() ? "" : " '" + title->second + "'"));
  }

  Descriptor envelope, referrer;
  if (!req.referrer_manifest_bytes.empty()) {
    const ParsedManifest ref = parse_manifest(req.referrer_manifest_bytes, what + ": the provenance referrer");
    if (string_field(ref.json, "artifactType") != oci::kProvenanceArtifactType)
      throw StoreError(what + ": the provenance referrer's artifactType is '" + string_field(ref.json, "artifactType") +
                       "', not " + oci::kProvenanceArtifactType);
    std::string subject = ref.json.contains("subject") && ref.json["subject"].is_object()
                              ? string_field(ref.json["subject"], "digest")
                              : "";
    if (subject != manifest_digest)
      throw StoreError(what + ": the provenance referrer is about " + (subject.empty() ? "no subject" : subject) +
                       ", not about the image " + manifest_digest);
    // The empty config is usually inlined ("data"); a registry need not have served it.
    const auto& cfg = ref.json["config"];
    if (!blobs_.exists(ref.config.digest) && cfg.contains("data") && cfg["data"].is_string()) {
      Descriptor d = blobs_.put_bytes(provenance::base64_decode(cfg["data"].get<std::string>()), ref.config.media_type);
      if (d.digest != ref.config.digest) {
        blobs_.remove(d.digest);
        throw StoreError(what + ": the provenance referrer's inlined config does not hash to " + ref.config.digest);
      }
    }
    need(ref.config, "the provenance referrer's config");
    for (const auto& l : ref.layers) {
      need(l, "the provenance envelope");
      if (envelope.digest.empty() && l.media_type == oci::kDsseMediaType) envelope = l;
    }
    if (envelope.digest.empty())
      throw StoreError(what + ": the provenance referrer holds no " + oci::kDsseMediaType + " layer");
  }
  if (!missing.empty())
    throw StoreError(what + ": " + util::join(missing, "; ") + " (pull the image's blobs before importing it)");
  const std::vector<detail::CheckedDiffId> checked = check_pulled_diff_ids(db_->db, blobs_, image, what);
  if (!req.referrer_manifest_bytes.empty())
    referrer = blobs_.put_bytes(req.referrer_manifest_bytes, oci::kManifestMediaType);

  // What the image says about itself: the manifest's annotations, the config's labels and
  // build-info.json (an image imgbake built has all three; others may have none).
  const bool built_by_imgbake = string_field(image.json, "artifactType") == oci::kImageArtifactType ||
                                !annotation(image.json, "io.imgbake.image.name").empty();
  std::map<std::string, std::string> labels;
  std::string created = annotation(image.json, "org.opencontainers.image.created");
  nlohmann::json config = read_metadata(blobs_, image.config);
  if (config.is_object()) {
    if (config.contains("config") && config["config"].is_object() && config["config"].contains("Labels") &&
        config["config"]["Labels"].is_object())
      for (const auto& [k, v] : config["config"]["Labels"].items())
        if (v.is_string()) labels[k] = v.get<std::string>();
    if (created.empty()) created = string_field(config, "created");
  }
  nlohmann::json build_info;
  for (const auto& l : image.layers)
    if (l.media_type == oci::kBuildInfoMediaType) build_info = read_metadata(blobs_, l);
  std::string own_version = annotation(image.json, "org.opencontainers.image.version");
  if (own_version.empty() && labels.count("org.opencontainers.image.version"))
    own_version = labels["org.opencontainers.image.version"];
  if (own_version.empty()) own_version = string_field(build_info, "version");
  if (!valid_version(own_version)) own_version.clear();
  // The store writes the version into the config of the images it commits; it is not one
  // of the image's catalog labels there, so it is not one here either.
  if (built_by_imgbake) labels.erase("org.opencontainers.image.version");
  std::string git_commit = string_field(build_info, "git_commit");
  if (git_commit.empty() && labels.count("org.opencontainers.image.revision"))
    git_commit = labels["org.opencontainers.image.revision"];
  if (created.empty()) created = string_field(build_info, "build_time");
  if (created.empty()) created = now_rfc3339();

  Descriptor man = blobs_.put_bytes(req.manifest_bytes, oci::kManifestMediaType);
  sqlite3* db = db_->db;
  ImageRecord rec;
  {
    Transaction tx(db);
    detail::record_diff_ids(db, checked);
    std::optional<ImageRecord> existing =
        req.version ? find_image(db, "name = ? AND version = ?", {req.name, *req.version})
                    : find_image(db, "name = ? AND manifest_digest = ? ORDER BY seq LIMIT 1", {req.name, man.digest});
    if (existing && existing->manifest_digest == man.digest) return *existing;
    if (existing)
      throw StoreError("image " + existing->ref() + " already exists with manifest " + existing->manifest_digest +
                       ", not the pulled " + man.digest + "; versions are immutable: import it under another version");
    auto [seq, next_number] = next_seq_and_number(db, req.name);
    std::string version = req.version.value_or(own_version.empty() ? std::to_string(next_number) : own_version);
    if (auto clash = find_image(db, "name = ? AND version = ?", {req.name, version}))
      throw StoreError("image " + clash->ref() + " already exists with manifest " + clash->manifest_digest +
                       "; the pulled image " + man.digest + " says it is version " + version +
                       " too: import it under another version");
    {
      Stmt c(db, "SELECT 1 FROM channels WHERE name = ? AND channel = ?");
      c.bind(1, req.name).bind(2, version);
      if (c.step())
        throw StoreError("version '" + version + "' is the name of a channel of " + req.name +
                         ": import the image under another version");
    }
    const std::string parent = string_field(build_info, "parent");
    Stmt ins(db,
             "INSERT INTO images(name, version, seq, manifest_digest, manifest_size, created, builder_type, "
             "template_digest, git_commit, parent, provenance_digest, referrer_digest, referrer_size) "
             "VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?)");
    ins.bind(1, req.name).bind(2, version).bind(3, seq).bind(4, man.digest).bind(5, static_cast<int64_t>(man.size));
    ins.bind(6, created).bind(7, annotation(image.json, "io.imgbake.builder"));
    ins.bind(8, string_field(build_info, "template_digest")).bind(9, git_commit).bind(10, parent);
    ins.bind(11, envelope.digest).bind(12, referrer.digest).bind(13, static_cast<int64_t>(referrer.size));
    ins.run();
    int64_t id = sqlite3_last_insert_rowid(db);
    for (const auto& [k, v] : labels) {
      Stmt l(db, "INSERT INTO labels(image_id, key, value) VALUES(?,?,?)");
      l.bind(1, id).bind(2, k).bind(3, v);
      l.run();
    }
    nlohmann::json detail = {{"manifest", man.digest},
                             {"provenance", envelope.digest},
                             {"parent", parent},
                             {"source", req.source},
                             {"labels", labels}};
    if (!req.untrusted_signature.empty()) {
      detail["untrusted_signature"] = req.untrusted_signature;
      detail["allowed_by"] = "--allow-untrusted";
    }
    append_audit(tx, AuditEntry{0, "", who(), "pull", req.name, "", req.source, req.name + ":" + version, "",
                                detail.dump(), "", "", ""});
    tx.commit();
    rec = *find_image(db, "id = ?", {std::to_string(id)});
  }
  sync_index();
  return rec;
}

}  // namespace imgbake::store
