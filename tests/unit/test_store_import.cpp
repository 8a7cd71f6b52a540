// The store side of a pull: blobs streamed in through BlobWriter, then Store::import_image.
// Store A commits an image as a build does; its blobs travel to store B in small chunks
// (as a registry download would deliver them) and B catalogues it.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "imgbake/cancel.h"
#include "imgbake/layer.h"
#include "imgbake/process.h"
#include "imgbake/provenance.h"
#include "imgbake/publish.h"
#include "imgbake/store.h"
#include "imgbake/util.h"
#include "tool_check.h"

namespace fs = std::filesystem;
using imgbake::oci::Descriptor;
using imgbake::store::BlobWriter;
using imgbake::store::CommitRequest;
using imgbake::store::ImageRecord;
using imgbake::store::ImportRequest;
using imgbake::store::Store;
using imgbake::store::StoreError;
namespace provenance = imgbake::provenance;

namespace {

constexpr size_t kChunk = 7;  // small and odd, so that chunk borders fall anywhere

std::vector<fs::path> temp_files(const Store& st) {
  std::vector<fs::path> out;
  std::error_code ec;
  if (fs::exists(st.blobs().temp_dir(), ec))
    for (const auto& e : fs::directory_iterator(st.blobs().temp_dir())) out.push_back(e.path());
  return out;
}

struct Command {
  int status = -1;
  std::string out;
};

Command run(const std::vector<std::string>& argv) {
  Command c;
  imgbake::CancelToken cancel;
  imgbake::ProcessSpec spec;
  spec.argv = argv;
  spec.timeout = std::chrono::seconds(60);
  c.status = imgbake::run_process(
      spec, [&](std::string_view l) { c.out += std::string(l) + "\n"; }, [](std::string_view) {}, cancel);
  return c;
}

class StoreImportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("imgbake-import-test-" + imgbake::util::uuid_v4());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string file(const std::string& name, const std::string& content) {
    fs::path p = dir_ / name;
    std::ofstream(p) << content;
    return p.string();
  }

  // An image committed the way `imgbake build` commits one: files, build-info.json,
  // labels, and a signed provenance statement naming the manifest and every layer.
  ImageRecord commit_built_image(Store& st, const std::string& version = "1.4.0", const std::string& conf = "") {
    CommitRequest r;
    r.name = "web";
    r.version = version;
    r.builder_type = "file";
    r.template_digest = "sha256:" + std::string(64, 'a');
    r.git_commit = "8fb59b3ddf5a813bfbd64c42f600806034922420";
    r.parent = "sha256:" + std::string(64, 'b');
    r.labels = {{"team", "platform"}, {"io.imgbake.build", "web"}};
    r.files.push_back({file("web.conf", "listen 80;\n" + version + conf), 0, "", ""});
    r.files.push_back({file("disk.raw", std::string(1000, 'x') + version), 0, "", ""});
    r.make_provenance = [&](const std::string& v, const std::string& manifest_digest,
                            const std::vector<Descriptor>& layers) {
      provenance::BuildFacts facts;
      facts.builder_type = "file";
      facts.build_name = "web";
      facts.subjects.push_back({"web:" + v, manifest_digest.substr(7)});
      for (const auto& l : layers)
        facts.subjects.push_back({l.annotations.at("org.opencontainers.image.title"), l.digest.substr(7)});
      return provenance::sign_envelope(key_, provenance::kInTotoPayloadType, provenance::make_statement(facts).dump());
    };
    return st.commit(r);
  }

  // What a pull does: every blob streamed through a BlobWriter in small chunks; the
  // manifests are handed to import_image as bytes. `skip` leaves one blob behind.
  static void copy_blobs(const Store& from, const ImageRecord& img, Store& to, const std::string& skip = "") {
    for (const Descriptor& d : from.blobs_of(img)) {
      if (d.media_type == imgbake::oci::kManifestMediaType || d.digest == skip) continue;
      std::string content = imgbake::util::read_file(from.blobs().path(d.digest));
      BlobWriter w(to.blobs());
      for (size_t off = 0; off < content.size(); off += kChunk)
        w.write(content.data() + off, std::min(kChunk, content.size() - off));
      Descriptor stored = w.commit(d.digest, d.size, d.media_type);
      ASSERT_EQ(stored.digest, d.digest);
    }
  }

