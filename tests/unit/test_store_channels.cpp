// Channels (promote, rollback, protected channels) and revocation, through the Store API.
#include <gtest/gtest.h>

#include <filesystem>

#include "imgbake/store.h"
#include "imgbake/util.h"
#include "store_fixture.h"

using imgbake::store::Store;
using imgbake::store::StoreError;
using store_fixture::StoreTest;

namespace {

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

TEST_F(StoreTest, RollbackNeverLeavesTheChannelsOwnHistory) {
  // Issue: a channel that only ever held web:3 was rolled back to web:2, which it never held.
  Store st(dir_ / "store");
  st.commit(request("one"));
  st.commit(request("two"));
  st.commit(request("three"));
  st.promote("web:3", "prod", "", true);
  try {
    st.rollback("web", "prod", "");
    FAIL() << "rolled back to an image the channel never held";
  } catch (const StoreError& e) {
    EXPECT_NE(std::string(e.what()).find("has held only web:3"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("promote the image you want"), std::string::npos) << e.what();
  }
  EXPECT_EQ(st.resolve("web:prod").ref(), "web:3");
}

TEST_F(StoreTest, SecondRollbackOfAProtectedChannelStopsWhereProtectionBegan) {
  // The walk-through's case: web:1 entered prod unprotected, then prod was protected and
  // accepted web:2 and web:3. Rollback goes to web:2, and a second one is refused (web:1 was
  // never accepted by the protected channel), even though its signature would verify.
  Store st(dir_ / "store");
  st.commit(request("one"));
  st.commit(request("two"));
  st.commit(request("three"));
  st.promote("web:1", "prod", "", true);
  st.promote("web:2", "prod", "", true, /*protect=*/true);
  st.promote("web:3", "prod", "", true);
  auto ok = [](const auto&) { return true; };
  EXPECT_EQ(st.rollback("web", "prod", "bad 3", ok).ref(), "web:2");
  try {
    st.rollback("web", "prod", "bad 2", ok);
    FAIL() << "a protected channel was rolled back past what it accepted";
  } catch (const StoreError& e) {
    EXPECT_NE(std::string(e.what()).find("before it was protected"), std::string::npos) << e.what();
  }
  EXPECT_EQ(st.resolve("web:prod").ref(), "web:2");
  // history shows both moves and the refusal changed nothing.
  int rollbacks = 0;
  for (const auto& e : st.history("web", "prod")) rollbacks += e.action == "rollback" ? 1 : 0;
  EXPECT_EQ(rollbacks, 1);
}

TEST_F(StoreTest, RevokedImagesAreNotPromotedAndDescendantsFollow) {
  Store st(dir_ / "store");
  auto base = st.commit(request("base"));
  auto child_req = request("child");
  child_req.parent = base.ref();
  auto child = st.commit(child_req);
  auto revoked = st.revoke("web:1", "CVE-2026-1", true);
  EXPECT_EQ(revoked.revoked, (std::vector<std::string>{"web:1", "web:2"}));
  EXPECT_TRUE(revoked.problems.empty());
  EXPECT_THROW(st.resolve_parent("web:1"), StoreError);
  try {
    st.promote("web:2", "prod", "", true);
    FAIL() << "promote of a revoked image succeeded";
  } catch (const StoreError& e) {
    EXPECT_NE(std::string(e.what()).find("revoked"), std::string::npos);
  }
}

// A child may name its parent by a file of it (a layer's digest), which only the parent's manifest
// tells. When that manifest cannot be read, the children found otherwise are still revoked, and
// the report names the manifest: the list may be incomplete.
TEST_F(StoreTest, RevokeDescendantsNamesAnImageWhoseManifestIsUnreadable) {
  Store st(dir_ / "store");
  auto base = st.commit(request("base"));
  const std::string layer = st.manifest(base)["layers"][0]["digest"];
  auto by_ref = request("by-ref");
  by_ref.parent = base.ref();
  st.commit(by_ref);  // web:2
  auto by_layer = request("by-layer");
  by_layer.parent = layer;
  st.commit(by_layer);  // web:3
  std::filesystem::remove(st.blobs().path(base.manifest_digest));

  auto rep = st.revoke("web:1", "CVE-2026-2", true);
  EXPECT_EQ(rep.revoked, (std::vector<std::string>{"web:1", "web:2"}));
  ASSERT_EQ(rep.problems.size(), 1u);
  EXPECT_NE(rep.problems[0].find("web:1: the image manifest " + base.manifest_digest + " is unreadable"),
            std::string::npos)
      << rep.problems[0];
  EXPECT_NE(rep.problems[0].find("cannot be found"), std::string::npos) << rep.problems[0];
  EXPECT_FALSE(st.resolve("web:3").revoked);
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

// imgbake rm: a version a channel points at is refused; another is deleted from the catalog and
// index.json, audited, and its number is never given again.
TEST_F(StoreTest, RemoveDeletesAVersionButNotOneAChannelPointsAt) {
  Store st(dir_ / "store");
  st.commit(request("one"));
  st.commit(request("two"));
  auto three = st.commit(request("three"));
  st.promote("web:2", "staging", "ship it", true);
  try {
    st.remove("web:2", "mistake");
    FAIL() << "removed the image a channel points at";
  } catch (const StoreError& e) {
    EXPECT_EQ(std::string(e.what()),
              "refusing to remove web:2: channel(s) staging of web point at it; promote another "
              "image to them (or roll them back) first");
  }
  auto removed = st.remove("web:3", "signed by an untrusted key");
  EXPECT_EQ(removed.manifest_digest, three.manifest_digest);
  EXPECT_THROW(st.resolve("web:3"), StoreError);
  EXPECT_EQ(st.images("web").size(), 2u);
  auto audit = st.history("web");
  ASSERT_FALSE(audit.empty());
  EXPECT_EQ(audit.back().action, "remove");
  EXPECT_EQ(audit.back().to_ref, "web:3");
  EXPECT_EQ(audit.back().reason, "signed by an untrusted key");
  EXPECT_EQ(imgbake::util::read_file(dir_ / "store" / "index.json").find(three.manifest_digest), std::string::npos);
  EXPECT_EQ(st.commit(request("four")).ref(), "web:4") << "a removed version's number was given again";
  auto rep = st.check(nullptr);
  EXPECT_TRUE(rep.ok()) << imgbake::util::join(rep.problems, "\n");
}

}  // namespace
