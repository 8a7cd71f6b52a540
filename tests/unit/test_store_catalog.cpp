// The store's catalog and OCI layout, through the Store API (no CLI).
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <filesystem>
#include <fstream>

#include "imgbake/store.h"
#include "imgbake/util.h"

namespace fs = std::filesystem;
using imgbake::store::CommitRequest;
using imgbake::store::Store;
using imgbake::store::StoreError;

namespace {

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("imgbake-store-test-" + imgbake::util::uuid_v4());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string file(const std::string& name, const std::string& content) {
    fs::path p = dir_ / name;
    std::ofstream(p) << content;
    return p.string();
  }

  CommitRequest request(const std::string& content, std::optional<std::string> version = std::nullopt) {
    CommitRequest r;
    r.name = "web";
    r.version = version;
    r.builder_type = "file";
    r.embed_build_info = false;
    r.files.push_back({file("app-" + content + ".txt", content), content.size(), "", ""});
    return r;
  }

  fs::path dir_;
};

TEST_F(StoreTest, VersionsAreNumberedPerNameAndImmutable) {
  Store st(dir_ / "store");
  EXPECT_EQ(st.commit(request("one")).ref(), "web:1");
  EXPECT_EQ(st.commit(request("two")).ref(), "web:2");
  EXPECT_EQ(st.commit(request("given", "7.0")).ref(), "web:7.0");
  EXPECT_EQ(st.commit(request("three")).ref(), "web:3");
  EXPECT_THROW(st.commit(request("again", "2")), StoreError);
  EXPECT_EQ(st.images("web").size(), 4u);
}

TEST_F(StoreTest, LayerBlobIsTheFileHashedWhileStored) {
  Store st(dir_ / "store");
  auto img = st.commit(request("payload"));
  auto m = st.manifest(img);
  ASSERT_EQ(m["layers"].size(), 1u);
  std::string digest = m["layers"][0]["digest"];
  EXPECT_EQ(digest, "sha256:" + imgbake::util::sha256_hex("payload"));
  EXPECT_EQ(imgbake::util::read_file(st.blobs().path(digest)), "payload");
  EXPECT_EQ(m["layers"][0]["annotations"]["org.opencontainers.image.title"], "app-payload.txt");
  EXPECT_EQ(m["artifactType"], imgbake::oci::kImageArtifactType);
}

TEST_F(StoreTest, BuildInfoTravelsInsideTheImage) {
  Store st(dir_ / "store");
  auto req = request("payload");
  req.embed_build_info = true;
  req.template_digest = "sha256:" + std::string(64, 'a');
  req.git_commit = "0123abc";
  auto img = st.commit(req);
  auto m = st.manifest(img);
  ASSERT_EQ(m["layers"].size(), 2u);
  EXPECT_EQ(m["layers"][1]["annotations"]["org.opencontainers.image.title"], "build-info.json");
  auto info = nlohmann::json::parse(st.blobs().read(m["layers"][1]["digest"]));
  EXPECT_EQ(info["image"], "web");
  EXPECT_EQ(info["version"], "1");
  EXPECT_EQ(info["template_digest"], req.template_digest);
  EXPECT_EQ(info["git_commit"], "0123abc");
}

TEST_F(StoreTest, RefsResolveByVersionChannelDigestAndLatest) {
  Store st(dir_ / "store");
  auto one = st.commit(request("one"));
  auto two = st.commit(request("two"));
  EXPECT_EQ(st.resolve("web").ref(), "web:2");
  EXPECT_EQ(st.resolve("web:1").manifest_digest, one.manifest_digest);
  EXPECT_EQ(st.resolve("web@" + two.manifest_digest).ref(), "web:2");
  st.promote("web:1", "staging", "qa", true);
  EXPECT_EQ(st.resolve("web:staging").ref(), "web:1");
  EXPECT_THROW(st.resolve("web:nope"), StoreError);
  EXPECT_THROW(st.resolve("wbe"), StoreError);
}

TEST_F(StoreTest, RollbackReturnsToThePreviousImageOfTheChannel) {
  Store st(dir_ / "store");
  st.commit(request("one"));
  st.commit(request("two"));
  st.commit(request("three"));
  st.promote("web:1", "prod", "", true);
  st.promote("web:3", "prod", "", true);
  EXPECT_EQ(st.rollback("web", "prod", "bad release").ref(), "web:1");
  EXPECT_EQ(st.resolve("web:prod").ref(), "web:1");
  // Nothing before web:1 in the channel, and no earlier version: refused.
  EXPECT_THROW(st.rollback("web", "prod", ""), StoreError);
}

TEST_F(StoreTest, RollbackWithoutChannelHistoryGoesToTheEarlierUnrevokedVersion) {
  Store st(dir_ / "store");
  st.commit(request("one"));
  st.commit(request("two"));
  st.commit(request("three"));
  st.promote("web:3", "prod", "", true);
  st.revoke("web:2", "broken", false);
  EXPECT_EQ(st.rollback("web", "prod", "").ref(), "web:1");
}

TEST_F(StoreTest, RevokedImagesAreNotPromotedAndDescendantsFollow) {
  Store st(dir_ / "store");
  auto base = st.commit(request("base"));
  auto child_req = request("child");
  child_req.parent = base.ref();
  auto child = st.commit(child_req);
  auto revoked = st.revoke("web:1", "CVE-2026-1", true);
  EXPECT_EQ(revoked, (std::vector<std::string>{"web:1", "web:2"}));
  EXPECT_THROW(st.resolve_parent("web:1"), StoreError);
  try {
    st.promote("web:2", "prod", "", true);
    FAIL() << "promote of a revoked image succeeded";
  } catch (const StoreError& e) {
    EXPECT_NE(std::string(e.what()).find("revoked"), std::string::npos);
  }
}

