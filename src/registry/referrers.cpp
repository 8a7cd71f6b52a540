// The referrers of an image manifest: putting a referrer manifest and, on a registry without the
// referrers API, the referrers tag schema index of its subject.
#include "referrers.h"

#include <algorithm>
#include <exception>

#include <nlohmann/json.hpp>

#include "imgbake/error.h"

namespace imgbake::registry::detail {
namespace {

// Adds `referrer` to the index at the referrers tag schema tag of `subject`.
void update_referrers_index(Client& client, const std::string& repo, const std::string& subject,
                            const nlohmann::json& referrer) {
  std::string tag = referrers_tag(subject);
  nlohmann::ordered_json index = {
      {"schemaVersion", 2}, {"mediaType", oci::kIndexMediaType}, {"manifests", nlohmann::ordered_json::array()}};
  if (auto existing = client.get_manifest(repo, tag)) {
    try {
      index = nlohmann::ordered_json::parse(existing->bytes);
    } catch (const std::exception&) {
    }
  }
  for (const auto& m : index["manifests"])
    if (m.value("digest", "") == referrer.value("digest", "")) return;
  index["manifests"].push_back(nlohmann::ordered_json::parse(referrer.dump()));
  client.put_manifest(repo, tag, oci::kIndexMediaType, index.dump());
}

nlohmann::json referrer_descriptor(const std::string& bytes, const std::string& digest) {
  nlohmann::json m = nlohmann::json::parse(bytes);
  return {{"mediaType", oci::kManifestMediaType},
          {"digest", digest},
          {"size", bytes.size()},
          {"artifactType", m.value("artifactType", "")}};
}

}  // namespace

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
