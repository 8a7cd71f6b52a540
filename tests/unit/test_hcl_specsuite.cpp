// HCL's own specification test suite, run against imgbake's parser and evaluator.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>

#include "hcl_specsuite.h"

namespace imgbake::hcl::specsuite {
namespace {

// Cases (relative to the suite directory) that imgbake cannot pass yet, with the reason.
// Each is still run: it must fail, so that a fixed case cannot stay on this list.
const std::map<std::string, std::string>& known_failures() {
  static const std::map<std::string, std::string> list = {};
  return list;
}

struct Case {
  std::string base;  // path without extension
  std::string name;  // relative to the suite, with the input's extension: "expressions/heredoc.hcl"
  bool json = false;
};

std::vector<Case> cases() {
  std::vector<Case> out;
  std::string dir = suite_dir();
  for (const auto& base : discover(dir)) {
    std::string rel = std::filesystem::relative(base, dir).string();
    for (bool json : {false, true}) {
      std::string ext = json ? ".hcl.json" : ".hcl";
      if (std::filesystem::exists(base + ext)) out.push_back({base, rel + ext, json});
    }
  }
  return out;
}

class HclSpecSuite : public ::testing::TestWithParam<Case> {};

TEST_P(HclSpecSuite, Case) {
  const Case& c = GetParam();
  Outcome o = run_case(c.base, c.json);
  std::string why;
  for (const auto& p : o.problems) why += "\n  " + p;
  auto known = known_failures().find(c.name);
  if (known != known_failures().end()) {
    EXPECT_FALSE(o.passed) << c.name << " passes now: remove it from known_failures()";
    return;
  }
  EXPECT_TRUE(o.passed) << c.name << ":" << why;
}

INSTANTIATE_TEST_SUITE_P(Spec, HclSpecSuite, ::testing::ValuesIn(cases()), [](const ::testing::TestParamInfo<Case>& p) {
  std::string n = p.param.name;
  for (auto& ch : n)
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  return n;
});

// The suite must be there (tools/setup.sh installs golang-github-hashicorp-hcl-v2-dev): without
// it the cases above would silently be zero.
TEST(HclSpecSuiteInstalled, HasItsCases) {
  auto all = cases();
  EXPECT_GE(all.size(), 16U) << "HCL's spec suite not found in " << suite_dir()
                             << " (apt-get install golang-github-hashicorp-hcl-v2-dev, or tools/setup.sh)";
  for (const auto& [name, reason] : known_failures()) {
    bool listed = false;
    for (const auto& c : all) listed = listed || c.name == name;
    EXPECT_TRUE(listed) << "known_failures() names " << name << ", which the suite does not have";
  }
}

}  // namespace
}  // namespace imgbake::hcl::specsuite