TEST_F(StoreTest, ProtectedChannelsRequireAVerifiedSignature) {
  Store st(dir_ / "store");
  st.commit(request("one"));
  st.commit(request("two"));
  st.promote("web:1", "prod", "", true, /*protect=*/true);
  EXPECT_THROW(st.promote("web:2", "prod", "", false), StoreError);
  EXPECT_EQ(st.resolve("web:prod").ref(), "web:1");
  st.promote("web:2", "prod", "", true);
  EXPECT_EQ(st.resolve("web:prod").ref(), "web:2");
}

TEST_F(StoreTest, IndexListsVersionsAndChannelsForOciTools) {
  Store st(dir_ / "store");
  auto one = st.commit(request("one"));
  st.promote("web:1", "staging", "", true);
  auto index = nlohmann::json::parse(imgbake::util::read_file(dir_ / "store" / "index.json"));
  std::map<std::string, std::string> refs;
  for (const auto& m : index["manifests"])
    if (m.contains("annotations")) refs[m["annotations"]["org.opencontainers.image.ref.name"]] = m["digest"];
  EXPECT_EQ(refs["web:1"], one.manifest_digest);
  EXPECT_EQ(refs["web:staging"], one.manifest_digest);
  EXPECT_TRUE(fs::exists(dir_ / "store" / "oci-layout"));
}

TEST_F(StoreTest, IndexIsRebuiltFromTheCatalogOnOpen) {
  {
    Store st(dir_ / "store");
    st.commit(request("one"));
  }
  // As if a crash happened between the catalog commit and the index rewrite.
  fs::remove(dir_ / "store" / "index.json");
  Store again(dir_ / "store");
  EXPECT_NE(imgbake::util::read_file(dir_ / "store" / "index.json").find("web:1"), std::string::npos);
  EXPECT_TRUE(again.check(nullptr).ok());
}

TEST_F(StoreTest, CheckFindsAlteredAuditEntriesAndCorruptBlobs) {
  std::string layer;
  {
    Store st(dir_ / "store");
    auto img = st.commit(request("one"));
    st.promote("web:1", "staging", "reason", true);
    EXPECT_TRUE(st.check(nullptr).ok());
    layer = st.manifest(img)["layers"][0]["digest"];
  }
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((dir_ / "store" / "catalog.db").c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "UPDATE audit SET reason = 'forged' WHERE seq = 2", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);
  fs::path blob = dir_ / "store" / "blobs" / "sha256" / layer.substr(7);
  fs::permissions(blob, fs::perms::owner_write, fs::perm_options::add);
  std::ofstream(blob, std::ios::binary | std::ios::in | std::ios::out) << "X";

  Store st(dir_ / "store");
  auto rep = st.check(nullptr);
  EXPECT_FALSE(rep.ok());
  std::string all;
  for (const auto& p : rep.problems) all += p + "\n";
  EXPECT_NE(all.find("entry 2"), std::string::npos) << all;
  EXPECT_NE(all.find(layer), std::string::npos) << all;
}

TEST_F(StoreTest, GcRemovesOnlyUnreferencedBlobs) {
  Store st(dir_ / "store");
  st.commit(request("one"));
  auto stray = st.blobs().put_bytes("stray", "application/octet-stream");
  auto rep = st.gc();
  EXPECT_EQ(rep.removed, 1u);
  EXPECT_FALSE(st.blobs().exists(stray.digest));
  EXPECT_TRUE(st.check(nullptr).ok());
}

TEST_F(StoreTest, GcLeavesWorkInProgressWhileAnotherStoreIsOpen) {
  // What a build interrupted by a second Ctrl-C leaves: a tree directory and a half-written blob.
  Store st(dir_ / "store");
  st.commit(request("one"));
  auto stray = st.blobs().put_bytes("stray", "application/octet-stream");
  fs::path tree = st.blobs().temp_dir() / "rootfs-abc123";
  fs::create_directories(tree / "etc");
  std::ofstream(tree / "etc" / "motd") << "0123456789";
  std::ofstream(st.blobs().temp_dir() / "blob-XYZ") << "half";
  {
    // Another process (here another Store on the same home) may be writing these right now.
    Store other(dir_ / "store");
    auto busy = st.gc();
    EXPECT_TRUE(busy.busy);
    EXPECT_EQ(busy.removed, 0u);
    EXPECT_EQ(busy.temp_removed, 0u);
    EXPECT_EQ(busy.left, 3u);  // the stray blob, the tree, the temp file
    EXPECT_TRUE(st.blobs().exists(stray.digest));
    EXPECT_TRUE(fs::exists(tree / "etc" / "motd"));
  }
  auto rep = st.gc();
  EXPECT_FALSE(rep.busy);
  EXPECT_EQ(rep.removed, 1u);
  EXPECT_EQ(rep.temp_removed, 2u);
  EXPECT_EQ(rep.bytes, 5u + 10u + 4u);
  EXPECT_FALSE(st.blobs().exists(stray.digest));
  EXPECT_FALSE(fs::exists(tree));
  EXPECT_TRUE(fs::is_empty(st.blobs().temp_dir()));
  // The store stays usable by this process and others after gc.
  Store again(dir_ / "store");
  again.commit(request("two"));
  EXPECT_TRUE(st.check(nullptr).ok());
}

}  // namespace
