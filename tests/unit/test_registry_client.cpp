// The registry API of the OCI registry client (ping, blobs read, manifests, tags, referrers,
// retries, references) against a real registry on 127.0.0.1 (registry_client_fixture.h).
#include <gtest/gtest.h>

#include "registry_client_fixture.h"

namespace {

using namespace registry_client_fixture;

TEST_F(RegistryClientTest, PingAnswers) {
  Client client(registry_->host(), PlainHttp(), std::nullopt);
  EXPECT_NO_THROW(client.ping());
  EXPECT_EQ(client.registry(), registry_->host());
}

TEST_F(RegistryClientTest, GetBlobRejectsAWrongExpectedSize) {
  Client client(registry_->host(), PlainHttp(), std::nullopt);
  CancelToken cancel;
  std::string data = "sized blob";
  client.push_blob_bytes("team/sizes", Sha256(data), data, cancel);
  try {
    FetchBlob(client, "team/sizes", Sha256(data), data.size() - 1);
    FAIL() << "a blob longer than expected was accepted";
  } catch (const BuildError& e) {
    EXPECT_NE(std::string(e.what()).find("more than"), std::string::npos) << e.what();
  }
}

TEST_F(RegistryClientTest, ManifestsAndTagsRoundTrip) {
  Client client(registry_->host(), PlainHttp(), std::nullopt);
  PushedImage image = PushImage(client, "team/app", "v1", "layer one");
  EXPECT_EQ(image.digest, Sha256(image.manifest));

  auto by_tag = client.get_manifest("team/app", "v1");
  ASSERT_TRUE(by_tag.has_value());
  EXPECT_EQ(by_tag->bytes, image.manifest);
  EXPECT_EQ(by_tag->digest, image.digest);
  EXPECT_EQ(by_tag->media_type, oci::kManifestMediaType);
  auto by_digest = client.get_manifest("team/app", image.digest);
  ASSERT_TRUE(by_digest.has_value());
  EXPECT_EQ(by_digest->bytes, image.manifest);

  client.put_manifest("team/app", "latest", oci::kManifestMediaType, image.manifest);
  auto tags = client.tags("team/app");
  std::sort(tags.begin(), tags.end());
  EXPECT_EQ(tags, (std::vector<std::string>{"latest", "v1"}));

  EXPECT_FALSE(client.get_manifest("team/app", "no-such-tag").has_value());
  EXPECT_FALSE(client.get_manifest("team/no-such-repo", "v1").has_value());
}

TEST_F(RegistryClientTest, AnInvalidManifestNamesTheRegistrysErrorCode) {
  Client client(registry_->host(), PlainHttp(), std::nullopt);
  nlohmann::json m = {{"schemaVersion", 2},
                      {"mediaType", oci::kManifestMediaType},
                      {"config", {{"mediaType", oci::kConfigMediaType}, {"digest", Sha256("absent")}, {"size", 6}}},
                      {"layers", nlohmann::json::array()}};
  try {
    client.put_manifest("team/bad", "v1", oci::kManifestMediaType, m.dump());
    FAIL() << "a manifest with a missing config blob was accepted";
  } catch (const RegistryError& e) {
    std::string what = e.what();
    EXPECT_EQ(e.status(), 400);
    EXPECT_TRUE(e.code() == "MANIFEST_BLOB_UNKNOWN" || e.code() == "MANIFEST_INVALID") << e.code();
    EXPECT_NE(what.find(e.code()), std::string::npos) << what;
    EXPECT_NE(what.find("HTTP 400"), std::string::npos) << what;
    EXPECT_NE(what.find("/v2/team/bad/manifests/v1"), std::string::npos) << what;
  }
}

TEST_F(RegistryClientTest, FindsReferrersThroughTheTagSchema) {
  Client client(registry_->host(), PlainHttp(), std::nullopt);
  EXPECT_FALSE(client.has_referrers_api("team/signed"));
  PushedImage image = PushImage(client, "team/signed", "v1", "the image");
  nlohmann::json subject = {
      {"mediaType", oci::kManifestMediaType}, {"digest", image.digest}, {"size", image.manifest.size()}};
  PushedImage provenance =
      PushImage(client, "team/signed", "", "an attestation", subject, oci::kProvenanceArtifactType);
  nlohmann::ordered_json index;
  index["schemaVersion"] = 2;
  index["mediaType"] = "application/vnd.oci.image.index.v1+json";
  index["manifests"] = nlohmann::json::array({{{"mediaType", oci::kManifestMediaType},
                                               {"digest", provenance.digest},
                                               {"size", provenance.manifest.size()},
                                               {"artifactType", oci::kProvenanceArtifactType},
                                               {"annotations", {{"org.example.kind", "provenance"}}}}});
  std::string hex = image.digest.substr(7);
  client.put_manifest("team/signed", "sha256-" + hex, "application/vnd.oci.image.index.v1+json", index.dump());

  auto all = client.referrers("team/signed", image.digest);
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].digest, provenance.digest);
  EXPECT_EQ(all[0].size, provenance.manifest.size());
  EXPECT_EQ(all[0].annotations["org.example.kind"], "provenance");
  EXPECT_EQ(client.referrers("team/signed", image.digest, oci::kProvenanceArtifactType).size(), 1u);
  EXPECT_TRUE(client.referrers("team/signed", image.digest, "application/vnd.other").empty());
  EXPECT_TRUE(client.referrers("team/signed", provenance.digest).empty());
}

