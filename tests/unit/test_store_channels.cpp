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

}  // namespace
