// The referrers of an image manifest: putting a referrer manifest and, on a registry without the
// referrers API, the referrers tag schema index of its subject.
#include "referrers.h"

#include <algorithm>
#include <exception>
#include <optional>

#include <nlohmann/json.hpp>

#include "imgbake/error.h"

namespace imgbake::registry::detail {
namespace {

// Adds `referrer` to the index at the referrers tag schema tag of `subject`.
void update_referrers_index(Client& client, const std::string& repo, const std::string& subject,
                            const nlohmann::json& referrer) {
  std::string tag = referrers_tag(subject);
  std::optional<std::string> existing;
  if (auto m = client.get_manifest(repo, tag)) existing = m->bytes;
  const std::string where =
      "the referrers index " + client.registry() + "/" + repo + ":" + tag + " (of " + subject + ")";
  if (auto index = add_to_referrers_index(existing, referrer, where))
    client.put_manifest(repo, tag, oci::kIndexMediaType, *index);
}

nlohmann::json referrer_descriptor(const std::string& bytes, const std::string& digest) {
  nlohmann::json m = nlohmann::json::parse(bytes);
  return {{"mediaType", oci::kManifestMediaType},
          {"digest", digest},
          {"size", bytes.size()},
          {"artifactType", m.value("artifactType", "")}};
}

}  // namespace

std::optional<std::string> add_to_referrers_index(const std::optional<std::string>& existing,
                                                  const nlohmann::json& referrer, const std::string& where) {
  nlohmann::ordered_json index = {
      {"schemaVersion", 2}, {"mediaType", oci::kIndexMediaType}, {"manifests", nlohmann::ordered_json::array()}};
  // Whatever is there is replaced by what we PUT: an index we cannot read would lose its referrers.
  const std::string refuse =
      "; refusing to replace it, which would lose the referrers it lists (repair or delete "
      "that tag, then push again)";
  if (existing) {
    try {
      index = nlohmann::ordered_json::parse(*existing);
    } catch (const std::exception& e) {
      throw BuildError(where + " is not JSON: " + e.what() + refuse);
    }
    if (!index.is_object() || !index.contains("manifests") || !index["manifests"].is_array())
      throw BuildError(where + " is not an image index (it has no \"manifests\" list)" + refuse);
  }
  const std::string digest = referrer.value("digest", "");
  for (const auto& m : index["manifests"])
    if (m.is_object() && m.contains("digest") && m["digest"] == digest) return std::nullopt;
  index["manifests"].push_back(nlohmann::ordered_json::parse(referrer.dump()));
  return index.dump();
}

bool put_referrer(Client& client, const std::string& repo, const std::string& subject,
                  const std::string& referrer_bytes, const std::string& referrer_digest) {
  std::string stored = client.put_manifest(repo, referrer_digest, oci::kManifestMediaType, referrer_bytes);
  if (stored != referrer_digest)
    throw BuildError("the registry stored the referrer as " + stored + ", not " + referrer_digest);
  if (client.has_referrers_api(repo)) return false;
  update_referrers_index(client, repo, subject, referrer_descriptor(referrer_bytes, referrer_digest));
  return true;
}

std::string referrers_tag(const std::string& digest) {
  std::string tag = digest;
  std::replace(tag.begin(), tag.end(), ':', '-');
  return tag.substr(0, 128);
}

}  // namespace imgbake::registry::detail