TEST_F(RegistryClientTest, RetriesATooManyRequestsAnswerAfterItsRetryAfter) {
  Client direct(registry_->host(), PlainHttp(), std::nullopt);
  PushedImage image = PushImage(direct, "team/busy", "v1", "busy layer");
  TestHttpServer proxy(FailSome("GET", "/manifests/v1", 429, 2, {"Retry-After: 1"}), registry_->port());
  std::vector<std::string> log;
  Client client(proxy.host(), PlainHttp(&log), std::nullopt);
  auto started = Clock::now();
  auto m = client.get_manifest("team/busy", "v1");
  auto took = Clock::now() - started;
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->digest, image.digest);
  EXPECT_EQ(CountRequests(proxy, "GET", "/manifests/v1"), 3u);
  EXPECT_GE(took, 1900ms) << "Retry-After: 1 was not waited for (twice)";
  EXPECT_LT(took, 10s);
  std::string all = Lines(log);
  EXPECT_NE(all.find("retry: GET /v2/team/busy/manifests/v1 answered HTTP 429; trying again in 1"), std::string::npos)
      << all;
}

TEST_F(RegistryClientTest, GivesUpAfterTheRetriesNamingTheStatusAndTheRegistrysError) {
  TestHttpServer proxy(FailSome("GET", "/tags/list", 503, 1000), registry_->port());
  std::vector<std::string> log;
  ClientOptions options = PlainHttp(&log);
  options.max_retries = 2;
  Client client(proxy.host(), options, std::nullopt);
  try {
    client.tags("team/down");
    FAIL() << "a registry that answers 503 every time was not given up on";
  } catch (const RegistryError& e) {
    std::string what = e.what();
    EXPECT_EQ(e.status(), 503);
    EXPECT_EQ(e.code(), "UNAVAILABLE");
    EXPECT_NE(what.find("HTTP 503"), std::string::npos) << what;
    EXPECT_NE(what.find("UNAVAILABLE: the backend is down for maintenance"), std::string::npos) << what;
    EXPECT_NE(what.find("GET /v2/team/down/tags/list"), std::string::npos) << what;
    EXPECT_EQ(what.find("?n="), std::string::npos) << "no query strings in errors: " << what;
  }
  EXPECT_EQ(CountRequests(proxy, "GET", "/tags/list"), 3u) << "one try and max_retries (2) retries";
  EXPECT_EQ(log.size(), 2u) << Lines(log);
}

// A manifest fetched by tag whose bytes do not hash to the Docker-Content-Digest the registry
// sent with it (a proxy or a registry that changed it) is refused, as by digest.
TEST(RegistryClientAnswers, AManifestByTagMustMatchItsDockerContentDigest) {
  const std::string manifest = R"({"schemaVersion":2,"mediaType":")" + std::string(oci::kManifestMediaType) +
                               R"(","config":{"mediaType":"x","digest":"sha256:)" + std::string(64, '0') +
                               R"(","size":1},"layers":[]})";
  const std::string lie = "sha256:" + std::string(64, 'f');
  TestHttpServer server([&](const HttpRequest& r) -> std::optional<HttpAnswer> {
    std::string header = r.target.ends_with("/lying") ? lie : r.target.ends_with("/honest") ? Sha256(manifest) : "";
    std::vector<std::string> headers = {"Content-Type: " + std::string(oci::kManifestMediaType)};
    if (!header.empty()) headers.push_back("Docker-Content-Digest: " + header);
    return HttpAnswer{200, headers, manifest};
  });
  Client client(server.host(), PlainHttp(), std::nullopt);
  EXPECT_EQ(client.get_manifest("team/app", "honest")->digest, Sha256(manifest));
  EXPECT_EQ(client.get_manifest("team/app", "silent")->digest, Sha256(manifest)) << "the header is optional";
  try {
    client.get_manifest("team/app", "lying");
    FAIL() << "a manifest that does not match its Docker-Content-Digest was accepted";
  } catch (const BuildError& e) {
    EXPECT_EQ(std::string(e.what()), "registry " + server.host() +
                                         " answered team/app:lying with a manifest whose "
                                         "bytes hash to " +
                                         Sha256(manifest) + " but its Docker-Content-Digest says " + lie +
                                         "; the manifest was changed on the way or the registry is faulty: nothing was "
                                         "pulled");
  }
}

TEST(RegistryReference, ParsesTheSpellingsOfDockerAndSkopeo) {
  Reference r = Reference::parse("docker://127.0.0.1:5000/team/app:v1");
  EXPECT_EQ(r.registry, "127.0.0.1:5000");
  EXPECT_EQ(r.repository, "team/app");
  EXPECT_EQ(r.tag, "v1");
  EXPECT_EQ(r.str(), "127.0.0.1:5000/team/app:v1");

  Reference hub = Reference::parse("debian");
  EXPECT_EQ(hub.registry, "registry-1.docker.io");
  EXPECT_EQ(hub.repository, "library/debian");
  EXPECT_EQ(Reference::parse("docker.io/team/app").repository, "team/app");

  std::string digest = "sha256:" + std::string(64, 'a');
  Reference pinned = Reference::parse("localhost/app:1.0@" + digest);
  EXPECT_EQ(pinned.registry, "localhost");
  EXPECT_EQ(pinned.tag, "1.0");
  EXPECT_EQ(pinned.digest, digest);
  EXPECT_EQ(pinned.str(), "localhost/app:1.0@" + digest);

  EXPECT_THROW(Reference::parse(""), UsageError);
  EXPECT_THROW(Reference::parse("ghcr.io/Team/App"), UsageError);
  EXPECT_THROW(Reference::parse("ghcr.io/team/app@sha256:abc"), UsageError);
  EXPECT_THROW(Reference::parse("ghcr.io/team/app:-bad"), UsageError);
  try {
    Reference::parse("ghcr.io/team//app");
    FAIL() << "an empty repository part was accepted";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("ghcr.io/team//app"), std::string::npos) << e.what();
  }
}

}  // namespace