  static ImportRequest pulled(const Store& from, const ImageRecord& img) {
    ImportRequest req;
    req.name = img.name;
    req.manifest_bytes = from.blobs().read(img.manifest_digest);
    if (!img.referrer_digest.empty()) req.referrer_manifest_bytes = from.blobs().read(img.referrer_digest);
    req.source = "127.0.0.1:5000/team/" + img.name + "@" + img.manifest_digest;
    return req;
  }

  std::vector<provenance::VerifyingKey> trusted() const {
    std::vector<provenance::VerifyingKey> keys;
    keys.push_back(provenance::VerifyingKey::from_pem(key_.public_pem()));
    return keys;
  }

  imgbake::store::CheckReport check(const Store& st) const {
    auto keys = trusted();
    return st.check([&](const ImageRecord& img) {
      auto v = imgbake::verify_image(st, img, keys);
      return v.ok ? std::string() : imgbake::util::join(v.problems, "; ");
    });
  }

  fs::path dir_;
  provenance::SigningKey key_ = provenance::SigningKey::generate();
};

TEST_F(StoreImportTest, PulledImageKeepsItsDigestFactsAndProvenance) {
  Store a(dir_ / "a");
  ImageRecord built = commit_built_image(a);
  Store b(dir_ / "b");
  copy_blobs(a, built, b);
  ImageRecord got = b.import_image(pulled(a, built));

  EXPECT_EQ(got.ref(), "web:1.4.0");  // the version the image says it is
  EXPECT_EQ(got.manifest_digest, built.manifest_digest);
  EXPECT_EQ(got.manifest_size, built.manifest_size);
  EXPECT_EQ(b.blobs().read(got.manifest_digest), a.blobs().read(built.manifest_digest));
  EXPECT_EQ(b.resolve("web:1.4.0").id, got.id);
  EXPECT_EQ(got.labels, built.labels);
  EXPECT_EQ(got.builder_type, "file");
  EXPECT_EQ(got.template_digest, built.template_digest);
  EXPECT_EQ(got.git_commit, built.git_commit);
  EXPECT_EQ(got.parent, built.parent);
  EXPECT_EQ(got.provenance_digest, built.provenance_digest);
  EXPECT_EQ(got.referrer_digest, built.referrer_digest);
  EXPECT_EQ(got.referrer_size, built.referrer_size);
  EXPECT_FALSE(got.provenance_digest.empty());

  auto history = b.history("web");
  ASSERT_EQ(history.size(), 1u);
  EXPECT_EQ(history[0].action, "pull");
  EXPECT_EQ(history[0].from_ref, "127.0.0.1:5000/team/web@" + built.manifest_digest);
  EXPECT_EQ(history[0].to_ref, "web:1.4.0");
  EXPECT_NE(history[0].detail.find(built.manifest_digest), std::string::npos);

  auto verified = imgbake::verify_image(b, got, trusted());
  EXPECT_TRUE(verified.ok) << imgbake::util::join(verified.problems, "\n");
  auto rep = check(b);
  EXPECT_TRUE(rep.ok()) << imgbake::util::join(rep.problems, "\n");
  EXPECT_TRUE(rep.notes.empty()) << imgbake::util::join(rep.notes, "\n");  // no orphan, no temp file
  EXPECT_EQ(rep.images, 1u);

  // index.json names the image and its referrer, as it does for a committed one.
  auto index = nlohmann::json::parse(imgbake::util::read_file(b.home() / "index.json"));
  ASSERT_EQ(index["manifests"].size(), 2u);
  EXPECT_EQ(index["manifests"][0]["digest"], built.manifest_digest);
  EXPECT_EQ(index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"], "web:1.4.0");
  EXPECT_EQ(index["manifests"][1]["digest"], built.referrer_digest);
  EXPECT_EQ(index["manifests"][1]["artifactType"], imgbake::oci::kProvenanceArtifactType);

  REQUIRE_TOOL("skopeo");
  Command inspect = run({"skopeo", "inspect", "oci:" + b.home().string() + ":web:1.4.0"});
  ASSERT_EQ(inspect.status, 0) << inspect.out;
  auto j = nlohmann::json::parse(inspect.out);
  EXPECT_EQ(j["Digest"], built.manifest_digest);
  EXPECT_EQ(j["Labels"]["team"], "platform");
  EXPECT_EQ(j["Layers"].size(), 3u);  // web.conf, disk.raw, build-info.json
}

TEST_F(StoreImportTest, ImportedUnderAnotherNameStillVerifies) {
  Store a(dir_ / "a");
  ImageRecord built = commit_built_image(a);
  Store b(dir_ / "b");
  copy_blobs(a, built, b);
  ImportRequest req = pulled(a, built);
  req.name = "mirror-web";
  req.version = "7";
  ImageRecord got = b.import_image(req);
  EXPECT_EQ(got.ref(), "mirror-web:7");
  EXPECT_EQ(got.manifest_digest, built.manifest_digest);
  // The statement names the image as it was built (web:1.4.0); the digest is what binds it.
  auto verified = imgbake::verify_image(b, got, trusted());
  EXPECT_TRUE(verified.ok) << imgbake::util::join(verified.problems, "\n");
  EXPECT_TRUE(check(b).ok());
}

// A referrer may list more than the DSSE envelope (test results, an SBOM, a signature): gc keeps
// every blob it lists, store check hashes each, and a push uploads each.
TEST_F(StoreImportTest, GcKeepsEveryLayerOfAReferrer) {
  Store a(dir_ / "a");
  ImageRecord built = commit_built_image(a);
  Store b(dir_ / "b");
  copy_blobs(a, built, b);
  ImportRequest req = pulled(a, built);
  nlohmann::json ref = nlohmann::json::parse(req.referrer_manifest_bytes);
  const Descriptor results = b.blobs().put_bytes(R"({"tests":"passed"})", "application/vnd.example.test-results+json");
  ref["layers"].push_back({{"mediaType", results.media_type}, {"digest", results.digest}, {"size", results.size}});
  req.referrer_manifest_bytes = ref.dump();
  ImageRecord got = b.import_image(req);

  auto pushed = b.blobs_of(got);
  EXPECT_TRUE(
      std::any_of(pushed.begin(), pushed.end(), [&](const Descriptor& d) { return d.digest == results.digest; }));
  auto gc = b.gc();
  EXPECT_EQ(gc.removed, 0u);
  EXPECT_TRUE(b.blobs().exists(results.digest)) << "gc removed a layer of the referrer";
  auto rep = check(b);
  EXPECT_TRUE(rep.ok()) << imgbake::util::join(rep.problems, "\n");

  // store check hashes the referrer's layers too.
  fs::remove(b.blobs().path(results.digest));
  rep = check(b);
  EXPECT_FALSE(rep.ok());
  EXPECT_NE(imgbake::util::join(rep.problems, "\n").find(results.digest), std::string::npos)
      << imgbake::util::join(rep.problems, "\n");
}

TEST_F(StoreImportTest, BlobWriterRefusesContentThatIsNotTheExpectedBlob) {
  Store st(dir_ / "s");
  const std::string right = "sha256:" + imgbake::util::sha256_hex("hello, world");
  {
    BlobWriter w(st.blobs());
    w.write("hello, ", 7);
    ASSERT_EQ(temp_files(st).size(), 1u);  // it streams into tmp/, not into blobs/
    w.write("w0rld", 5);
    EXPECT_EQ(w.bytes_written(), 12u);
    try {
      w.commit(right, 12, "application/octet-stream");
      ADD_FAILURE() << "a blob with the wrong content was committed";
    } catch (const StoreError& e) {
      EXPECT_NE(std::string(e.what()).find(right), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("sha256:" + imgbake::util::sha256_hex("hello, w0rld")), std::string::npos)
          << e.what();
    }
    EXPECT_TRUE(temp_files(st).empty());
  }
  EXPECT_FALSE(st.blobs().exists(right));
  EXPECT_FALSE(st.blobs().exists("sha256:" + imgbake::util::sha256_hex("hello, w0rld")));

  {
    BlobWriter w(st.blobs());
    w.write("hello, world", 12);
    EXPECT_THROW(w.commit(right, 13, "application/octet-stream"), StoreError);  // right digest, wrong size
  }
  {
    BlobWriter w(st.blobs());
    w.write("interrupted", 11);
  }  // never committed: gone
  EXPECT_TRUE(temp_files(st).empty());
  EXPECT_TRUE(st.blobs().list().empty());

  BlobWriter w(st.blobs());
  w.write("hello, world", 12);
  Descriptor d = w.commit(right, 12, "application/octet-stream");
  EXPECT_EQ(d.digest, right);
  EXPECT_EQ(imgbake::util::read_file(st.blobs().path(right)), "hello, world");
  EXPECT_TRUE(temp_files(st).empty());
  EXPECT_EQ(st.blobs().check(right), "");
}

TEST_F(StoreImportTest, MissingBlobIsNamed) {
  Store a(dir_ / "a");
  ImageRecord built = commit_built_image(a);
  auto m = a.manifest(built);
  const std::string disk = m["layers"][1]["digest"];
  Store b(dir_ / "b");
  copy_blobs(a, built, b, disk);
  try {
    b.import_image(pulled(a, built));
    ADD_FAILURE() << "an image with a missing layer was imported";
  } catch (const StoreError& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find(disk), std::string::npos) << msg;
    EXPECT_NE(msg.find("disk.raw"), std::string::npos) << msg;
    EXPECT_NE(msg.find("not in the store"), std::string::npos) << msg;
  }
  EXPECT_TRUE(b.images().empty());
  EXPECT_THROW(b.resolve("web:1.4.0"), StoreError);
}

