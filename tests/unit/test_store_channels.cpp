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
