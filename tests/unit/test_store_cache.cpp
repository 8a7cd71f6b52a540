// The store's build cache (layers by step key) and container images committed from layers
// that are already blobs (the rootfs builder's path into the store).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "imgbake/store.h"
#include "imgbake/util.h"

namespace fs = std::filesystem;
using imgbake::oci::Descriptor;
using imgbake::store::CacheEntry;
using imgbake::store::CommitRequest;
using imgbake::store::OciImage;
using imgbake::store::Store;

namespace {

class StoreCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    home_ = fs::temp_directory_path() / ("store-cache-" + imgbake::util::uuid_v4());
    st_ = std::make_unique<Store>(home_);
  }
  void TearDown() override {
    st_.reset();
    fs::remove_all(home_);
  }

  // A "layer" written under the store's temp dir, then adopted as a blob.
  Descriptor Layer(const std::string& content) {
    fs::create_directories(st_->blobs().temp_dir());
    fs::path tmp = st_->blobs().temp_dir() / ("layer-" + imgbake::util::uuid_v4());
    std::ofstream(tmp) << content;
    return st_->blobs().adopt(tmp, "sha256:" + imgbake::util::sha256_hex(content), content.size(),
                              "application/vnd.oci.image.layer.v1.tar+gzip");
  }

  CacheEntry Entry(const std::string& key, const Descriptor& d) {
    CacheEntry e;
    e.key = key;
    e.material = R"({"prev":"","step":{"n":1}})";
    e.blob = d;
    e.diff_id = "sha256:" + std::string(64, 'd');
    e.created_by = "step " + key;
    return e;
  }

  CommitRequest Image(const std::vector<Descriptor>& layers) {
    CommitRequest req;
    req.name = "app";
    req.builder_type = "rootfs";
    OciImage img;
    // The store checks each tar layer's diff_id: these "layers" are not compressed, so their
    // uncompressed bytes are the blob's and the diff_id is the digest.
    for (const auto& d : layers) img.layers.push_back({d, d.digest});
    img.config = {{"Env", {"PATH=/bin"}}, {"Cmd", {"/bin/sh"}}};
    img.history = nlohmann::ordered_json::array({{{"created_by", "base"}}});
    img.created = "2023-11-14T22:13:20Z";
    req.oci = img;
    return req;
  }

  fs::path home_;
  std::unique_ptr<Store> st_;
};

TEST_F(StoreCacheTest, AdoptMovesTheFileIntoPlace) {
  Descriptor d = Layer("layer bytes");
  EXPECT_TRUE(st_->blobs().exists(d.digest));
  EXPECT_EQ(st_->blobs().read(d.digest), "layer bytes");
  EXPECT_TRUE(st_->blobs().leftovers().empty());
  EXPECT_EQ(st_->blobs().check(d.digest), "");
  // The same content again: the existing blob is kept and the new file goes away.
  Descriptor again = Layer("layer bytes");
  EXPECT_EQ(again.digest, d.digest);
  EXPECT_TRUE(st_->blobs().leftovers().empty());
}

TEST_F(StoreCacheTest, AdoptRefusesAFileOfAnotherSize) {
  fs::create_directories(st_->blobs().temp_dir());
  fs::path tmp = st_->blobs().temp_dir() / "short";
  std::ofstream(tmp) << "abc";
  EXPECT_THROW(st_->blobs().adopt(tmp, "sha256:" + imgbake::util::sha256_hex("abc"), 4, "x"),
               imgbake::store::StoreError);
}

TEST_F(StoreCacheTest, PutGetAndSlots) {
  Descriptor d = Layer("one");
  EXPECT_FALSE(st_->cache_get("k1").has_value());
  st_->cache_put(Entry("k1", d), "t.json#b#1");
  auto got = st_->cache_get("k1");
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->blob.digest, d.digest);
  EXPECT_EQ(got->blob.size, 3u);
  EXPECT_EQ(got->created_by, "step k1");
  EXPECT_FALSE(got->created.empty());
  EXPECT_EQ(st_->cache_last_in_slot("t.json#b#1")->key, "k1");
  // The slot remembers the latest key it had, for --explain-cache.
  st_->cache_put(Entry("k2", Layer("two")), "t.json#b#1");
  EXPECT_EQ(st_->cache_last_in_slot("t.json#b#1")->key, "k2");
  EXPECT_FALSE(st_->cache_last_in_slot("t.json#b#2").has_value());
  EXPECT_EQ(st_->cache_size(), 2u);
  // An empty step (no layer) is a hit without a blob.
  CacheEntry empty;
  empty.key = "k3";
  empty.material = "{}";
  empty.empty = true;
  st_->cache_put(empty, "");
  ASSERT_TRUE(st_->cache_get("k3").has_value());
  EXPECT_TRUE(st_->cache_get("k3")->empty);
}