TEST_F(StoreImportTest, ImportingTheSameImageAgainReturnsTheExistingRecord) {
  Store a(dir_ / "a");
  ImageRecord built = commit_built_image(a);
  Store b(dir_ / "b");
  copy_blobs(a, built, b);
  ImageRecord first = b.import_image(pulled(a, built));
  ImageRecord again = b.import_image(pulled(a, built));
  EXPECT_EQ(again.id, first.id);
  EXPECT_EQ(again.ref(), "web:1.4.0");
  ImportRequest same_version = pulled(a, built);
  same_version.version = "1.4.0";
  EXPECT_EQ(b.import_image(same_version).id, first.id);
  EXPECT_EQ(b.images().size(), 1u);
  EXPECT_EQ(b.history("web").size(), 1u);  // one pull, not three
}

TEST_F(StoreImportTest, VersionThatHoldsAnotherImageIsRefused) {
  Store a(dir_ / "a");
  ImageRecord built = commit_built_image(a);
  Store b(dir_ / "b");
  ImageRecord local = commit_built_image(b, "1.4.0", "local change");  // web:1.4.0 too, other content
  ASSERT_NE(local.manifest_digest, built.manifest_digest);
  copy_blobs(a, built, b);
  try {
    b.import_image(pulled(a, built));
    ADD_FAILURE() << "the pulled image replaced web:1.4.0";
  } catch (const StoreError& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("web:1.4.0 already exists"), std::string::npos) << msg;
    EXPECT_NE(msg.find(local.manifest_digest), std::string::npos) << msg;
    EXPECT_NE(msg.find("another version"), std::string::npos) << msg;
  }
  ImportRequest explicit_version = pulled(a, built);
  explicit_version.version = "1.4.0";
  EXPECT_THROW(b.import_image(explicit_version), StoreError);
  EXPECT_EQ(b.resolve("web:1.4.0").manifest_digest, local.manifest_digest);

  explicit_version.version = "1.4.0-upstream";
  EXPECT_EQ(b.import_image(explicit_version).manifest_digest, built.manifest_digest);
  EXPECT_TRUE(check(b).ok());
}

