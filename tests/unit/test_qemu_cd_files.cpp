// cd_files / cd_content / cd_label: real ISOs made with the installed tools, read back with
// isoinfo and xorriso the way a user would check them.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <signal.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "imgbake/cancel.h"
#include "imgbake/error.h"
#include "imgbake/process.h"
#include "imgbake/util.h"
#include "qemu/cd_files.h"
#include "tool_check.h"

namespace {

namespace fs = std::filesystem;
using imgbake::BuildError;
using imgbake::Cancelled;
using imgbake::CancelToken;
using imgbake::qemu::CdSpec;
using imgbake::qemu::make_cd;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsSupersetOf;
using ::testing::Not;
using ::testing::UnorderedElementsAre;

// Runs a command; its stdout lines (stderr too when it fails, in the failure message).
std::vector<std::string> RunTool(const std::vector<std::string>& argv) {
  std::vector<std::string> out, err;
  imgbake::ProcessSpec spec;
  spec.argv = argv;
  spec.timeout = std::chrono::seconds(60);
  CancelToken cancel;
  int status = imgbake::run_process(
      spec, [&](std::string_view l) { out.emplace_back(l); }, [&](std::string_view l) { err.emplace_back(l); }, cancel);
  EXPECT_EQ(status, 0) << imgbake::util::join(argv, " ") << "\n" << imgbake::util::join(err, "\n");
  return out;
}

// Restores PATH when a test changed it.
class PathOverride {
 public:
  explicit PathOverride(const std::string& path) : saved_(getenv("PATH") ? getenv("PATH") : "") {
    setenv("PATH", path.c_str(), 1);
  }
  ~PathOverride() { setenv("PATH", saved_.c_str(), 1); }
  PathOverride(const PathOverride&) = delete;
  PathOverride& operator=(const PathOverride&) = delete;

 private:
  std::string saved_;
};

class QemuCdFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    REQUIRE_TOOL("xorriso");
    REQUIRE_TOOL("isoinfo");
    std::string tmpl = (fs::temp_directory_path() / "imgbake-cd-XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    root_ = tmpl;
    src_ = root_ / "src";
    out_ = root_ / "out";
    fs::create_directories(src_ / "seed" / "sub");
    fs::create_directories(src_ / "globbed");
    fs::create_directories(out_);
    Write(src_ / "answer.xml", "<unattend/>\n");
    Write(src_ / "dup.txt", "from a file\n");
    Write(src_ / "seed" / "top.txt", "top\n");
    Write(src_ / "seed" / "sub" / "deep.txt", "deep\n");
    Write(src_ / "globbed" / "one.cfg", "1\n");
    Write(src_ / "globbed" / "two.cfg", "2\n");
    Write(src_ / "globbed" / "other.txt", "not matched\n");
  }
  void TearDown() override { fs::remove_all(root_); }

  static void Write(const fs::path& p, const std::string& text) { std::ofstream(p, std::ios::binary) << text; }
  static std::string Read(const fs::path& p) { return imgbake::util::read_file(p); }

  // Every path on the CD (Rock Ridge names), directories included.
  static std::vector<std::string> ListCd(const fs::path& iso) {
    std::vector<std::string> paths;
    for (const std::string& line : RunTool({"isoinfo", "-R", "-f", "-i", iso.string()}))
      if (!line.empty()) paths.push_back(line);
    return paths;
  }
  static std::string VolumeId(const fs::path& iso) {
    for (const std::string& line : RunTool({"isoinfo", "-d", "-i", iso.string()}))
      if (line.starts_with("Volume id: ")) return line.substr(11);
    return "(none)";
  }
  fs::path Extract(const fs::path& iso) {
    fs::path dir = root_ / ("extracted-" + iso.stem().string());
    RunTool({"xorriso", "-osirrox", "on", "-indev", iso.string(), "-extract", "/", dir.string()});
    return dir;
  }
  // Nothing but the ISOs in the output directory: the staging dir is gone.
  std::vector<std::string> OutDirEntries() const {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(out_)) names.push_back(e.path().filename().string());
    return names;
  }

  fs::path root_, src_, out_;
  CancelToken cancel_;
};

TEST_F(QemuCdFiles, FilesDirectoriesGlobsAndContentWithLabel) {
  CdSpec spec;
  spec.files = {(src_ / "answer.xml").string(), (src_ / "seed").string(), (src_ / "globbed" / "*.cfg").string(),
                (src_ / "dup.txt").string()};
  spec.content = {{"user-data", "#cloud-config\nhostname: test\n"},
                  {"meta-data", "instance-id: i-1\n"},
                  {"/nested/deeper/c.txt", "c\n"},
                  {"dup.txt", "from content\n"}};
  spec.label = "cidata";
  fs::path iso = out_ / "seed.iso";
  make_cd(spec, iso.string(), cancel_);

  EXPECT_EQ(VolumeId(iso), "cidata");
  EXPECT_THAT(ListCd(iso), UnorderedElementsAre("/answer.xml", "/seed", "/seed/top.txt", "/seed/sub",
                                                "/seed/sub/deep.txt", "/one.cfg", "/two.cfg", "/dup.txt", "/user-data",
                                                "/meta-data", "/nested", "/nested/deeper", "/nested/deeper/c.txt"));
  fs::path x = Extract(iso);
  EXPECT_EQ(Read(x / "answer.xml"), "<unattend/>\n");
  EXPECT_EQ(Read(x / "seed" / "sub" / "deep.txt"), "deep\n");
  EXPECT_EQ(Read(x / "one.cfg"), "1\n");
  EXPECT_EQ(Read(x / "user-data"), "#cloud-config\nhostname: test\n");
  EXPECT_EQ(Read(x / "nested" / "deeper" / "c.txt"), "c\n");
  EXPECT_EQ(Read(x / "dup.txt"), "from content\n");  // cd_content wins
  // Joliet names are there too (what Windows reads)
  EXPECT_THAT(RunTool({"isoinfo", "-J", "-f", "-i", iso.string()}), IsSupersetOf({"/user-data", "/seed/sub/deep.txt"}));
  EXPECT_THAT(OutDirEntries(), ElementsAre("seed.iso"));
}

