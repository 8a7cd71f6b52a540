// Signed registry records against a real docker-registry on 127.0.0.1: promote, rollback and
// revoke as tag moves with chained records, and copies (mounted, streamed, refused when revoked).
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "imgbake/process.h"
#include "imgbake/records.h"
#include "imgbake/transfer.h"
#include "imgbake/util.h"
#include "registry_fixture.h"
#include "sshd_fixture.h"

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using namespace imgbake;
using namespace imgbake::registry;

using registry_fixture::kRegistryBinary;
using registry_fixture::LocalRegistry;

std::string Sha256(const std::string& data) { return "sha256:" + util::sha256_hex(data); }

std::vector<provenance::VerifyingKey> KeysOf(const provenance::SigningKey& key) {
  std::vector<provenance::VerifyingKey> keys;
  keys.push_back(provenance::VerifyingKey::from_pem(key.public_pem()));
  return keys;
}

// ---- against a real registry ---------------------------------------------------------------

std::unique_ptr<Client> ClientFor(const LocalRegistry& r) {
  ClientOptions o;
  o.plain_http = true;
  return std::make_unique<Client>(r.host(), o, std::nullopt);
}

// A small image (config + one layer) tagged `tag`; returns its manifest.
Manifest PushImage(Client& client, const std::string& repo, const std::string& tag, const std::string& layer) {
  CancelToken cancel;
  std::string config = "{}";
  client.push_blob_bytes(repo, Sha256(config), config, cancel);
  client.push_blob_bytes(repo, Sha256(layer), layer, cancel);
  nlohmann::ordered_json m = {
      {"schemaVersion", 2},
      {"mediaType", oci::kManifestMediaType},
      {"config", {{"mediaType", oci::kConfigMediaType}, {"digest", Sha256(config)}, {"size", config.size()}}},
      {"layers",
       nlohmann::json::array(
           {{{"mediaType", "application/octet-stream"}, {"digest", Sha256(layer)}, {"size", layer.size()}}})}};
  Manifest out{oci::kManifestMediaType, m.dump(), ""};
  out.digest = client.put_manifest(repo, tag, out.media_type, out.bytes);
  return out;
}

class RegistryRecordsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (access(kRegistryBinary, X_OK) == 0) registry_ = new LocalRegistry();
  }
  static void TearDownTestSuite() {
    delete registry_;
    registry_ = nullptr;
  }
  void SetUp() override {
    if (!registry_) GTEST_SKIP() << kRegistryBinary << " is missing (Debian: apt-get install docker-registry)";
    if (!registry_->ready()) GTEST_SKIP() << "docker-registry did not start: " << registry_->log();
  }
  static LocalRegistry* registry_;
  CancelToken cancel_;
};

LocalRegistry* RegistryRecordsTest::registry_ = nullptr;

TEST_F(RegistryRecordsTest, PromotionsAreTagMovesWithChainedRecordsAndRollbackGoesBack) {
  auto client = ClientFor(*registry_);
  Manifest one = PushImage(*client, "records/app", "1", "layer one");
  Manifest two = PushImage(*client, "records/app", "2", "layer two");
  auto key = provenance::SigningKey::generate();
  auto keys = KeysOf(key);
  RecordAuthor author{&key, "ci@runner", nullptr};
  Reference repo = Reference::parse(registry_->host() + "/records/app");
  Reference image1 = Reference::parse(registry_->host() + "/records/app:1");
  Reference image2 = Reference::parse(registry_->host() + "/records/app@" + two.digest);

  ChannelMove first = promote_remote(*client, image1, "staging", "smoke", author, keys, cancel_);
  EXPECT_EQ(first.to_digest, one.digest);
  EXPECT_EQ(first.from_digest, "");
  ChannelMove second = promote_remote(*client, image2, "staging", "", author, keys, cancel_);
  EXPECT_EQ(second.from_digest, one.digest);
  EXPECT_EQ(client->get_manifest("records/app", "staging")->digest, two.digest);
  EXPECT_THROW(promote_remote(*client, image2, "staging", "", author, keys, cancel_), BuildError);

  auto records = repository_records(*client, "records/app", keys, cancel_);
  ASSERT_EQ(records.size(), 2u);
  EXPECT_TRUE(records[0].verified && records[1].verified) << records[0].problem << records[1].problem;
  EXPECT_EQ(records[0].digest, first.record_digest);
  EXPECT_EQ(records[1].record.previous, first.record_digest);
  EXPECT_EQ(records[1].record.who, "ci@runner");

  ChannelMove back = rollback_remote(*client, repo, "staging", "5xx", author, keys, cancel_);
  EXPECT_EQ(back.to_digest, one.digest);
  EXPECT_EQ(client->get_manifest("records/app", "staging")->digest, one.digest);
  // The tag holds the same bytes as the image: the manifest was moved, not rewritten.
  EXPECT_EQ(client->get_manifest("records/app", "staging")->bytes, one.bytes);
}

