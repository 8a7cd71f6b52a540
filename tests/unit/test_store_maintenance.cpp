// store check (the audit chain, blobs) and gc, through the Store API.
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "imgbake/publish.h"
#include "imgbake/store.h"
#include "imgbake/util.h"
#include "store_fixture.h"

namespace fs = std::filesystem;
using imgbake::store::Store;
using store_fixture::StoreTest;

namespace {

// Runs `sql` on the catalog behind the store's back.
void tamper(const fs::path& home, const std::string& sql) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((home / "catalog.db").c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);
}

// Points web:1's provenance referrer at `digest`, behind the store's back.
void set_referrer_in(const fs::path& home, const std::string& digest) {
  tamper(home, "UPDATE images SET referrer_digest = '" + digest + "' WHERE version = '1'");
}

std::string problems_of(const imgbake::store::CheckReport& rep) {
  std::string all;
  for (const auto& p : rep.problems) all += p + "\n";
  return all;
}

TEST_F(StoreTest, EveryAuditEntryIsSignedAndAnUnsignedOneIsReported) {
  {
    Store st(dir_ / "store");
    st.commit(request("one"));
    st.promote("web:1", "staging", "reason", true);
    st.label("web:1", {{"owner", "web"}});
    for (const auto& e : st.history("web")) EXPECT_NE(e.signature.find("\"keyid\":\"sha256:"), std::string::npos);
    EXPECT_TRUE(st.check(nullptr).ok()) << problems_of(st.check(nullptr));
  }
  // What a store written before entries were signed holds, or one whose signatures were removed.
  tamper(dir_ / "store", "UPDATE audit SET signature = '' WHERE seq IN (1, 2)");
  Store st(dir_ / "store");
  auto rep = st.check(nullptr);
  EXPECT_NE(problems_of(rep).find("audit: entries 1-2 are not signed"), std::string::npos) << problems_of(rep);
  // A signature moved onto another entry does not verify there.
  auto history = st.history("web");
  ASSERT_EQ(history.size(), 3U);
  tamper(dir_ / "store", "UPDATE audit SET signature = '" + history[2].signature + "' WHERE seq = 1");
  rep = st.check(nullptr);
  EXPECT_NE(problems_of(rep).find("audit: entry 1 (commit web:1): its signature does not verify"), std::string::npos)
      << problems_of(rep);
  EXPECT_FALSE(st.audit_problems(st.resolve("web:1"), imgbake::trusted_keys(st)).empty());
}

