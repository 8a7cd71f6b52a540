// The build cache shared through a registry: an entry as a signed artifact, what makes an entry
// unusable, and export/fetch between two stores through a real registry (Debian's
// docker-registry on 127.0.0.1).
#include <gtest/gtest.h>

#include <filesystem>

#include "imgbake/build_cache.h"
#include "imgbake/store.h"
#include "imgbake/util.h"
#include "registry_fixture.h"

namespace fs = std::filesystem;
using namespace imgbake;
using registry::make_cache_artifact;
using registry::read_cache_artifact;
using store::CacheEntry;

namespace {

constexpr const char* kLayerType = "application/vnd.oci.image.layer.v1.tar+gzip";

CacheEntry Entry(const std::string& prev, const std::string& step) {
  CacheEntry e;
  e.material = nlohmann::json({{"prev", prev}, {"step", step}}).dump();
  e.key = util::sha256_hex(e.material);
  e.blob = {kLayerType, "sha256:" + util::sha256_hex(step), step.size(), {}};
  e.diff_id = "sha256:" + util::sha256_hex("tar of " + step);
  e.created_by = "imgbake rootfs: " + step;
  e.created = "2026-12-06T07:00:00Z";
  return e;
}

std::vector<provenance::VerifyingKey> Trust(const provenance::SigningKey& k) {
  std::vector<provenance::VerifyingKey> v;
  v.push_back(provenance::VerifyingKey::from_pem(k.public_pem()));
  return v;
}

// Re-signs an edited payload, as a holder of the key could.
std::string Resigned(const std::string& config, const provenance::SigningKey& key,
                     const std::function<void(nlohmann::json&)>& edit) {
  auto env = nlohmann::json::parse(config);
  auto payload = nlohmann::json::parse(provenance::base64_decode(env["payload"].get<std::string>()));
  edit(payload);
  return provenance::sign_envelope(key, registry::kCacheEntryPayloadType, payload.dump()).dump();
}

// The manifest with another config blob (its descriptor updated).
std::string WithConfig(const std::string& manifest, const std::string& config) {
  auto m = nlohmann::json::parse(manifest);
  m["config"]["digest"] = "sha256:" + util::sha256_hex(config);
  m["config"]["size"] = config.size();
  return m.dump();
}

std::string ErrorOf(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

TEST(RegistryBuildCache, AnEntryRoundTripsThroughItsArtifact) {
  auto key = provenance::SigningKey::generate();
  CacheEntry e = Entry("", "step one");
  e.state = {"application/vnd.imgbake.qemu.state.v1.gzip", "sha256:" + util::sha256_hex("state"), 5, {}};
  e.blob.media_type = "application/vnd.imgbake.qemu.disk.v1.qcow2";
  auto a = make_cache_artifact(e, key);
  ASSERT_EQ(a.layers.size(), 2u);
  auto m = nlohmann::json::parse(a.manifest);
  EXPECT_EQ(m["artifactType"], registry::kCacheArtifactType);
  EXPECT_EQ(m["config"]["mediaType"], registry::kCacheEntryMediaType);
  EXPECT_EQ(m["layers"][0]["digest"], e.blob.digest);
  EXPECT_EQ(m["layers"][1]["digest"], e.state.digest);
  CacheEntry back = read_cache_artifact(e.key, a.manifest, a.config, Trust(key));
  EXPECT_EQ(back.key, e.key);
  EXPECT_EQ(back.material, e.material);
  EXPECT_EQ(back.blob.digest, e.blob.digest);
  EXPECT_EQ(back.state.digest, e.state.digest);
  EXPECT_EQ(back.diff_id, e.diff_id);
  EXPECT_EQ(back.created_by, e.created_by);
  // The same entry and key give the same bytes (Ed25519 is deterministic): a re-export is a no-op.
  EXPECT_EQ(make_cache_artifact(e, key).manifest, a.manifest);
}

TEST(RegistryBuildCache, AnEmptyEntryListsTheEmptyDescriptor) {
  auto key = provenance::SigningKey::generate();
  CacheEntry e = Entry("", "no change");
  e.empty = true;
  e.blob = {};
  e.diff_id.clear();
  auto a = make_cache_artifact(e, key);
  ASSERT_EQ(a.layers.size(), 1u);
  EXPECT_EQ(a.layers[0].media_type, oci::kEmptyMediaType);
  EXPECT_EQ(a.layers[0].digest, "sha256:" + util::sha256_hex("{}"));
  EXPECT_TRUE(read_cache_artifact(e.key, a.manifest, a.config, Trust(key)).empty);
}

TEST(RegistryBuildCache, WhatMakesAnEntryUnusable) {
  auto key = provenance::SigningKey::generate();
  auto stranger = provenance::SigningKey::generate();
  CacheEntry one = Entry("", "step one");
  CacheEntry two = Entry(one.key, "step two");
  auto a = make_cache_artifact(one, key);

  EXPECT_NE(ErrorOf([&] {
              read_cache_artifact(one.key, a.manifest, a.config, Trust(stranger));
            }).find("not from a trusted key"),
            std::string::npos);
  // Another step's valid entry under this step's tag.
  EXPECT_NE(ErrorOf([&] {
              read_cache_artifact(two.key, a.manifest, a.config, Trust(key));
            }).find("is the entry of key " + one.key.substr(0, 12)),
            std::string::npos);
  // Material that does not hash to the key, even signed by a trusted key.
  std::string c = Resigned(a.config, key, [](nlohmann::json& p) { p["material"] = "{}"; });
  EXPECT_NE(ErrorOf([&] {
              read_cache_artifact(one.key, WithConfig(a.manifest, c), c, Trust(key));
            }).find("does not hash to its key"),
            std::string::npos);
  // A config that is not the one the manifest names.
  EXPECT_NE(ErrorOf([&] { read_cache_artifact(one.key, a.manifest, c, Trust(key)); }).find("signed envelope"),
            std::string::npos);
  // Blobs in the manifest that are not the entry's.
  auto m = nlohmann::json::parse(a.manifest);
  m["layers"][0]["digest"] = "sha256:" + util::sha256_hex("something else");
  EXPECT_NE(ErrorOf([&] {
              read_cache_artifact(one.key, m.dump(), a.config, Trust(key));
            }).find("layers are not the entry's blobs"),
            std::string::npos);
  // A digest that would reach outside the blob directory; a media type no entry has.
  c = Resigned(a.config, key, [](nlohmann::json& p) { p["blob"]["digest"] = "sha256:../../../etc/passwd"; });
  EXPECT_NE(
      ErrorOf([&] { read_cache_artifact(one.key, WithConfig(a.manifest, c), c, Trust(key)); }).find("malformed digest"),
      std::string::npos);
  c = Resigned(a.config, key, [](nlohmann::json& p) { p["blob"]["mediaType"] = "text/plain"; });
  EXPECT_NE(ErrorOf([&] {
              read_cache_artifact(one.key, WithConfig(a.manifest, c), c, Trust(key));
            }).find("media type 'text/plain'"),
            std::string::npos);
  // Not a cache artifact at all.
  EXPECT_NE(ErrorOf([&] {
              read_cache_artifact(one.key, "{\"layers\": []}", a.config, Trust(key));
            }).find("not an imgbake cache entry"),
            std::string::npos);
}

class RegistryBuildCacheStores : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = registry_fixture::MakeTempDir("build-cache");
    a_ = std::make_unique<store::Store>(dir_ / "a");
    b_ = std::make_unique<store::Store>(dir_ / "b");
  }
  void TearDown() override {
    a_.reset();
    b_.reset();
    fs::remove_all(dir_);
  }
  std::unique_ptr<registry::Client> ClientFor(const registry_fixture::LocalRegistry& r) {
    registry::ClientOptions o;
    o.plain_http = true;
    o.max_retries = 0;
    return std::make_unique<registry::Client>(r.host(), o, std::nullopt);
  }
  registry::CacheRepository Repo(const registry_fixture::LocalRegistry& r) {
    return {registry::Reference::parse(r.host() + "/ci/cache"), ClientFor(r)};
  }
  fs::path dir_;
  std::unique_ptr<store::Store> a_, b_;
  std::vector<std::string> said_, warned_;
  CancelToken cancel_;
};

