// The referrers tag schema index (registry/referrers.h): a referrer is added to the index at its
// subject's tag, and an index that cannot be read is never replaced (that would lose the referrers
// it lists). The model without a registry, then put_referrer against a real docker-registry
// (distribution 2.8 has no referrers API, so it always uses the tag).
#include <gtest/gtest.h>
#include <unistd.h>

#include <memory>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "imgbake/cancel.h"
#include "imgbake/error.h"
#include "imgbake/oci_client.h"
#include "imgbake/util.h"
#include "registry/referrers.h"
#include "registry_fixture.h"

namespace {

using namespace imgbake;
using namespace imgbake::registry;
using registry_fixture::kRegistryBinary;
using registry_fixture::LocalRegistry;

std::string Sha256(const std::string& data) { return "sha256:" + util::sha256_hex(data); }

nlohmann::json Referrer(char c) {
  return {{"mediaType", oci::kManifestMediaType},
          {"digest", "sha256:" + std::string(64, c)},
          {"size", 10},
          {"artifactType", oci::kProvenanceArtifactType}};
}

const std::string kWhere = "the referrers index reg.test/app:sha256-aaa (of sha256:aaa)";

TEST(ReferrersIndex, ANewIndexListsTheReferrer) {
  auto index = detail::add_to_referrers_index(std::nullopt, Referrer('1'), kWhere);
  ASSERT_TRUE(index);
  auto j = nlohmann::json::parse(*index);
  EXPECT_EQ(j["mediaType"], oci::kIndexMediaType);
  ASSERT_EQ(j["manifests"].size(), 1u);
  EXPECT_EQ(j["manifests"][0]["digest"], Referrer('1')["digest"]);
}

TEST(ReferrersIndex, AnExistingIndexKeepsItsReferrersAndGainsTheNewOne) {
  std::string one = *detail::add_to_referrers_index(std::nullopt, Referrer('1'), kWhere);
  auto two = detail::add_to_referrers_index(one, Referrer('2'), kWhere);
  ASSERT_TRUE(two);
  auto j = nlohmann::json::parse(*two);
  ASSERT_EQ(j["manifests"].size(), 2u);
  EXPECT_EQ(j["manifests"][0]["digest"], Referrer('1')["digest"]);
  EXPECT_EQ(j["manifests"][1]["digest"], Referrer('2')["digest"]);
  EXPECT_FALSE(detail::add_to_referrers_index(*two, Referrer('2'), kWhere)) << "listed already: nothing to PUT";
}

TEST(ReferrersIndex, AnIndexThatIsNotJsonIsNotReplaced) {
  try {
    detail::add_to_referrers_index(std::string("{\"manifests\": [truncated"), Referrer('1'), kWhere);
    FAIL() << "an unparseable index was replaced by one that lists only the new referrer";
  } catch (const BuildError& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find(kWhere + " is not JSON: "), std::string::npos) << msg;
    EXPECT_NE(msg.find("parse error"), std::string::npos) << msg;  // the parser's own words
    EXPECT_NE(msg.find("refusing to replace it"), std::string::npos) << msg;
  }
}

TEST(ReferrersIndex, SomethingElseAtTheTagIsNotReplaced) {
  const std::string image = R"({"schemaVersion":2,"config":{},"layers":[]})";
  try {
    detail::add_to_referrers_index(image, Referrer('1'), kWhere);
    FAIL() << "an image manifest at the referrers tag was replaced";
  } catch (const BuildError& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find(kWhere + " is not an image index"), std::string::npos) << msg;
    EXPECT_NE(msg.find("refusing to replace it"), std::string::npos) << msg;
  }
}

// Against a registry: what another tool left at the referrers tag (here an image manifest) stays
// as it is, and put_referrer says which tag it could not update.
TEST(ReferrersIndex, PutReferrerLeavesAnUnreadableIndexAlone) {
  if (access(kRegistryBinary, X_OK) != 0) GTEST_SKIP() << kRegistryBinary << " is missing";
  LocalRegistry reg;
  if (!reg.ready()) GTEST_SKIP() << "docker-registry did not start: " << reg.log();
  ClientOptions o;
  o.plain_http = true;
  Client client(reg.host(), o, std::nullopt);
  CancelToken cancel;
  const std::string repo = "team/app";
  const std::string config = "{}", layer = "image layer";
  client.push_blob_bytes(repo, Sha256(config), config, cancel);
  client.push_blob_bytes(repo, Sha256(layer), layer, cancel);
  nlohmann::ordered_json image = {
      {"schemaVersion", 2},
      {"mediaType", oci::kManifestMediaType},
      {"config", {{"mediaType", oci::kConfigMediaType}, {"digest", Sha256(config)}, {"size", config.size()}}},
      {"layers", {{{"mediaType", "application/octet-stream"}, {"digest", Sha256(layer)}, {"size", layer.size()}}}}};
  const std::string subject = client.put_manifest(repo, "1", oci::kManifestMediaType, image.dump());
  const std::string tag = detail::referrers_tag(subject);
  // Something that is not an index at the subject's referrers tag.
  const std::string squatter = client.put_manifest(repo, tag, oci::kManifestMediaType, image.dump(1));

  nlohmann::ordered_json referrer = {
      {"schemaVersion", 2},
      {"mediaType", oci::kManifestMediaType},
      {"artifactType", oci::kProvenanceArtifactType},
      {"config", {{"mediaType", oci::kConfigMediaType}, {"digest", Sha256(config)}, {"size", config.size()}}},
      {"layers", {{{"mediaType", "application/octet-stream"}, {"digest", Sha256(layer)}, {"size", layer.size()}}}},
      {"subject", {{"mediaType", oci::kManifestMediaType}, {"digest", subject}, {"size", image.dump().size()}}}};
  const std::string bytes = referrer.dump();
  try {
    detail::put_referrer(client, repo, subject, bytes, Sha256(bytes));
    FAIL() << "put_referrer replaced what was at " << tag;
  } catch (const BuildError& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("the referrers index " + reg.host() + "/" + repo + ":" + tag), std::string::npos) << msg;
    EXPECT_NE(msg.find("is not an image index"), std::string::npos) << msg;
  }
  auto still = client.get_manifest(repo, tag);
  ASSERT_TRUE(still);
  EXPECT_EQ(still->digest, squatter);
}

}  // namespace