TEST_F(StoreCacheTest, GcKeepsCachedLayersUntilPruned) {
  Descriptor d = Layer("cached layer");
  st_->cache_put(Entry("k1", d), "s");
  Layer("orphan");
  auto r = st_->gc();
  EXPECT_EQ(r.removed, 1u);
  EXPECT_TRUE(st_->blobs().exists(d.digest));
  auto pruned = st_->gc(true);
  EXPECT_EQ(pruned.cache_forgotten, 1u);
  EXPECT_EQ(pruned.removed, 1u);
  EXPECT_FALSE(st_->blobs().exists(d.digest));
  EXPECT_FALSE(st_->cache_get("k1").has_value());
  EXPECT_EQ(st_->cache_size(), 0u);
}

TEST_F(StoreCacheTest, AQemuCheckpointKeepsItsVmStateUntilPruned) {
  Descriptor disk = Layer("overlay");
  Descriptor state = Layer("vm state");
  CacheEntry e = Entry("k1", disk);
  e.state = state;
  st_->cache_put(e, "t.json#b#1");
  auto got = st_->cache_get("k1");
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->state.digest, state.digest);
  EXPECT_EQ(got->state.size, state.size);
  EXPECT_EQ(st_->cache_last_in_slot("t.json#b#1")->state.digest, state.digest);
  EXPECT_EQ(st_->gc().removed, 0u);
  EXPECT_TRUE(st_->blobs().exists(state.digest));
  // A damaged state is a problem for store check; a lost one makes the entry a miss.
  fs::path p = st_->blobs().path(state.digest);
  fs::permissions(p, fs::perms::owner_write, fs::perm_options::add);
  std::ofstream(p) << "tampered";
  auto rep = st_->check(nullptr);
  ASSERT_EQ(rep.problems.size(), 1u);
  EXPECT_NE(rep.problems[0].find("build cache entry"), std::string::npos) << rep.problems[0];
  fs::remove(p);
  EXPECT_FALSE(st_->cache_get("k1").has_value());
  st_->gc(true);
  EXPECT_FALSE(st_->blobs().exists(disk.digest));
}

TEST_F(StoreCacheTest, ALostLayerIsAMissAndADamagedOneAProblem) {
  Descriptor d = Layer("will be damaged");
  st_->cache_put(Entry("k1", d), "s");
  fs::path p = st_->blobs().path(d.digest);
  fs::permissions(p, fs::perms::owner_write, fs::perm_options::add);
  std::ofstream(p) << "tampered";
  auto rep = st_->check(nullptr);
  ASSERT_EQ(rep.problems.size(), 1u);
  EXPECT_NE(rep.problems[0].find("build cache entry"), std::string::npos) << rep.problems[0];
  fs::remove(p);
  EXPECT_FALSE(st_->cache_get("k1").has_value());
}

TEST_F(StoreCacheTest, ContainerImageIsAPlainOciImage) {
  Descriptor l1 = Layer("base"), l2 = Layer("step");
  CommitRequest req = Image({l1, l2});
  req.labels["team"] = "infra";
  auto rec = st_->commit(req);
  EXPECT_EQ(rec.ref(), "app:1");
  EXPECT_FALSE(rec.unchanged);
  nlohmann::json m = st_->manifest(rec);
  EXPECT_FALSE(m.contains("artifactType"));
  ASSERT_EQ(m["layers"].size(), 2u);
  EXPECT_EQ(m["layers"][0]["digest"], l1.digest);
  EXPECT_EQ(m["layers"][1]["mediaType"], "application/vnd.oci.image.layer.v1.tar+gzip");
  EXPECT_EQ(m["annotations"]["org.opencontainers.image.created"], "2023-11-14T22:13:20Z");
  EXPECT_FALSE(m["annotations"].contains("org.opencontainers.image.version"));
  nlohmann::json config = nlohmann::json::parse(st_->blobs().read(m["config"]["digest"]));
  EXPECT_EQ(config["created"], "2023-11-14T22:13:20Z");
  EXPECT_EQ(config["rootfs"]["diff_ids"].size(), 2u);
  EXPECT_EQ(config["config"]["Cmd"][0], "/bin/sh");
  EXPECT_EQ(config["config"]["Labels"]["team"], "infra");
  EXPECT_EQ(config["history"][0]["created_by"], "base");
  // No build-info.json layer: it would make every build's digest differ.
  for (const auto& l : m["layers"]) EXPECT_FALSE(l.contains("annotations"));
}

TEST_F(StoreCacheTest, SameContentAgainIsTheSameVersion) {
  Descriptor l1 = Layer("base");
  auto first = st_->commit(Image({l1}));
  auto again = st_->commit(Image({l1}));
  EXPECT_TRUE(again.unchanged);
  EXPECT_EQ(again.ref(), first.ref());
  EXPECT_EQ(st_->images("app").size(), 1u);
  // A new layer is a new version; an explicit version always commits.
  auto second = st_->commit(Image({l1, Layer("more")}));
  EXPECT_EQ(second.ref(), "app:2");
  CommitRequest pinned = Image({l1});
  pinned.version = "1.0";
  EXPECT_EQ(st_->commit(pinned).ref(), "app:1.0");
}

TEST_F(StoreCacheTest, MissingLayerIsRefused) {
  Descriptor ghost{"application/vnd.oci.image.layer.v1.tar+gzip", "sha256:" + std::string(64, 'a'), 10, {}};
  EXPECT_THROW(st_->commit(Image({ghost})), imgbake::store::StoreError);
}

}  // namespace