TEST_F(RegistryBuildCacheStores, ExportedEntriesAreFetchedIntoAnotherStore) {
  registry_fixture::LocalRegistry reg;
  ASSERT_TRUE(reg.ready()) << reg.log();
  auto key = provenance::SigningKey::generate();
  // Store a has a layer entry and an empty entry after it.
  CacheEntry one = Entry("", "layer content");
  one.blob = a_->blobs().put_bytes("layer content", kLayerType);
  CacheEntry two = Entry(one.key, "nothing");
  two.empty = true;
  two.blob = {};
  a_->cache_put(one, "");
  a_->cache_put(two, "");

  registry::RegistryCache to(
      {}, Repo(reg), {}, [](std::string_view) {}, [](std::string_view) {}, cancel_);
  store::cache_record(*a_, &to, one, "");
  to.note(two);
  to.note(one);  // noted twice: sent once
  auto r = to.export_noted(*a_, key);
  EXPECT_EQ(r.entries, 2u);
  EXPECT_EQ(r.blobs_sent, 1u);
  EXPECT_TRUE(r.failures.empty()) << r.failures.front();
  EXPECT_EQ(to.export_noted(*a_, key).entries_there, 2u);

  std::vector<registry::CacheRepository> from;
  from.push_back(Repo(reg));
  registry::RegistryCache cache(
      std::move(from), std::nullopt,
      [&] {
        std::vector<provenance::VerifyingKey> v;
        v.push_back(provenance::VerifyingKey::from_pem(key.public_pem()));
        return v;
      }(),
      [&](std::string_view l) { said_.emplace_back(l); }, [&](std::string_view l) { warned_.emplace_back(l); },
      cancel_);
  auto got = store::cache_find(*b_, &cache, one.key, "slot-1");
  ASSERT_TRUE(got.has_value()) << (warned_.empty() ? "" : warned_.front());
  EXPECT_EQ(got->blob.digest, one.blob.digest);
  EXPECT_TRUE(b_->blobs().exists(one.blob.digest));
  EXPECT_EQ(b_->blobs().check(one.blob.digest), "");
  ASSERT_TRUE(b_->cache_get(one.key).has_value());  // recorded: no registry needed next time
  EXPECT_EQ(b_->cache_last_in_slot("slot-1")->key, one.key);
  EXPECT_TRUE(store::cache_find(*b_, &cache, two.key, "")->empty);
  EXPECT_FALSE(store::cache_find(*b_, &cache, util::sha256_hex("unknown"), "").has_value());
  EXPECT_EQ(cache.fetched(), 2u);
  ASSERT_EQ(said_.size(), 2u);
  EXPECT_NE(said_[0].find("from " + reg.host() + "/ci/cache (1 blob, 13 B downloaded)"), std::string::npos) << said_[0];
  EXPECT_TRUE(warned_.empty());
}

TEST_F(RegistryBuildCacheStores, AnUnreachableRegistryIsOneWarning) {
  int port = 0;
  {
    registry_fixture::LocalRegistry gone;
    port = gone.port();
  }
  registry::ClientOptions o;
  o.plain_http = true;
  o.max_retries = 0;
  std::string host = "127.0.0.1:" + std::to_string(port);
  std::vector<registry::CacheRepository> from;
  from.push_back(
      {registry::Reference::parse(host + "/ci/cache"), std::make_unique<registry::Client>(host, o, std::nullopt)});
  registry::RegistryCache cache(
      std::move(from), std::nullopt, {}, [](std::string_view) {}, [&](std::string_view l) { warned_.emplace_back(l); },
      cancel_);
  EXPECT_FALSE(cache.fetch(*b_, util::sha256_hex("a"), "").has_value());
  EXPECT_FALSE(cache.fetch(*b_, util::sha256_hex("b"), "").has_value());
  ASSERT_EQ(warned_.size(), 1u);
  EXPECT_NE(warned_[0].find("cannot be read"), std::string::npos) << warned_[0];
}

}  // namespace
