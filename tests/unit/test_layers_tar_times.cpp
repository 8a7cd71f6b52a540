// layer::newest_mtime: the time a tarball base gives the rootfs builder's SOURCE_DATE_EPOCH.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <sys/time.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "imgbake/error.h"
#include "imgbake/layer.h"
#include "layer_fixture.h"
#include "tool_check.h"

namespace {

namespace fs = std::filesystem;
using layer_fixture::LayerTest;

void set_mtime(const fs::path& p, time_t t) {
  struct timeval tv[2] = {{t, 0}, {t, 0}};
  ASSERT_EQ(lutimes(p.c_str(), tv), 0) << p;
}

TEST_F(LayerTest, NewestMtimeOfATarball) {
  REQUIRE_TOOL("tar");
  fs::path root = dir_ / "root";
  fs::create_directories(root / "etc");
  std::ofstream(root / "etc" / "old") << "old\n";
  std::ofstream(root / "etc" / "new") << "new\n";
  fs::create_symlink("new", root / "etc" / "link");
  set_mtime(root / "etc" / "old", 1000000000);
  set_mtime(root / "etc" / "new", 1700000000);
  set_mtime(root / "etc" / "link", 1600000000);
  set_mtime(root / "etc", 1500000000);
  set_mtime(root, 1400000000);
  for (const char* name : {"base.tar", "base.tar.gz"}) {
    fs::path tar = dir_ / name;
    std::string cmd = "tar -C '" + root.string() + "' -c" + (std::string(name).ends_with(".gz") ? "z" : "") + "f '" +
                      tar.string() + "' .";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
    EXPECT_EQ(imgbake::layer::newest_mtime(tar), 1700000000) << name;
  }
}

TEST_F(LayerTest, NewestMtimeNamesAnUnreadableFile) {
  fs::path junk = dir_ / "junk.tar";
  std::ofstream(junk) << "this is not a tar archive, not even close; it is long enough to be looked at. "
                      << std::string(600, 'x');
  try {
    imgbake::layer::newest_mtime(junk);
    FAIL() << "no error for a file that is not a tar archive";
  } catch (const imgbake::BuildError& e) {
    EXPECT_NE(std::string(e.what()).find("junk.tar"), std::string::npos) << e.what();
  }
}

}  // namespace
