// solo.rb and the node JSON (chef_solo_files.h).
#include "chef_solo_files.h"

#include <cstdio>

namespace imgbake::chef {

std::string ruby_string(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    switch (c) {
      case '\\': out += "\\\\"; break;
      case '"': out += "\\\""; break;
      case '#': out += "\\#"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\x%02x", static_cast<unsigned>(static_cast<unsigned char>(c)));
          out += buf;
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

std::string solo_rb(const SoloSettings& s) {
  std::string out = "# Written by imgbake's chef-solo provisioner.\n";
  out += "cookbook_path [";
  for (size_t i = 0; i < s.paths.cookbook_paths.size(); ++i)
    out += (i ? ", " : "") + ruby_string(s.paths.cookbook_paths[i]);
  out += "]\n";
  if (!s.paths.data_bags_path.empty()) out += "data_bag_path " + ruby_string(s.paths.data_bags_path) + "\n";
  if (!s.paths.roles_path.empty()) out += "role_path " + ruby_string(s.paths.roles_path) + "\n";
  if (!s.paths.encrypted_data_bag_secret_path.empty())
    out += "encrypted_data_bag_secret " + ruby_string(s.paths.encrypted_data_bag_secret_path) + "\n";
  if (!s.paths.environments_path.empty()) {
    out += "environment_path " + ruby_string(s.paths.environments_path) + "\n";
    if (!s.chef_environment.empty()) out += "environment " + ruby_string(s.chef_environment) + "\n";
  }
  if (!s.chef_license.empty()) out += "chef_license " + ruby_string(s.chef_license) + "\n";
  return out;
}

std::string node_json(const nlohmann::ordered_json& json, const std::vector<std::string>& run_list) {
  nlohmann::ordered_json node = json.is_object() ? json : nlohmann::ordered_json::object();
  if (!run_list.empty()) node["run_list"] = run_list;
  return node.dump(2) + "\n";
}

}  // namespace imgbake::chef
