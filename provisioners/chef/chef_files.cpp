// solo.rb, client.rb and the node JSON (chef_files.h).
#include "chef_files.h"

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

namespace {

// cookbook_path, data_bag_path, role_path, encrypted_data_bag_secret, environment_path and
// environment (only with environment_path, as in Packer).
std::string repository_settings(const SoloPaths& p, const std::string& chef_environment) {
  std::string out = "cookbook_path [";
  for (size_t i = 0; i < p.cookbook_paths.size(); ++i) out += (i ? ", " : "") + ruby_string(p.cookbook_paths[i]);
  out += "]\n";
  if (!p.data_bags_path.empty()) out += "data_bag_path " + ruby_string(p.data_bags_path) + "\n";
  if (!p.roles_path.empty()) out += "role_path " + ruby_string(p.roles_path) + "\n";
  if (!p.encrypted_data_bag_secret_path.empty())
    out += "encrypted_data_bag_secret " + ruby_string(p.encrypted_data_bag_secret_path) + "\n";
  if (!p.environments_path.empty()) {
    out += "environment_path " + ruby_string(p.environments_path) + "\n";
    if (!chef_environment.empty()) out += "environment " + ruby_string(chef_environment) + "\n";
  }
  return out;
}

}  // namespace

std::string solo_rb(const SoloSettings& s) {
  std::string out = "# Written by imgbake's chef-solo provisioner.\n";
  out += repository_settings(s.paths, s.chef_environment);
  if (!s.chef_license.empty()) out += "chef_license " + ruby_string(s.chef_license) + "\n";
  return out;
}

std::string client_rb(const ClientSettings& s) {
  std::string out = "# Written by imgbake's chef-client provisioner.\n";
  out += "log_level :info\nlog_location STDOUT\n";
  if (s.chef_server_url.empty()) {
    out += "local_mode true\n";
    out += repository_settings(s.paths, s.chef_environment);
    if (!s.node_path.empty()) out += "node_path " + ruby_string(s.node_path) + "\n";
  } else {
    out += "chef_server_url " + ruby_string(s.chef_server_url) + "\n";
    if (!s.client_key.empty()) out += "client_key " + ruby_string(s.client_key) + "\n";
    out += "validation_client_name " +
           ruby_string(s.validation_client_name.empty() ? "chef-validator" : s.validation_client_name) + "\n";
    if (!s.validation_key.empty()) out += "validation_key " + ruby_string(s.validation_key) + "\n";
    if (!s.paths.encrypted_data_bag_secret_path.empty())
      out += "encrypted_data_bag_secret " + ruby_string(s.paths.encrypted_data_bag_secret_path) + "\n";
    if (!s.chef_environment.empty()) out += "environment " + ruby_string(s.chef_environment) + "\n";
    if (!s.ssl_verify_mode.empty()) out += "ssl_verify_mode :" + s.ssl_verify_mode + "\n";
    if (!s.trusted_certs_dir.empty()) out += "trusted_certs_dir " + ruby_string(s.trusted_certs_dir) + "\n";
  }
  if (!s.node_name.empty()) out += "node_name " + ruby_string(s.node_name) + "\n";
  if (!s.chef_license.empty()) out += "chef_license " + ruby_string(s.chef_license) + "\n";
  return out;
}

std::string node_json(const nlohmann::ordered_json& json, const std::vector<std::string>& run_list) {
  nlohmann::ordered_json node = json.is_object() ? json : nlohmann::ordered_json::object();
  if (!run_list.empty()) node["run_list"] = run_list;
  return node.dump(2) + "\n";
}

}  // namespace imgbake::chef
