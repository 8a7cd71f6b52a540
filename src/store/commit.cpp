// Store::commit: a build's files (or an OCI image's layers, already blobs) into blobs, then in one
// transaction the next version, the config and image manifest, the provenance envelope and its
// referrer manifest, the catalog rows, the audit entries and the template's channels.
#include "catalog.h"
#include "imgbake/util.h"

#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace imgbake::store {

namespace fs = std::filesystem;

using detail::append_audit;
using detail::channel_head;
using detail::find_image;
using detail::move_channel;
using detail::next_seq_and_number;
using detail::now_rfc3339;
using detail::Stmt;
using detail::StoreLock;
using detail::Transaction;
using detail::valid_name_part;
using detail::valid_version;

namespace {

// The config of a container image: the builder's runtime settings plus the labels, its
// layers' diff_ids and history. Keys keep a fixed order so the bytes are reproducible.
nlohmann::ordered_json oci_config(const OciImage& img, const std::map<std::string, std::string>& labels) {
  nlohmann::ordered_json runtime = img.config;
  if (!labels.empty()) {
    nlohmann::ordered_json l = runtime.contains("Labels") ? runtime["Labels"] : nlohmann::ordered_json::object();
    for (const auto& [k, v] : labels) l[k] = v;
    runtime["Labels"] = l;
  }
  nlohmann::ordered_json diff_ids = nlohmann::ordered_json::array();
  for (const auto& l : img.layers) diff_ids.push_back(l.diff_id);
  nlohmann::ordered_json c = nlohmann::ordered_json::object();
  if (!img.created.empty()) c["created"] = img.created;
  c["architecture"] = "amd64";
  c["os"] = "linux";
  c["config"] = runtime;
  c["rootfs"] = {{"type", "layers"}, {"diff_ids", diff_ids}};
  if (!img.history.empty()) c["history"] = img.history;
  return c;
}

std::string layer_media_type(const std::string& path) {
  std::string ext = fs::path(path).extension().string();
  if (ext == ".qcow2") return oci::kDiskQcow2MediaType;
  if (ext == ".raw" || ext == ".img") return oci::kDiskRawMediaType;
  return oci::kFileLayerMediaType;
}

}  // namespace

