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

// Points web:1's provenance referrer at `digest`, behind the store's back.
void set_referrer_in(const fs::path& home, const std::string& digest) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((home / "catalog.db").c_str(), &db), SQLITE_OK);
  std::string sql = "UPDATE images SET referrer_digest = '" + digest + "' WHERE version = '1'";
  ASSERT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);
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

// A referrer manifest that is not a manifest (its blob is intact: the content is what was stored)
// is a problem: store check cannot tell which blobs it needs.
TEST_F(StoreTest, CheckReportsAnUnreadableReferrerManifest) {
  std::string garbage;
  {
    Store st(dir_ / "store");
    st.commit(request("one"));
    garbage = st.blobs().put_bytes("not a manifest", imgbake::oci::kManifestMediaType).digest;
    ASSERT_TRUE(st.check(nullptr).problems.empty());
  }
  set_referrer_in(dir_ / "store", garbage);
  Store st(dir_ / "store");
  auto rep = st.check(nullptr);
  EXPECT_FALSE(rep.ok());
  std::string all = imgbake::util::join(rep.problems, "\n");
  EXPECT_NE(all.find("web:1: the provenance referrer " + garbage), std::string::npos) << all;
  EXPECT_NE(all.find("not JSON"), std::string::npos) << all;
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

// An image whose manifest cannot be read: the blobs only it names look unreferenced, so gc
// removes no blob at all and names the manifest.
TEST_F(StoreTest, GcRemovesNoBlobWhileAManifestIsUnreadable) {
  Store st(dir_ / "store");
  auto img = st.commit(request("one"));
  const std::string layer = st.manifest(img)["layers"][0]["digest"];
  const std::string config = st.manifest(img)["config"]["digest"];
  auto stray = st.blobs().put_bytes("stray", "application/octet-stream");
  fs::remove(st.blobs().path(img.manifest_digest));
  auto rep = st.gc();
  EXPECT_EQ(rep.removed, 0u);
  EXPECT_EQ(rep.left, 3u);  // the config, the layer and the stray blob
  ASSERT_EQ(rep.problems.size(), 1u);
  EXPECT_NE(rep.problems[0].find("web:1: the image manifest " + img.manifest_digest + " is unreadable"),
            std::string::npos)
      << rep.problems[0];
  EXPECT_TRUE(st.blobs().exists(layer));
  EXPECT_TRUE(st.blobs().exists(config));
  EXPECT_TRUE(st.blobs().exists(stray.digest));
  // store check reports the missing manifest once, as a missing blob.
  auto check = st.check(nullptr);
  ASSERT_EQ(check.problems.size(), 1u) << imgbake::util::join(check.problems, "\n");
  EXPECT_NE(check.problems[0].find("is missing"), std::string::npos) << check.problems[0];
}

// A blob entry whose size cannot be read (here a dangling symbolic link) is removed, named in a
// warning, and not counted: before, its size error added (uintmax_t)-1 to the bytes freed.
TEST_F(StoreTest, GcWarnsAboutASizeItCannotReadAndDoesNotCountIt) {
  Store st(dir_ / "store");
  st.commit(request("one"));
  auto stray = st.blobs().put_bytes("stray", "application/octet-stream");
  const fs::path dangling = st.blobs().path("sha256:" + std::string(64, 'e'));
  fs::create_symlink(dir_ / "nowhere", dangling);
  auto rep = st.gc();
  EXPECT_EQ(rep.removed, 2u);
  EXPECT_EQ(rep.bytes, 5u);  // "stray"
  ASSERT_EQ(rep.warnings.size(), 1u) << imgbake::util::join(rep.warnings, "\n");
  EXPECT_NE(rep.warnings[0].find("cannot read the size of " + dangling.string() + ": "), std::string::npos)
      << rep.warnings[0];
  EXPECT_FALSE(fs::exists(fs::symlink_status(dangling)));
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