TEST_F(StoreImportTest, ReferrerAboutAnotherImageIsRefused) {
  Store a(dir_ / "a");
  ImageRecord one = commit_built_image(a, "1");
  ImageRecord two = commit_built_image(a, "2");
  Store b(dir_ / "b");
  copy_blobs(a, one, b);
  copy_blobs(a, two, b);
  ImportRequest req = pulled(a, one);
  req.referrer_manifest_bytes = a.blobs().read(two.referrer_digest);
  try {
    b.import_image(req);
    ADD_FAILURE() << "a provenance referrer of another image was attached";
  } catch (const StoreError& e) {
    EXPECT_NE(std::string(e.what()).find(two.manifest_digest), std::string::npos) << e.what();
  }
  EXPECT_TRUE(b.images().empty());
}

TEST_F(StoreImportTest, ImageNotBuiltByImgbakeImports) {
  REQUIRE_TOOL("tar");
  fs::create_directories(dir_ / "rootfs" / "etc");
  std::ofstream(dir_ / "rootfs" / "etc" / "motd") << "hello from elsewhere\n";
  ASSERT_EQ(run({"tar", "-C", (dir_ / "rootfs").string(), "-cf", (dir_ / "layer.tar").string(), "etc"}).status, 0);
  const std::string layer = imgbake::util::read_file(dir_ / "layer.tar");
  const std::string layer_digest = "sha256:" + imgbake::util::sha256_hex(layer);
  nlohmann::ordered_json config = {
      {"architecture", "amd64"},
      {"os", "linux"},
      {"created", "2024-05-01T10:00:00Z"},
      {"config", {{"Labels", {{"maintainer", "someone else"}, {"org.opencontainers.image.version", "3.1"}}}}},
      {"rootfs", {{"type", "layers"}, {"diff_ids", {layer_digest}}}}};
  const std::string config_bytes = config.dump();
  nlohmann::ordered_json manifest = {
      {"schemaVersion", 2},
      {"mediaType", imgbake::oci::kManifestMediaType},
      {"config",
       {{"mediaType", imgbake::oci::kConfigMediaType},
        {"digest", "sha256:" + imgbake::util::sha256_hex(config_bytes)},
        {"size", config_bytes.size()}}},
      {"layers",
       {{{"mediaType", "application/vnd.oci.image.layer.v1.tar"}, {"digest", layer_digest}, {"size", layer.size()}}}}};
  // Spaced as another tool might write it: the bytes, not a re-serialization, give the digest.
  const std::string manifest_bytes = manifest.dump(3);

  Store st(dir_ / "s");
  for (const std::string* blob : {&layer, &config_bytes}) {
    BlobWriter w(st.blobs());
    for (size_t off = 0; off < blob->size(); off += kChunk)
      w.write(blob->data() + off, std::min(kChunk, blob->size() - off));
    w.commit("sha256:" + imgbake::util::sha256_hex(*blob), blob->size(), "application/octet-stream");
  }
  ImportRequest req;
  req.name = "motd";
  req.manifest_bytes = manifest_bytes;
  req.source = "registry.example.com/motd:3.1";
  ImageRecord got = st.import_image(req);
  EXPECT_EQ(got.ref(), "motd:3.1");
  EXPECT_EQ(got.manifest_digest, "sha256:" + imgbake::util::sha256_hex(manifest_bytes));
  EXPECT_EQ(got.created, "2024-05-01T10:00:00Z");
  EXPECT_EQ(got.builder_type, "");
  EXPECT_TRUE(got.provenance_digest.empty());
  EXPECT_EQ(got.labels.at("maintainer"), "someone else");
  EXPECT_EQ(got.labels.at("org.opencontainers.image.version"), "3.1");  // the image's own label, kept
  auto rep = st.check(nullptr);
  EXPECT_TRUE(rep.ok()) << imgbake::util::join(rep.problems, "\n");

  REQUIRE_TOOL("skopeo");
  Command copy =
      run({"skopeo", "copy", "oci:" + st.home().string() + ":motd:3.1", "dir:" + (dir_ / "copied").string()});
  ASSERT_EQ(copy.status, 0) << copy.out;
  EXPECT_EQ(imgbake::util::read_file(dir_ / "copied" / layer_digest.substr(7)), layer);
}