TEST_F(RegistryRecordsTest, ARevocationIsFoundOnlyWhenItsSignatureIsTrusted) {
  auto client = ClientFor(*registry_);
  Manifest image = PushImage(*client, "records/revoked", "1", "revoked layer");
  auto key = provenance::SigningKey::generate();
  auto intruder = provenance::SigningKey::generate();
  Reference ref = Reference::parse(registry_->host() + "/records/revoked:1");

  RecordAuthor by_intruder{&intruder, "mallory@elsewhere", nullptr};
  revoke_remote(*client, ref, "not really", by_intruder, KeysOf(intruder), cancel_);
  auto records = image_records(*client, "records/revoked", image.digest, KeysOf(key), cancel_);
  ASSERT_EQ(records.size(), 1u);
  EXPECT_FALSE(records[0].verified);
  EXPECT_FALSE(find_revocation(records).has_value());

  RecordAuthor author{&key, "ops@host", nullptr};
  ChannelMove m = revoke_remote(*client, ref, "CVE-2026-1", author, KeysOf(key), cancel_);
  EXPECT_FALSE(m.already);
  auto revocation = find_revocation(image_records(*client, "records/revoked", image.digest, KeysOf(key), cancel_));
  ASSERT_TRUE(revocation.has_value());
  EXPECT_EQ(revocation->record.reason, "CVE-2026-1");
  EXPECT_EQ(revocation->digest, m.record_digest);
  EXPECT_TRUE(revoke_remote(*client, ref, "again", author, KeysOf(key), cancel_).already);

  // copy refuses it unless allowed.
  auto keys = KeysOf(key);
  RevocationPolicy refuse{&keys, false};
  Reference dest = Reference::parse(registry_->host() + "/records/revoked-copy:1");
  try {
    copy_image(*client, ref, *client, dest, "/nonexistent", refuse, nullptr, cancel_);
    FAIL() << "a revoked image must not be copied";
  } catch (const BuildError& e) {
    EXPECT_NE(std::string(e.what()).find("is revoked: CVE-2026-1"), std::string::npos) << e.what();
  }
  RevocationPolicy allow{&keys, true};
  TransferReport rep = copy_image(*client, ref, *client, dest, "/nonexistent", allow, nullptr, cancel_);
  EXPECT_EQ(rep.revocation, m.record_digest);
  EXPECT_EQ(rep.manifest_digest, image.digest);
}

TEST_F(RegistryRecordsTest, CopyMountsWithinARegistryAndStreamsBetweenRegistriesWithoutATempFile) {
  LocalRegistry second;
  if (!second.ready()) GTEST_SKIP() << "a second docker-registry did not start: " << second.log();
  auto client = ClientFor(*registry_);
  auto mirror = ClientFor(second);
  std::string big_layer = sshd_fixture::RandomBytes(3 << 20, 7);
  Manifest image = PushImage(*client, "records/copy-src", "1", big_layer);
  Reference src = Reference::parse(registry_->host() + "/records/copy-src:1");
  RevocationPolicy policy;
  const std::string no_staging = "/nonexistent/staging";

  TransferReport mounted =
      copy_image(*client, src, *client, Reference::parse(registry_->host() + "/records/copy-dst:1"), no_staging, policy,
                 nullptr, cancel_);
  EXPECT_EQ(mounted.manifest_digest, image.digest);
  EXPECT_EQ(mounted.blobs_mounted, 2u);
  EXPECT_EQ(mounted.blob_bytes, 0u);

  TransferReport streamed = copy_image(*client, src, *mirror, Reference::parse(second.host() + "/mirror/app:1"),
                                       no_staging, policy, nullptr, cancel_);
  EXPECT_EQ(streamed.manifest_digest, image.digest);
  EXPECT_EQ(streamed.blobs_sent, 2u);
  EXPECT_EQ(streamed.blobs_staged, 0u);
  EXPECT_EQ(streamed.blob_bytes, big_layer.size() + 2);
  std::string back;
  mirror->get_blob(
      "mirror/app", Sha256(big_layer), big_layer.size(), [&](const char* p, size_t n) { back.append(p, n); },
      TransferProgress(), cancel_);
  EXPECT_EQ(back, big_layer);
}

TEST_F(RegistryRecordsTest, LargeBlobsStreamBetweenRegistriesInChunksWithoutATempFile) {
  LocalRegistry second;
  if (!second.ready()) GTEST_SKIP() << "a second docker-registry did not start: " << second.log();
  auto client = ClientFor(*registry_);
  // Small PATCHes, so that the stream is cut into several requests read in order.
  ClientOptions o;
  o.plain_http = true;
  o.chunk_size = 3 << 20;
  Client mirror(second.host(), o, std::nullopt);
  std::string big_layer = sshd_fixture::RandomBytes((20 << 20) + 12345, 11);  // > kCopyMemoryLimit
  ASSERT_GT(big_layer.size(), kCopyMemoryLimit);
  Manifest image = PushImage(*client, "records/big", "1", big_layer);
  std::vector<std::string> log;
  TransferReport rep = copy_image(
      *client, Reference::parse(registry_->host() + "/records/big:1"), mirror,
      Reference::parse(second.host() + "/mirror/big:1"), "/nonexistent/staging", RevocationPolicy(),
      [&](std::string_view l) { log.emplace_back(l); }, cancel_);
  EXPECT_EQ(rep.manifest_digest, image.digest);
  EXPECT_EQ(rep.blobs_staged, 0u);
  EXPECT_EQ(rep.blob_bytes, big_layer.size() + 2);
  std::string back;
  mirror.get_blob(
      "mirror/big", Sha256(big_layer), big_layer.size(), [&](const char* p, size_t n) { back.append(p, n); },
      TransferProgress(), cancel_);
  EXPECT_TRUE(back == big_layer);
  bool said_streamed = false;
  for (const auto& l : log) said_streamed = said_streamed || l.find("20.0 MiB: streamed") != std::string::npos;
  EXPECT_TRUE(said_streamed) << testing::PrintToString(log);
  // Copied again: the destination has every blob, nothing moves.
  TransferReport again = copy_image(*client, Reference::parse(registry_->host() + "/records/big:1"), mirror,
                                    Reference::parse(second.host() + "/mirror/big:2"), "/nonexistent/staging",
                                    RevocationPolicy(), nullptr, cancel_);
  EXPECT_EQ(again.blob_bytes, 0u);
  EXPECT_EQ(again.blobs_skipped, 2u);
}

}  // namespace
