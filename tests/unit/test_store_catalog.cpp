// The store's catalog and OCI layout, through the Store API (no CLI): refs, index.json.
#include <gtest/gtest.h>

#include <filesystem>

#include "imgbake/store.h"
#include "imgbake/util.h"
#include "store_fixture.h"

namespace fs = std::filesystem;
using imgbake::store::Store;
using imgbake::store::StoreError;
using store_fixture::StoreTest;

namespace {

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

}  // namespace
