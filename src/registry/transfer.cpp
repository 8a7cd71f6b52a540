#include "registry/transfer.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "imgbake/error.h"
#include "imgbake/util.h"

namespace fs = std::filesystem;

namespace imgbake::registry {
namespace {

constexpr const char* kIndexMediaType = "application/vnd.oci.image.index.v1+json";

std::string short_digest(const std::string& d) { return d.substr(0, std::min<size_t>(d.size(), 19)); }

std::string mib(uint64_t n) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(n) / (1 << 20));
  return buf;
}

// The blobs a manifest names: its config and its layers.
std::vector<store::Descriptor> blobs_of(const nlohmann::json& manifest) {
  std::vector<store::Descriptor> out;
  auto desc = [](const nlohmann::json& j) {
    store::Descriptor d;
    d.media_type = j.value("mediaType", "");
    d.digest = j.value("digest", "");
    d.size = j.value("size", uint64_t{0});
    return d;
  };
  if (manifest.contains("config")) out.push_back(desc(manifest["config"]));
  for (const auto& l : manifest.value("layers", nlohmann::json::array())) out.push_back(desc(l));
  return out;
}

void count(TransferReport& rep, const BlobPushResult& r) {
  if (r.existed)
    ++rep.blobs_skipped;
  else if (r.mounted)
    ++rep.blobs_mounted;
  else
    ++rep.blobs_sent;
  rep.blob_bytes += r.bytes_sent;
}

void push_local_blobs(store::Store& st, Client& client, const std::string& repo, const nlohmann::json& manifest,
                      TransferReport& rep, const TransferLog& log, const CancelToken& cancel) {
  for (const auto& b : blobs_of(manifest)) {
    BlobPushResult r =
        client.push_blob(repo, b.digest, b.size, st.blobs().path(b.digest), "", TransferProgress(), cancel);
    count(rep, r);
    if (log)
      log(short_digest(b.digest) + " " + mib(b.size) +
          (r.existed   ? ": already there"
           : r.resumed ? ": pushed (resumed)"
                       : ": pushed"));
  }
}

// Adds `referrer` to the index at the referrers tag schema tag of `subject`.
void update_referrers_index(Client& client, const std::string& repo, const std::string& subject,
                            const nlohmann::json& referrer) {
  std::string tag = referrers_tag(subject);
  nlohmann::ordered_json index = {
      {"schemaVersion", 2}, {"mediaType", kIndexMediaType}, {"manifests", nlohmann::ordered_json::array()}};
  if (auto existing = client.get_manifest(repo, tag)) {
    try {
      index = nlohmann::ordered_json::parse(existing->bytes);
    } catch (const std::exception&) {
    }
  }
  for (const auto& m : index["manifests"])
    if (m.value("digest", "") == referrer.value("digest", "")) return;
  index["manifests"].push_back(nlohmann::ordered_json::parse(referrer.dump()));
  client.put_manifest(repo, tag, kIndexMediaType, index.dump());
}

nlohmann::json referrer_descriptor(const std::string& bytes, const std::string& digest) {
  nlohmann::json m = nlohmann::json::parse(bytes);
  return {{"mediaType", store::kManifestMediaType},
          {"digest", digest},
          {"size", bytes.size()},
          {"artifactType", m.value("artifactType", "")}};
}

}  // namespace

std::string referrers_tag(const std::string& digest) {
  std::string tag = digest;
  std::replace(tag.begin(), tag.end(), ':', '-');
  return tag.substr(0, 128);
}

TransferReport push_image(store::Store& st, const store::ImageRecord& img, Client& client, const Reference& dest,
                          const std::vector<std::string>& extra_tags, const TransferLog& log,
                          const CancelToken& cancel) {
  TransferReport rep;
  const std::string& repo = dest.repository;
  std::string bytes = st.blobs().read(img.manifest_digest);
  nlohmann::json manifest = nlohmann::json::parse(bytes);
  push_local_blobs(st, client, repo, manifest, rep, log, cancel);
  rep.manifest_digest = client.put_manifest(repo, img.manifest_digest, store::kManifestMediaType, bytes);
  if (rep.manifest_digest != img.manifest_digest)
    throw BuildError("the registry stored the manifest as " + rep.manifest_digest + ", not " + img.manifest_digest);
  std::vector<std::string> tags = {dest.tag.empty() ? img.version : dest.tag};
  for (const auto& t : extra_tags)
    if (std::find(tags.begin(), tags.end(), t) == tags.end()) tags.push_back(t);
  for (const auto& t : tags) client.put_manifest(repo, t, store::kManifestMediaType, bytes);
  rep.tags = tags;

  if (!img.referrer_digest.empty()) {
    std::string ref_bytes = st.blobs().read(img.referrer_digest);
    push_local_blobs(st, client, repo, nlohmann::json::parse(ref_bytes), rep, log, cancel);
    client.put_manifest(repo, img.referrer_digest, store::kManifestMediaType, ref_bytes);
    rep.referrer_digest = img.referrer_digest;
    if (!client.has_referrers_api(repo)) {
      update_referrers_index(client, repo, img.manifest_digest, referrer_descriptor(ref_bytes, img.referrer_digest));
      rep.referrers_tag_schema = true;
    }
    if (log) log("provenance " + short_digest(img.referrer_digest) + " pushed as a referrer of the image");
  }
  return rep;
}