TEST_F(StoreImportTest, ForeignImageWithoutVersionGetsTheNextNumber) {
  const std::string layer = "not really a tar";  // an uncompressed layer: its diff_id is its digest
  const std::string config_bytes =
      std::string(R"({"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[")") +
      "sha256:" + imgbake::util::sha256_hex(layer) + R"("]}})";
  nlohmann::ordered_json manifest = {{"schemaVersion", 2},
                                     {"config",
                                      {{"mediaType", imgbake::oci::kConfigMediaType},
                                       {"digest", "sha256:" + imgbake::util::sha256_hex(config_bytes)},
                                       {"size", config_bytes.size()}}},
                                     {"layers",
                                      {{{"mediaType", "application/vnd.oci.image.layer.v1.tar"},
                                        {"digest", "sha256:" + imgbake::util::sha256_hex(layer)},
                                        {"size", layer.size()}}}}};
  Store st(dir_ / "s");
  st.blobs().put_bytes(config_bytes, imgbake::oci::kConfigMediaType);
  st.blobs().put_bytes(layer, "application/vnd.oci.image.layer.v1.tar");
  ImportRequest req;
  req.name = "tool";
  req.manifest_bytes = manifest.dump();
  EXPECT_EQ(st.import_image(req).ref(), "tool:1");
  req.manifest_bytes = manifest.dump(1);  // another digest, same name
  EXPECT_EQ(st.import_image(req).ref(), "tool:2");
  EXPECT_TRUE(st.check(nullptr).ok());
}

