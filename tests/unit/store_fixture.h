// The fixture of the store's unit tests that commit files (test_store_catalog, test_store_commit,
// test_store_channels, test_store_maintenance): a temp directory, and commit requests for files
// written there. Not in an anonymous namespace: the four files share the one test suite StoreTest.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <optional>
#include <string>

#include "imgbake/store.h"
#include "imgbake/util.h"

namespace store_fixture {

namespace fs = std::filesystem;
using imgbake::store::CommitRequest;

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("imgbake-store-test-" + imgbake::util::uuid_v4());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string file(const std::string& name, const std::string& content) {
    fs::path p = dir_ / name;
    std::ofstream(p) << content;
    return p.string();
  }

  CommitRequest request(const std::string& content, std::optional<std::string> version = std::nullopt) {
    CommitRequest r;
    r.name = "web";
    r.version = version;
    r.builder_type = "file";
    r.embed_build_info = false;
    r.files.push_back({file("app-" + content + ".txt", content), content.size(), "", ""});
    return r;
  }

  fs::path dir_;
};

}  // namespace store_fixture
