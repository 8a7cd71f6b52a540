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

}  // namespace
