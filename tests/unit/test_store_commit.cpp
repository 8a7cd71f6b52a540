// Store::commit: versions, layer blobs, build-info.json.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "imgbake/cancel.h"
#include "imgbake/layer.h"
#include "imgbake/store.h"
#include "imgbake/util.h"
#include "store_fixture.h"

namespace fs = std::filesystem;
using imgbake::store::CommitRequest;
using imgbake::store::Store;
using imgbake::store::StoreError;
using store_fixture::StoreTest;

namespace {

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

TEST_F(StoreTest, TemplateChannelsMoveAtCommitAndProtectedOnesStayProtected) {
  Store st(dir_ / "store");
  auto one = request("one");
  one.channels = {"staging"};
  EXPECT_EQ(st.commit(one).channels, std::vector<std::string>{"staging"});
  st.promote("web:1", "prod", "", true, /*protect=*/true);
  auto untrusted = request("two");
  untrusted.channels = {"prod"};
  EXPECT_THROW(st.commit(untrusted), StoreError);
  EXPECT_EQ(st.resolve("web:prod").ref(), "web:1");

  auto trusted = request("three");
  trusted.channels = {"prod", "staging"};
  trusted.signature_trusted = true;
  EXPECT_EQ(st.commit(trusted).ref(), "web:2");  // the refused commit left no version behind
  EXPECT_EQ(st.resolve("web:prod").ref(), "web:2");
  EXPECT_EQ(st.resolve("web:staging").ref(), "web:2");
  std::map<std::string, bool> is_protected;
  for (const auto& c : st.channels("web")) is_protected[c.channel] = c.is_protected;
  EXPECT_EQ(is_protected, (std::map<std::string, bool>{{"prod", true}, {"staging", false}}));
  auto prod = st.history("web", "prod");
  ASSERT_EQ(prod.size(), 2u);
  EXPECT_EQ(prod[1].action, "promote");
  EXPECT_EQ(prod[1].from_ref, "web:1");
  EXPECT_EQ(prod[1].to_ref, "web:2");
  EXPECT_EQ(prod[1].reason, "assigned by the template at build time");
  EXPECT_TRUE(st.check(nullptr).ok());
}

// A container image whose config gives a layer the wrong diff_id (the digest of its uncompressed
// tar) is refused when it is committed, before anything is signed; the right one commits, and
// the checked pair is not decompressed again.
TEST_F(StoreTest, ACommittedLayerMustHaveTheDiffIdItsConfigGives) {
  Store st(dir_ / "store");
  fs::create_directories(dir_ / "tree" / "etc");
  std::ofstream(dir_ / "tree" / "etc" / "motd") << "hello\n";
  imgbake::layer::LayerBlob b =
      imgbake::layer::write_tree(dir_ / "tree", dir_ / "layer.tar.gz", {}, imgbake::global_cancel());
  imgbake::oci::Descriptor blob = st.blobs().put_file(b.file, b.media_type);
  const std::string lie = "sha256:" + std::string(64, 'a');
  CommitRequest req;
  req.name = "app";
  req.builder_type = "rootfs";
  req.embed_build_info = false;
  req.oci = imgbake::oci::Image{};
  req.oci->layers.push_back({blob, lie});
  try {
    st.commit(req);
    FAIL() << "a layer with a wrong diff_id was committed";
  } catch (const StoreError& e) {
    EXPECT_EQ(std::string(e.what()), "cannot commit app: layer 1 (" + blob.digest + ") unpacks to " + b.diff_id +
                                         ", but the image config gives its diff_id as " + lie +
                                         "; refusing an image whose config does not describe its layers (unpacking "
                                         "it would fail)");
  }
  EXPECT_TRUE(st.images("app").empty());
  req.oci->layers[0].diff_id = b.diff_id;
  EXPECT_EQ(st.commit(req).ref(), "app:1");
  EXPECT_TRUE(st.check(nullptr).ok());
}

}  // namespace
