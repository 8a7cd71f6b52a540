#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>

#include "imgbake/temp_path_guard.h"

namespace fs = std::filesystem;
using imgbake::util::TempPathGuard;

namespace {

class TempPathGuardTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "imgbake-guard-XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }
  static void Touch(const fs::path& p) { std::ofstream(p) << "x"; }

  fs::path dir_;
};

}  // namespace

TEST_F(TempPathGuardTest, RemovesAFileWhenItGoesOutOfScope) {
  fs::path f = dir_ / "half-written";
  {
    TempPathGuard guard(f);
    EXPECT_EQ(guard.path(), f);
    Touch(f);
  }
  EXPECT_FALSE(fs::exists(f));
}

TEST_F(TempPathGuardTest, RemovesWhenAnExceptionUnwinds) {
  fs::path f = dir_ / "failed";
  try {
    TempPathGuard guard(f);
    Touch(f);
    throw std::runtime_error("the write failed");
  } catch (const std::runtime_error&) {
  }
  EXPECT_FALSE(fs::exists(f));
}

TEST_F(TempPathGuardTest, RemovesADirectoryTree) {
  fs::path d = dir_ / "scratch";
  {
    TempPathGuard guard(d);
    fs::create_directories(d / "a" / "b");
    Touch(d / "a" / "b" / "f");
  }
  EXPECT_FALSE(fs::exists(d));
}

TEST_F(TempPathGuardTest, DismissedKeepsThePath) {
  fs::path f = dir_ / "kept";
  {
    TempPathGuard guard(f);
    Touch(f);
    guard.dismiss();
    guard.dismiss();  // twice is harmless
  }
  EXPECT_TRUE(fs::exists(f));
}

TEST_F(TempPathGuardTest, APathThatNeverAppearedIsFine) {
  { TempPathGuard guard(dir_ / "never-made"); }
  EXPECT_TRUE(fs::exists(dir_));
}

// A symlink is removed, not what it points to.
TEST_F(TempPathGuardTest, RemovesASymlinkNotItsTarget) {
  fs::path target = dir_ / "target";
  fs::create_directory(target);
  Touch(target / "keep");
  fs::path link = dir_ / "link";
  {
    TempPathGuard guard(link);
    fs::create_directory_symlink(target, link);
  }
  EXPECT_FALSE(fs::exists(fs::symlink_status(link)));
  EXPECT_TRUE(fs::exists(target / "keep"));
}
