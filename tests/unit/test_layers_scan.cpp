// layer::scan on a real tree: what the snapshot holds, mount points left out.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "imgbake/cancel.h"
#include "imgbake/layer.h"
#include "imgbake/process.h"
#include "layer_fixture.h"

namespace {

namespace fs = std::filesystem;
namespace layer = imgbake::layer;
using imgbake::CancelToken;
using layer_fixture::LayerTest;

// ---- scanning -----------------------------------------------------------------------------------

TEST_F(LayerTest, ScanSkipsMountPoints) {
  fs::path root = dir_ / "root";
  MakeRichTree(root);
  fs::create_directories(root / "proc");
  fs::create_directories(root / "tmp");
  std::vector<std::string> lines;
  CancelToken cancel;
  imgbake::ProcessSpec spec;
  spec.argv = {"mount", "-t", "tmpfs", "tmpfs", (root / "tmp").string()};
  spec.timeout = std::chrono::seconds(30);
  if (imgbake::run_process(
          spec, [](std::string_view) {}, [](std::string_view) {}, cancel) != 0) {
    GTEST_SKIP() << "cannot mount a tmpfs here";
  }
  WriteFile(root / "tmp/scratch", "x");
  layer::Snapshot s = layer::scan(root);
  spec.argv = {"umount", (root / "tmp").string()};
  EXPECT_EQ(imgbake::run_process(
                spec, [](std::string_view) {}, [](std::string_view) {}, cancel),
            0);
  EXPECT_EQ(s.entries.count("tmp"), 0u);
  EXPECT_EQ(s.entries.count("tmp/scratch"), 0u);
  EXPECT_EQ(s.entries.count("proc"), 1u);
  EXPECT_EQ(s.entries.at("usr/bin/tool").size, 300003u);
  EXPECT_EQ(s.entries.at("usr/hostname-link").link_target, "../etc/hostname");
  EXPECT_EQ(s.entries.at("usr/bin/tool").ino, s.entries.at("usr/bin/tool-alias").ino);
}

}  // namespace