ImageRecord Store::commit(const CommitRequest& req) {
  if (!valid_name_part(req.name)) throw StoreError("invalid image name '" + req.name + "'");
  if (req.version && !valid_version(*req.version))
    throw StoreError("invalid version '" + *req.version + "' (no ':', '@', '/' or spaces)");
  StoreLock lock(home_, false);

  // The large part first, outside the catalog's lock: content-addressed blobs are
  // the same whatever version they end up in.
  std::vector<Descriptor> layers;
  std::vector<detail::LayerClaim> claims;
  if (req.oci)
    for (const auto& l : req.oci->layers) {
      if (!blobs_.exists(l.blob.digest)) throw StoreError("layer " + l.blob.digest + " is not in the store");
      layers.push_back(l.blob);
      claims.emplace_back(l.blob, l.diff_id);
    }
  const std::vector<detail::CheckedDiffId> checked =
      detail::check_diff_ids(db_->db, blobs_, claims, "cannot commit " + req.name);
  for (const auto& f : req.oci ? std::vector<ArtifactFile>{} : req.files) {
    Descriptor d = blobs_.put_file(f.path, f.media_type.empty() ? layer_media_type(f.path) : f.media_type);
    if (!f.sha256.empty() && d.digest != "sha256:" + f.sha256)
      throw StoreError("artifact " + f.path + " changed while it was being stored");
    d.annotations["org.opencontainers.image.title"] = fs::path(f.path).filename().string();
    layers.push_back(d);
  }

  sqlite3* db = db_->db;
  ImageRecord rec;
  {
    Transaction tx(db);
    detail::record_diff_ids(db, checked);
    auto [seq, next_number] = next_seq_and_number(db, req.name);
    std::string version = req.version.value_or(std::to_string(next_number));
    if (find_image(db, "name = ? AND version = ?", {req.name, version}))
      throw StoreError("image " + req.name + ":" + version + " already exists; versions are immutable");
    {
      Stmt c(db, "SELECT 1 FROM channels WHERE name = ? AND channel = ?");
      c.bind(1, req.name).bind(2, version);
      if (c.step()) throw StoreError("version '" + version + "' is the name of a channel of " + req.name);
    }

    std::string created = now_rfc3339();
    if (req.embed_build_info && !req.oci) {
      // The image's pedigree travels with it: a small file inside the image itself.
      nlohmann::ordered_json info = {{"image", req.name},
                                     {"version", version},
                                     {"template_digest", req.template_digest},
                                     {"git_commit", req.git_commit},
                                     {"build_time", created},
                                     {"parent", req.parent}};
      Descriptor d = blobs_.put_bytes(info.dump(2) + "\n", oci::kBuildInfoMediaType);
      d.annotations["org.opencontainers.image.title"] = "build-info.json";
      layers.push_back(d);
    }
    nlohmann::ordered_json diff_ids = nlohmann::ordered_json::array();
    for (const auto& l : layers) diff_ids.push_back(l.digest);
    nlohmann::ordered_json labels = req.labels;
    labels["org.opencontainers.image.version"] = version;
    nlohmann::ordered_json config = {{"created", created},
                                     {"architecture", "amd64"},
                                     {"os", "linux"},
                                     {"config", {{"Labels", labels}}},
                                     {"rootfs", {{"type", "layers"}, {"diff_ids", diff_ids}}}};
    if (req.oci) config = oci_config(*req.oci, req.labels);
    Descriptor cfg = blobs_.put_bytes(config.dump(), oci::kConfigMediaType);
    nlohmann::ordered_json layer_json = nlohmann::ordered_json::array();
    for (const auto& l : layers) layer_json.push_back(l.to_json());
    nlohmann::ordered_json manifest = {{"schemaVersion", 2},
                                       {"mediaType", oci::kManifestMediaType},
                                       {"artifactType", oci::kImageArtifactType},
                                       {"config", cfg.to_json()},
                                       {"layers", layer_json},
                                       {"annotations",
                                        {{"org.opencontainers.image.created", created},
                                         {"org.opencontainers.image.version", version},
                                         {"io.imgbake.image.name", req.name},
                                         {"io.imgbake.builder", req.builder_type}}}};
    if (req.oci) {
      // A plain container image that podman/umoci run; only its content decides its digest
      // (the version lives in the catalog and in registry tags).
      manifest.erase("artifactType");
      manifest["annotations"] = {{"org.opencontainers.image.created", req.oci->created},
                                 {"io.imgbake.builder", req.builder_type}};
      if (req.oci->created.empty()) manifest["annotations"].erase("org.opencontainers.image.created");
    }
    Descriptor man = blobs_.put_bytes(manifest.dump(), oci::kManifestMediaType);

    Descriptor envelope, referrer;
    if (req.make_provenance) {
      nlohmann::json env = req.make_provenance(version, man.digest, layers);
      envelope = blobs_.put_bytes(env.dump(), oci::kDsseMediaType);
      Descriptor empty = blobs_.put_bytes("{}", oci::kEmptyMediaType);
      nlohmann::ordered_json empty_json = empty.to_json();
      empty_json["data"] = "e30=";
      nlohmann::ordered_json ref_manifest = {{"schemaVersion", 2},
                                             {"mediaType", oci::kManifestMediaType},
                                             {"artifactType", oci::kProvenanceArtifactType},
                                             {"config", empty_json},
                                             {"layers", nlohmann::ordered_json::array({envelope.to_json()})},
                                             {"subject", man.to_json()},
                                             {"annotations", {{"org.opencontainers.image.created", created}}}};
      referrer = blobs_.put_bytes(ref_manifest.dump(), oci::kManifestMediaType);
    }

    if (req.oci && !req.version) {
      // The same content built again (a cache hit on every step) is the same image.
      if (auto same = find_image(db, "name = ? AND manifest_digest = ? AND revoked = 0", {req.name, man.digest})) {
        tx.commit();
        rec = *same;
        rec.unchanged = true;
        return rec;
      }
    }
    Stmt ins(db,
             "INSERT INTO images(name, version, seq, manifest_digest, manifest_size, created, builder_type, "
             "template_digest, git_commit, parent, provenance_digest, referrer_digest, referrer_size) "
             "VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?)");
    ins.bind(1, req.name).bind(2, version).bind(3, seq).bind(4, man.digest).bind(5, static_cast<int64_t>(man.size));
    ins.bind(6, created).bind(7, req.builder_type).bind(8, req.template_digest).bind(9, req.git_commit);
    ins.bind(10, req.parent).bind(11, envelope.digest).bind(12, referrer.digest);
    ins.bind(13, static_cast<int64_t>(referrer.size));
    ins.run();
    int64_t id = sqlite3_last_insert_rowid(db);
    for (const auto& [k, v] : req.labels) {
      Stmt l(db, "INSERT INTO labels(image_id, key, value) VALUES(?,?,?)");
      l.bind(1, id).bind(2, k).bind(3, v);
      l.run();
    }
    nlohmann::json detail = {
        {"manifest", man.digest}, {"provenance", envelope.digest}, {"parent", req.parent}, {"labels", req.labels}};
    append_audit(tx, AuditEntry{0, "", who(), "commit", req.name, "", "", req.name + ":" + version, "", detail.dump(),
                                "", "", ""});
    std::vector<std::string> held;
    for (const auto& channel : req.channels) {
      // A new image has no test result yet: a channel that demands one is left where it is
      // (imgbake test, then promote; or build --test, which promotes it once the tests pass).
      if (!required_tests(req.name, channel).empty()) {
        held.push_back(channel);
        continue;
      }
      std::string from;
      bool is_protected = false;
      if (auto head = channel_head(db, req.name, channel)) {
        from = req.name + ":" + head->version;
        is_protected = head->is_protected;
        if (head->is_protected && !req.signature_trusted)
          throw StoreError("refusing to put " + req.name + ":" + version + " into protected channel '" + channel +
                           "': it is signed by a key the store does not trust");
      }
      move_channel(db, req.name, channel, id, /*protect=*/false);  // a protected channel stays protected
      append_audit(
          tx, AuditEntry{0, "", who(), "promote", req.name, channel, from, req.name + ":" + version,
                         "assigned by the template at build time",
                         nlohmann::json{{"manifest", man.digest}, {"protected", is_protected}}.dump(), "", "", ""});
    }
    tx.commit();
    rec = *find_image(db, "id = ?", {std::to_string(id)});
    rec.held_channels = std::move(held);
  }
  sync_index();
  return rec;
}

}  // namespace imgbake::store