TEST_F(StoreTest, ACatalogStateTheAuditLogDoesNotReplayToIsReported) {
  {
    Store st(dir_ / "store");
    st.commit(request("one"));
    st.commit(request("two"));
    st.promote("web:1", "prod", "first", true, /*protect=*/true);
    st.revoke("web:2", "CVE-2026-0002", false);
    ASSERT_TRUE(st.check(nullptr).ok()) << problems_of(st.check(nullptr));
  }
  tamper(dir_ / "store", "UPDATE images SET revoked = 0, revoked_reason = '' WHERE version = '2'");
  tamper(dir_ / "store", "UPDATE channels SET protected = 0 WHERE channel = 'prod'");
  Store st(dir_ / "store");
  const std::string all = problems_of(st.check(nullptr));
  EXPECT_NE(all.find("web:2: audit entry 4 revoked it (CVE-2026-0002) but the catalog says it is not revoked"),
            std::string::npos)
      << all;
  EXPECT_NE(all.find("channel 'prod' of web is not protected in the catalog but audit entry 3 says it is protected"),
            std::string::npos)
      << all;
  EXPECT_EQ(st.audit_problems(st.resolve("web:1"), imgbake::trusted_keys(st)), std::vector<std::string>{});
  EXPECT_FALSE(st.audit_problems(st.resolve("web:2"), imgbake::trusted_keys(st)).empty());
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

// Files outside the store that a link inside its layout points at.
fs::path PreciousDir(const fs::path& dir) {
  fs::path outside = dir / "outside";
  fs::create_directories(outside);
  std::ofstream(outside / "precious") << "keep me";
  std::ofstream(outside / ("0" + std::string(63, 'a'))) << "looks like a blob";
  return outside;
}

TEST_F(StoreTest, AStoreWhoseLayoutHoldsASymlinkIsRefused) {
  int n = 0;
  for (const char* linked : {"tmp", "blobs/sha256", "blobs"}) {
    fs::path home = dir_ / ("store" + std::to_string(++n));
    fs::create_directories((home / linked).parent_path());
    fs::path outside = PreciousDir(dir_ / ("outside" + std::to_string(n)));
    fs::create_directory_symlink(outside, home / linked);
    try {
      Store st(home);
      st.gc();
      ADD_FAILURE() << "a store with " << linked << " a symbolic link was opened";
    } catch (const imgbake::store::StoreError& e) {
      EXPECT_EQ(std::string(e.what()), "the store " + home.string() + " is refused: " + linked +
                                           " is a symbolic link (to " + outside.string() +
                                           "); imgbake never follows links inside a store, where gc would delete "
                                           "through them. Replace it with the directory or file itself, or point "
                                           "IMGBAKE_HOME at the real store");
    }
    EXPECT_TRUE(fs::exists(outside / "precious")) << linked;
    EXPECT_TRUE(fs::exists(outside / ("0" + std::string(63, 'a')))) << linked;
  }
}

// A link made while the store is open (after the check on opening) does not take gc outside.
TEST_F(StoreTest, GcRefusesALinkMadeWhileTheStoreIsOpen) {
  Store st(dir_ / "store");
  st.commit(request("one"));
  fs::path outside = PreciousDir(dir_);
  fs::remove_all(st.blobs().temp_dir());
  fs::create_directory_symlink(outside, st.blobs().temp_dir());
  EXPECT_THROW(st.gc(), imgbake::store::StoreError);
  EXPECT_TRUE(fs::exists(outside / "precious"));
}

// What `f` returns, run in a child process; nullopt when it did not finish within a minute (the
// child is killed): a reader that hangs fails the test instead of hanging it.
std::optional<std::string> RunInChild(const std::function<std::string()>& f) {
  int fds[2];
  if (pipe(fds) != 0) return std::nullopt;
  pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    std::string out = f();
    ssize_t ignored = write(fds[1], out.data(), out.size());
    (void)ignored;
    _exit(0);
  }
  close(fds[1]);
  std::string out;
  bool finished = false;
  for (int waited_ms = 0; waited_ms < 60000;) {
    pollfd p{fds[0], POLLIN, 0};
    if (poll(&p, 1, 100) <= 0) {
      waited_ms += 100;
      continue;
    }
    char buf[4096];
    ssize_t n = read(fds[0], buf, sizeof buf);
    if (n <= 0) {
      finished = true;
      break;
    }
    out.append(buf, static_cast<size_t>(n));
  }
  close(fds[0]);
  if (!finished) kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  if (!finished) return std::nullopt;
  return out;
}

