// The files chef-solo reads, in Chef's documented formats: solo.rb (a Ruby configuration file:
// cookbook_path, data_bag_path, role_path, environment_path, environment, chef_license, …) and
// the node JSON given with -j (the template's "json" with "run_list" set). Kept apart from the
// provisioner so that the unit tests check them byte for byte.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace imgbake::chef {

// Remote paths, already staged (empty: not given).
struct SoloPaths {
  std::vector<std::string> cookbook_paths;  // the uploaded ones, then remote_cookbook_paths
  std::string data_bags_path;
  std::string roles_path;
  std::string environments_path;
  std::string encrypted_data_bag_secret_path;
};

struct SoloSettings {
  SoloPaths paths;
  std::string chef_environment;  // only with environments_path, as in Packer
  std::string chef_license;      // "accept", "accept-silent", "accept-no-persist"
};

// A Ruby double-quoted string literal: backslash, double quote, '#' (interpolation) escaped.
std::string ruby_string(const std::string& s);

// solo.rb.
std::string solo_rb(const SoloSettings& s);

// The node attributes file: `json` (an object) with "run_list" set from `run_list` when that
// is not empty. Pretty-printed, keys in the template's order.
std::string node_json(const nlohmann::ordered_json& json, const std::vector<std::string>& run_list);

}  // namespace imgbake::chef