// A pulled image whose config gives a layer another diff_id than the layer's (here a gzip layer
// whose config lists the digest of the compressed bytes), or too few diff_ids, is refused: only
// unpacking it would have told.
TEST_F(StoreImportTest, APulledLayerMustHaveTheDiffIdItsConfigGives) {
  fs::create_directories(dir_ / "tree" / "etc");
  std::ofstream(dir_ / "tree" / "etc" / "motd") << "hello\n";
  imgbake::layer::LayerBlob b =
      imgbake::layer::write_tree(dir_ / "tree", dir_ / "layer.tar.gz", {}, imgbake::global_cancel());
  Store st(dir_ / "s");
  imgbake::oci::Descriptor layer = st.blobs().put_file(b.file, b.media_type);
  auto import_with = [&](const nlohmann::json& diff_ids) {
    const std::string config_bytes =
        nlohmann::json{
            {"architecture", "amd64"}, {"os", "linux"}, {"rootfs", {{"type", "layers"}, {"diff_ids", diff_ids}}}}
            .dump();
    Descriptor config = st.blobs().put_bytes(config_bytes, imgbake::oci::kConfigMediaType);
    nlohmann::json manifest = {{"schemaVersion", 2},
                               {"mediaType", imgbake::oci::kManifestMediaType},
                               {"config", config.to_json()},
                               {"layers", {layer.to_json()}}};
    ImportRequest req;
    req.name = "tool";
    req.manifest_bytes = manifest.dump();
    req.source = "registry.example.com/tool:1";
    return std::make_pair(config.digest, [&st, req] { return st.import_image(req); });
  };
  auto [config, lying] = import_with({layer.digest});
  try {
    lying();
    FAIL() << "a layer whose diff_id is wrong was imported";
  } catch (const StoreError& e) {
    EXPECT_EQ(std::string(e.what()), "cannot import registry.example.com/tool:1: layer 1 (" + layer.digest +
                                         ") unpacks to " + b.diff_id + ", but the image config gives its diff_id as " +
                                         layer.digest +
                                         "; refusing an image whose config does not describe its layers (unpacking "
                                         "it would fail)");
  }
  auto [config2, short_list] = import_with(nlohmann::json::array());
  try {
    short_list();
    FAIL() << "a config without a diff_id per layer was imported";
  } catch (const StoreError& e) {
    EXPECT_EQ(std::string(e.what()), "cannot import registry.example.com/tool:1: the image config (" + config2 +
                                         ") lists 0 rootfs.diff_ids for 1 layers");
  }
  EXPECT_TRUE(st.images().empty());
  auto [config3, honest] = import_with({b.diff_id});
  EXPECT_EQ(honest().ref(), "tool:1");
  EXPECT_TRUE(st.check(nullptr).ok());
}

}  // namespace
