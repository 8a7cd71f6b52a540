// Every unit test runs with its own imgbake configuration directory (IMGBAKE_CONFIG_HOME): the
// store signs audit entries with the default key and keeps witnesses there, which must never be
// the real user's.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <string>

namespace {

class ConfigHomeEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    if (const char* c = std::getenv("IMGBAKE_CONFIG_HOME"); c && *c) return;  // the caller chose one
    std::string tmpl = (std::filesystem::temp_directory_path() / "imgbake-unit-config-XXXXXX").string();
    if (!mkdtemp(tmpl.data())) return;
    dir_ = tmpl;
    setenv("IMGBAKE_CONFIG_HOME", dir_.c_str(), 1);
  }
  void TearDown() override {
    if (dir_.empty()) return;
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

 private:
  std::string dir_;
};

// Registered before main() runs the tests.
[[maybe_unused]] ::testing::Environment* const kConfigHome =
    ::testing::AddGlobalTestEnvironment(new ConfigHomeEnvironment);

}  // namespace
