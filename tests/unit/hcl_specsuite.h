// A runner for HCL's specification test suite (hashicorp/hcl specsuite/tests, shipped in
// Debian's golang-github-hashicorp-hcl-v2-dev): each case is NAME.hcl (and/or NAME.hcl.json),
// NAME.hcldec (an hcldec spec saying how to decode it) and NAME.t (the expected result and
// its type, or the expected diagnostics). This is the part of the Go harness
// (cmd/hclspecsuite) and of hcldec that the suite's cases use: the literal, object, attr,
// block, block_list and block_map specs, and a `variables` block.
#pragma once

#include <string>
#include <vector>

namespace imgbake::hcl::specsuite {

// Where Debian installs the suite (IMGBAKE_HCL_SPECSUITE overrides it).
std::string suite_dir();

// Every case's path without its extension (".../expressions/heredoc"), sorted.
std::vector<std::string> discover(const std::string& dir);

struct Outcome {
  bool passed = false;
  std::vector<std::string> problems;  // why not, for people
};

// Runs one case on its native-syntax input (`json` = its .hcl.json input).
Outcome run_case(const std::string& base, bool json = false);

}  // namespace imgbake::hcl::specsuite