// A FIFO, or a link to /dev/zero, in a blob's place: store check reports it instead of waiting
// for a writer or reading forever, and reading the blob is an error.
TEST_F(StoreTest, CheckReportsABlobReplacedByAFifoOrALinkWithoutHanging) {
  std::string layer, config;
  fs::path home = dir_ / "store";
  {
    Store st(home);
    auto img = st.commit(request("one"));
    layer = st.manifest(img)["layers"][0]["digest"];
    config = st.manifest(img)["config"]["digest"];
  }
  fs::path layer_path = home / "blobs" / "sha256" / layer.substr(7);
  fs::path config_path = home / "blobs" / "sha256" / config.substr(7);
  fs::remove(layer_path);
  ASSERT_EQ(mkfifo(layer_path.c_str(), 0644), 0);
  fs::remove(config_path);
  fs::create_symlink("/dev/zero", config_path);

  std::optional<std::string> problems = RunInChild([&] {
    Store st(home);
    return imgbake::util::join(st.check(nullptr).problems, "\n");
  });
  ASSERT_TRUE(problems.has_value()) << "store check hung on a FIFO or /dev/zero";
  EXPECT_NE(problems->find("blob " + layer + " is a FIFO (" + layer_path.string() + "); a blob must be a regular file"),
            std::string::npos)
      << *problems;
  EXPECT_NE(problems->find("blob " + config + " is a symbolic link (" + config_path.string() +
                           "); a blob must be a regular file"),
            std::string::npos)
      << *problems;

  std::optional<std::string> read = RunInChild([&] {
    Store st(home);
    try {
      return "read " + std::to_string(st.blobs().read(config).size()) + " bytes";
    } catch (const imgbake::store::StoreError& e) {
      return std::string(e.what());
    }
  });
  ASSERT_TRUE(read.has_value()) << "reading a blob that links to /dev/zero hung";
  EXPECT_EQ(*read,
            "blob " + config + " is a symbolic link (" + config_path.string() + "); a blob must be a regular file");
}

// index.json whose entries the catalog cannot explain was edited: store check says so (the edited
// copy is kept). One merely behind the catalog (a command killed before writing it) is healed
// silently.
TEST_F(StoreTest, CheckReportsAnEditedIndexJson) {
  fs::path home = dir_ / "store";
  std::string one, two;
  {
    Store st(home);
    one = st.commit(request("one")).manifest_digest;
    two = st.commit(request("two")).manifest_digest;
  }
  const std::string derived = imgbake::util::read_file(home / "index.json");
  auto rewrite = [&](const std::function<void(nlohmann::json&)>& edit) {
    nlohmann::json index = nlohmann::json::parse(derived);
    edit(index);
    std::ofstream(home / "index.json", std::ios::trunc) << index.dump(2);
  };
  auto kept_copies = [&] {
    std::vector<fs::path> out;
    for (const auto& e : fs::directory_iterator(home))
      if (e.path().filename().string().starts_with("index.json.edited-")) out.push_back(e.path());
    return out;
  };
  // Behind the catalog: web:2's entries missing.
  rewrite([&](nlohmann::json& index) {
    nlohmann::json kept = nlohmann::json::array();
    for (const auto& e : index["manifests"])
      if (e["digest"] != two) kept.push_back(e);
    index["manifests"] = kept;
  });
  {
    Store st(home);
    auto rep = st.check(nullptr);
    EXPECT_TRUE(rep.ok()) << imgbake::util::join(rep.problems, "\n");
    EXPECT_TRUE(kept_copies().empty());
    EXPECT_EQ(imgbake::util::read_file(home / "index.json"), derived);
  }
  // Edited: web:1 pointed at web:2's manifest.
  rewrite([&](nlohmann::json& index) {
    for (auto& e : index["manifests"])
      if (e.contains("annotations") && e["annotations"]["org.opencontainers.image.ref.name"] == "web:1")
        e["digest"] = two;
  });
  Store st(home);
  EXPECT_EQ(imgbake::util::read_file(home / "index.json"), derived);
  std::vector<fs::path> kept = kept_copies();
  ASSERT_EQ(kept.size(), 1u);
  auto rep = st.check(nullptr);
  ASSERT_EQ(rep.problems.size(), 1u) << imgbake::util::join(rep.problems, "\n");
  EXPECT_EQ(rep.problems[0], "index.json had been edited outside imgbake ('web:1' points at " + two +
                                 ", which the catalog does not say); imgbake rewrote it from the catalog and kept the "
                                 "edited copy as " +
                                 kept[0].string() + " (compare them, then remove that file)");
}

}  // namespace
