// The rootfs builder's options and the host apt mirror it defaults to.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "imgbake/config.h"
#include "imgbake/error.h"
#include "imgbake/json.h"
#include "imgbake/util.h"
#include "rootfs/rootfs_config.h"

namespace fs = std::filesystem;
using imgbake::ConfigReader;
using imgbake::Diagnostics;
using imgbake::rootfs::Config;
using imgbake::rootfs::SourceKind;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

namespace {

class RootfsConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("rootfs-config-" + imgbake::util::uuid_v4());
    fs::create_directories(dir_);
    imgbake::util::write_file_atomic(dir_ / "base.tar", "not really a tar");
    fs::create_directories(dir_ / "layout");
    imgbake::util::write_file_atomic(dir_ / "layout" / "index.json", "{}");
  }
  void TearDown() override { fs::remove_all(dir_); }

  Config Read(const std::string& text) {
    value_ = imgbake::json::parse(text);
    ConfigReader reader(value_, "t.json", "builder 'rootfs' (rootfs)", diags_);
    Config c = imgbake::rootfs::read_config(reader);
    reader.finish();
    return c;
  }
  std::string Errors() const {
    std::string out;
    for (const auto& d : diags_.errors()) out += d.str() + "\n";
    return out;
  }

  fs::path dir_;
  imgbake::json::Value value_;
  Diagnostics diags_;
};

TEST_F(RootfsConfigTest, SourceKinds) {
  Config tar = Read(R"({"source": "tar:)" + (dir_ / "base.tar").string() + R"("})");
  EXPECT_EQ(tar.kind, SourceKind::Tar);
  EXPECT_EQ(tar.path, (dir_ / "base.tar").string());
  Config oci = Read(R"({"source": "oci:)" + (dir_ / "layout").string() + R"(:v2"})");
  EXPECT_EQ(oci.kind, SourceKind::OciLayout);
  EXPECT_EQ(oci.path, (dir_ / "layout").string());
  EXPECT_EQ(oci.tag, "v2");
  Config archive = Read(R"({"source": "oci-archive:)" + (dir_ / "base.tar").string() + R"("})");
  EXPECT_EQ(archive.kind, SourceKind::OciArchive);
  EXPECT_EQ(archive.tag, "");
  Config store = Read(R"({"source": "app:channel"})");
  EXPECT_EQ(store.kind, SourceKind::Store);
  EXPECT_EQ(store.path, "app:channel");
  Config prefixed = Read(R"({"source": "store:app@sha256:abc"})");
  EXPECT_EQ(prefixed.path, "app@sha256:abc");
  EXPECT_THAT(Errors(), IsEmpty());
}

TEST_F(RootfsConfigTest, DefaultsAreGzipNoNetwork) {
  Config c = Read(R"({"source": "app"})");
  EXPECT_FALSE(c.network);
  EXPECT_EQ(c.compression, imgbake::layer::Compression::Gzip);
  EXPECT_EQ(c.compression_level, -1);
  EXPECT_FALSE(c.source_date_epoch.has_value());
}

TEST_F(RootfsConfigTest, DebootstrapOptions) {
  Config c = Read(R"({"source": "debootstrap", "debootstrap": {"suite": "trixie", "variant": "buildd",
      "components": ["main", "contrib"], "include": ["curl"], "mirror": "http://127.0.0.1:1/debian",
      "check_gpg": false}, "network": true, "layer_compression": "zstd", "source_date_epoch": 1700000000})");
  EXPECT_THAT(Errors(), IsEmpty());
  EXPECT_EQ(c.kind, SourceKind::Debootstrap);
  EXPECT_EQ(c.debootstrap.suite, "trixie");
  EXPECT_EQ(c.debootstrap.variant, "buildd");
  EXPECT_EQ(c.debootstrap.components, (std::vector<std::string>{"main", "contrib"}));
  EXPECT_EQ(c.debootstrap.include, (std::vector<std::string>{"curl"}));
  EXPECT_FALSE(c.debootstrap.check_gpg);
  EXPECT_TRUE(c.network);
  EXPECT_EQ(c.compression, imgbake::layer::Compression::Zstd);
  EXPECT_EQ(c.source_date_epoch, 1700000000);
}

TEST_F(RootfsConfigTest, ErrorsPointAtTheOption) {
  Read(R"({"source": "tar:/nonexistent/x.tar",
  "layer_compression": "bzip2",
  "layer_compression_level": 42,
  "debootstrap": {"variant": "huge"},
  "source_date_epoch": -5,
  "bogus": 1})");
  std::string e = Errors();
  EXPECT_THAT(
      e, HasSubstr("t.json:1:12: builder 'rootfs' (rootfs): the rootfs tarball '/nonexistent/x.tar' does not exist"));
  EXPECT_THAT(e,
              HasSubstr("t.json:2:24: builder 'rootfs' (rootfs): layer_compression 'bzip2' is not gzip, zstd or none"));
  EXPECT_THAT(e, HasSubstr("t.json:3:30: "));
  EXPECT_THAT(e, HasSubstr("variant 'huge' is not one of"));
  EXPECT_THAT(e, HasSubstr("source_date_epoch must be seconds"));
  EXPECT_THAT(e, HasSubstr("bogus"));
}

TEST_F(RootfsConfigTest, MissingSourceAndBadLayout) {
  Read(R"({})");
  EXPECT_THAT(Errors(), HasSubstr("source"));
  diags_ = Diagnostics{};
  Read(R"({"source": "oci:)" + dir_.string() + R"("})");
  EXPECT_THAT(Errors(), HasSubstr("is not an OCI image layout (no index.json)"));
}

TEST(RootfsHostMirror, OneLineListsWithOptions) {
  fs::path d = fs::temp_directory_path() / ("apt-" + imgbake::util::uuid_v4());
  fs::create_directories(d / "sources.list.d");
  imgbake::util::write_file_atomic(d / "sources.list",
                                   "# comment\n\ndeb-src http://src.example/debian bookworm main\n"
                                   "deb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian bookworm main\n");
  EXPECT_EQ(imgbake::rootfs::host_apt_mirror(d), "http://mirror.example/debian");
  fs::remove_all(d);
}

TEST(RootfsHostMirror, Deb822SourcesSkipDebSrcStanzas) {
  fs::path d = fs::temp_directory_path() / ("apt-" + imgbake::util::uuid_v4());
  fs::create_directories(d / "sources.list.d");
  imgbake::util::write_file_atomic(d / "sources.list.d" / "debian.sources",
                                   "Types: deb-src\nURIs: http://src.example/debian\nSuites: bookworm\n\n"
                                   "Types: deb\n# http://snapshot.example/\nURIs: http://deb.example/debian\n"
                                   "Suites: bookworm\nComponents: main\n");
  imgbake::util::write_file_atomic(d / "sources.list.d" / "notes.txt", "deb http://ignored.example/ x y\n");
  EXPECT_EQ(imgbake::rootfs::host_apt_mirror(d), "http://deb.example/debian");
  fs::remove_all(d);
  EXPECT_EQ(imgbake::rootfs::host_apt_mirror(d), "");
}

}  // namespace