TEST_F(QemuCdFiles, TrailingSlashPutsADirectorysContentsAtTheRoot) {
  CdSpec spec;
  spec.files = {(src_ / "seed").string() + "/"};
  fs::path iso = out_ / "contents.iso";
  make_cd(spec, iso.string(), cancel_);
  EXPECT_THAT(ListCd(iso), UnorderedElementsAre("/top.txt", "/sub", "/sub/deep.txt"));
  EXPECT_EQ(VolumeId(iso), "packer");  // Packer's default label
}

TEST_F(QemuCdFiles, SymlinksAreFollowed) {
  fs::create_symlink(src_ / "answer.xml", src_ / "seed" / "link.xml");
  CdSpec spec;
  spec.files = {(src_ / "seed").string()};
  fs::path iso = out_ / "links.iso";
  make_cd(spec, iso.string(), cancel_);
  EXPECT_EQ(Read(Extract(iso) / "seed" / "link.xml"), "<unattend/>\n");
}

TEST_F(QemuCdFiles, FallsBackToGenisoimage) {
  fs::path bin = root_ / "bin";
  fs::create_directories(bin);
  REQUIRE_TOOL("genisoimage");
  fs::create_symlink(tool_check::Find("genisoimage"), bin / "genisoimage");
  CdSpec spec;
  spec.content = {{"user-data", "#cloud-config\n"}};
  spec.label = "cidata";
  fs::path iso = out_ / "geniso.iso";
  {
    PathOverride path(bin.string());
    make_cd(spec, iso.string(), cancel_);
  }
  EXPECT_EQ(VolumeId(iso), "cidata");
  EXPECT_THAT(ListCd(iso), ElementsAre("/user-data"));
}

TEST_F(QemuCdFiles, NoToolInstalledNamesTheToolsTried) {
  CdSpec spec;
  spec.content = {{"user-data", "x"}};
  PathOverride path((root_ / "empty-bin").string());
  try {
    make_cd(spec, (out_ / "x.iso").string(), cancel_);
    FAIL() << "expected a BuildError";
  } catch (const BuildError& e) {
    EXPECT_THAT(e.what(), HasSubstr("none of xorriso, genisoimage, mkisofs was found on PATH"));
  }
}

TEST_F(QemuCdFiles, ToolFailureReportsItsStderrAndLeavesNothing) {
  fs::path bin = root_ / "bin";
  fs::create_directories(bin);
  Write(bin / "xorriso", "#!/bin/sh\necho 'xorriso : FAILURE : disk full, says the fake' >&2\n: > \"$8\"\nexit 5\n");
  fs::permissions(bin / "xorriso", fs::perms::owner_all);
  CdSpec spec;
  spec.content = {{"user-data", "x"}};
  {
    PathOverride path(bin.string() + ":/usr/bin:/bin");
    try {
      make_cd(spec, (out_ / "x.iso").string(), cancel_);
      FAIL() << "expected a BuildError";
    } catch (const BuildError& e) {
      EXPECT_THAT(e.what(), HasSubstr("xorriso failed (exit 5)"));
      EXPECT_THAT(e.what(), HasSubstr("disk full, says the fake"));
    }
  }
  EXPECT_THAT(OutDirEntries(), ElementsAre());
}

TEST_F(QemuCdFiles, BadInputsAreErrorsAndLeaveNothing) {
  auto error_of = [&](const CdSpec& spec) -> std::string {
    try {
      make_cd(spec, (out_ / "bad.iso").string(), cancel_);
    } catch (const BuildError& e) {
      return e.what();
    }
    return "(no error)";
  };
  CdSpec missing;
  missing.files = {(src_ / "nope.txt").string()};
  EXPECT_THAT(error_of(missing), HasSubstr("nope.txt' does not exist"));
  CdSpec unmatched;
  unmatched.files = {(src_ / "*.none").string()};
  EXPECT_THAT(error_of(unmatched), HasSubstr("*.none' matches no file"));
  CdSpec escaping;
  escaping.content = {{"../outside", "x"}};
  EXPECT_THAT(error_of(escaping), HasSubstr("is not a file path inside the CD"));
  CdSpec long_label;
  long_label.label = std::string(33, 'x');
  EXPECT_THAT(error_of(long_label), HasSubstr("longer than the 32 characters"));
  EXPECT_THAT(OutDirEntries(), ElementsAre());
}

TEST_F(QemuCdFiles, CancelledBeforeStartingThrowsCancelled) {
  CdSpec spec;
  spec.files = {(src_ / "answer.xml").string()};
  cancel_.cancel(SIGTERM);
  EXPECT_THROW(make_cd(spec, (out_ / "c.iso").string(), cancel_), Cancelled);
  EXPECT_THAT(OutDirEntries(), ElementsAre());
}

}  // namespace
