// The files chef-solo and chef-client read, in Chef's documented formats: solo.rb and client.rb
// (Ruby configuration files: cookbook_path, data_bag_path, role_path, environment_path,
// environment, chef_license, local_mode, chef_server_url, node_name, …) and the node JSON given
// with -j (the template's "json" with "run_list" set). Kept apart from the provisioners so that
// the unit tests check them byte for byte.
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

// What client.rb says. Local mode (no chef_server_url): chef-client starts its in-memory Chef
// Zero server over the staged cookbooks, roles, data bags and environments; its node objects go
// to node_path (in the staging directory, not the chef repository).
struct ClientSettings {
  SoloPaths paths;              // local mode only
  std::string node_path;        // local mode only
  std::string chef_server_url;  // "" = local mode
  std::string client_key;       // server mode: where chef-client keeps the key it registers
  std::string validation_client_name;
  std::string validation_key;  // server mode: the uploaded validation key
  std::string node_name;
  std::string chef_environment;
  std::string ssl_verify_mode;  // "verify_none", "verify_peer" or ""
  std::string trusted_certs_dir;
  std::string chef_license;
};

// client.rb.
std::string client_rb(const ClientSettings& s);

// The node attributes file: `json` (an object) with "run_list" set from `run_list` when that
// is not empty. Pretty-printed, keys in the template's order.
std::string node_json(const nlohmann::ordered_json& json, const std::vector<std::string>& run_list);

}  // namespace imgbake::chef
