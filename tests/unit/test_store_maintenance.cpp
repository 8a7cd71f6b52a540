// store check (the audit chain, blobs) and gc, through the Store API.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <filesystem>
#include <fstream>

#include "imgbake/store.h"
#include "imgbake/util.h"
#include "store_fixture.h"

namespace fs = std::filesystem;
using imgbake::store::Store;
using store_fixture::StoreTest;

namespace {

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