TransferReport pull_image(store::Store& st, Client& client, const Reference& src, const std::string& name,
                          const std::string& version, const TransferLog& log, const CancelToken& cancel) {
  TransferReport rep;
  const std::string& repo = src.repository;
  std::string reference = src.digest.empty() ? (src.tag.empty() ? "latest" : src.tag) : src.digest;
  auto manifest = client.get_manifest(repo, reference);
  if (!manifest) throw BuildError(src.str() + ": no such image in the registry");
  if (!src.digest.empty() && manifest->digest != src.digest)
    throw BuildError(src.str() + ": the registry served a manifest with digest " + manifest->digest);
  if (manifest->media_type != store::kManifestMediaType &&
      manifest->media_type != "application/vnd.docker.distribution.manifest.v2+json")
    throw BuildError(src.str() + ": " + manifest->media_type +
                     " is not an image manifest (indexes are not pulled yet)");
  rep.manifest_digest = manifest->digest;

  auto fetch_blobs = [&](const nlohmann::json& m) {
    for (const auto& b : blobs_of(m)) {
      if (st.blobs().exists(b.digest)) {
        ++rep.blobs_skipped;
        continue;
      }
      store::BlobWriter writer(st.blobs());
      client.get_blob(
          repo, b.digest, b.size, [&](const char* data, size_t n) { writer.write(data, n); }, TransferProgress(),
          cancel);
      writer.commit(b.digest, b.size, b.media_type);
      ++rep.blobs_sent;
      rep.blob_bytes += b.size;
      if (log) log(short_digest(b.digest) + " " + mib(b.size) + ": pulled");
    }
  };
  nlohmann::json m = nlohmann::json::parse(manifest->bytes);
  fetch_blobs(m);

  store::ImportRequest req;
  req.manifest_bytes = manifest->bytes;
  req.source = src.registry + "/" + repo + "@" + manifest->digest;
  for (const auto& d : client.referrers(repo, manifest->digest, store::kProvenanceArtifactType)) {
    auto ref = client.get_manifest(repo, d.digest);
    if (!ref) continue;
    fetch_blobs(nlohmann::json::parse(ref->bytes));
    req.referrer_manifest_bytes = ref->bytes;
    rep.referrer_digest = ref->digest;
    break;
  }
  std::string local_name = name;
  if (local_name.empty()) {
    local_name = m.value("annotations", nlohmann::json::object()).value("io.imgbake.image.name", "");
    if (local_name.empty()) local_name = fs::path(repo).filename().string();
  }
  req.name = local_name;
  if (!version.empty()) req.version = version;
  store::ImageRecord rec = st.import_image(req);
  rep.local_ref = rec.ref();
  return rep;
}

TransferReport copy_image(Client& from, const Reference& src, Client& to, const Reference& dest,
                          const std::string& staging_dir, const TransferLog& log, const CancelToken& cancel) {
  TransferReport rep;
  std::string reference = src.digest.empty() ? (src.tag.empty() ? "latest" : src.tag) : src.digest;
  auto manifest = from.get_manifest(src.repository, reference);
  if (!manifest) throw BuildError(src.str() + ": no such image in the registry");
  if (!src.digest.empty() && manifest->digest != src.digest)
    throw BuildError(src.str() + ": the registry served a manifest with digest " + manifest->digest);
  bool same_registry = from.registry() == to.registry();

  auto copy_blobs = [&](const nlohmann::json& m) {
    for (const auto& b : blobs_of(m)) {
      if (to.has_blob(dest.repository, b.digest)) {
        ++rep.blobs_skipped;
        continue;
      }
      // Staged in a temp file, then pushed (mounted instead when both are on one registry).
      // TODO(issue 6): try the mount before downloading, and stream registry to registry.
      fs::path tmp = fs::path(staging_dir) / ("imgbake-copy-" + b.digest.substr(7, 16));
      register_temp_path(tmp.string());
      {
        std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
        from.get_blob(
            src.repository, b.digest, b.size,
            [&](const char* data, size_t n) { out.write(data, static_cast<std::streamsize>(n)); }, TransferProgress(),
            cancel);
        if (!out) throw BuildError("cannot write " + tmp.string());
      }
      BlobPushResult r;
      try {
        r = to.push_blob(dest.repository, b.digest, b.size, tmp, same_registry ? src.repository : "",
                         TransferProgress(), cancel);
      } catch (...) {
        std::error_code ec;
        fs::remove(tmp, ec);
        unregister_temp_path(tmp.string());
        throw;
      }
      std::error_code ec;
      fs::remove(tmp, ec);
      unregister_temp_path(tmp.string());
      count(rep, r);
      if (log) log(short_digest(b.digest) + " " + mib(b.size) + (r.mounted ? ": mounted" : ": copied"));
    }
  };
  copy_blobs(nlohmann::json::parse(manifest->bytes));
  rep.manifest_digest = to.put_manifest(dest.repository, manifest->digest, manifest->media_type, manifest->bytes);
  if (rep.manifest_digest != manifest->digest)
    throw BuildError("the destination stored the manifest as " + rep.manifest_digest + ", not " + manifest->digest +
                     ": the copy would change the digest");
  if (!dest.tag.empty()) {
    to.put_manifest(dest.repository, dest.tag, manifest->media_type, manifest->bytes);
    rep.tags.push_back(dest.tag);
  }
  for (const auto& d : from.referrers(src.repository, manifest->digest)) {
    auto ref = from.get_manifest(src.repository, d.digest);
    if (!ref) continue;
    copy_blobs(nlohmann::json::parse(ref->bytes));
    to.put_manifest(dest.repository, ref->digest, ref->media_type, ref->bytes);
    if (!to.has_referrers_api(dest.repository)) {
      update_referrers_index(to, dest.repository, manifest->digest, referrer_descriptor(ref->bytes, ref->digest));
      rep.referrers_tag_schema = true;
    }
    rep.referrer_digest = ref->digest;
  }
  return rep;
}

}  // namespace imgbake::registry
