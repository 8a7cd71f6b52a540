// The "chef-solo" and "chef-client" provisioners (Packer's): upload cookbooks, roles, data bags
// and environments into a staging directory on the machine, write solo.rb or client.rb and the
// node JSON there in Chef's formats (chef_files.h), optionally install Chef, and run chef-solo,
// or chef-client in local mode (its in-memory Chef Zero server over the staged repository) or
// against a Chef server.
//
// Chef is not packaged for Debian 12: the tests check the generated files and command lines
// and run the provisioners against a stand-in that records what it was given, not the real
// Chef (docs/provisioners/chef-solo.md, chef-client.md).
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "chef_files.h"
#include "imgbake/communicator.h"
#include "imgbake/error.h"
#include "imgbake/interpolate.h"
#include "imgbake/provisioner.h"
#include "imgbake/temp_file.h"
#include "imgbake/util.h"

namespace imgbake {
namespace {

namespace fs = std::filesystem;

std::string quote(const std::string& v) { return "'" + escape_single_quotes(v) + "'"; }

// "resource execute[migrate] (action run)" from Chef's
// "Error executing action `run` on resource 'execute[migrate]'".
class ChefErrors {
 public:
  explicit ChefErrors(std::string tool) : tool_(std::move(tool)) {}
  void add(std::string_view line) {
    static constexpr std::string_view kPrefix = "Error executing action `";
    size_t p = line.find(kPrefix);
    if (p != std::string_view::npos) {
      size_t action_end = line.find('`', p + kPrefix.size());
      size_t res = line.find("on resource '", p);
      if (action_end != std::string_view::npos && res != std::string_view::npos) {
        size_t start = res + 13;
        size_t end = line.rfind('\'');
        if (end > start) {
          std::string action(line.substr(p + kPrefix.size(), action_end - p - kPrefix.size()));
          resources_.push_back(std::string(line.substr(start, end - start)) + " (action " + action + ")");
        }
      }
      return;
    }
    size_t fatal = line.find("FATAL: ");
    if (fatal != std::string_view::npos && fatals_.size() < 2) fatals_.emplace_back(line.substr(fatal + 7));
  }
  std::string describe(int status) const {
    std::string out = tool_ + " failed with exit status " + std::to_string(status);
    if (!resources_.empty()) return out + ": resource " + resources_.front() + " failed";
    if (!fatals_.empty()) return out + ": " + util::join(fatals_, "; ");
    return out;
  }

 private:
  std::string tool_;
  std::vector<std::string> resources_;
  std::vector<std::string> fatals_;
};

class ChefProvisioner : public Provisioner {
 public:
  explicit ChefProvisioner(bool client)
      : client_(client), tool_(client ? "chef-client" : "chef-solo"), staging_dir_("/tmp/packer-" + tool_) {}
  std::set<std::string> runtime_keys() const override { return {"execute_command", "install_command"}; }
  void prepare(ConfigReader& cfg) override;
  void provision(State& st) override;
  nlohmann::json key_material() const override;
  std::vector<HostInput> host_inputs() const override { return inputs_; }

 private:
  void run_checked(State& st, const std::string& command, const std::string& what, ChefErrors* errors) const;
  std::string render(const State& st, const std::string& text, const std::string& option, bool sudo,
                     const std::string& config_path, const std::string& json_path) const;

  const bool client_;
  const std::string tool_;
  std::vector<std::string> cookbook_paths_;
  std::vector<std::string> remote_cookbook_paths_;
  std::string roles_path_;
  std::string data_bags_path_;
  std::string environments_path_;
  std::string encrypted_data_bag_secret_path_;
  std::string chef_environment_;
  std::string chef_license_;
  std::vector<std::string> run_list_;
  nlohmann::ordered_json json_ = nlohmann::ordered_json::object();
  std::string execute_command_;  // "" = the default
  std::string install_command_;  // "" = the default
  std::string version_;
  bool skip_install_ = false;
  bool prevent_sudo_ = false;
  std::string staging_dir_;
  // chef-client only.
  std::string server_url_;  // "" = local mode
  std::string node_name_;
  std::string client_key_;
  std::string validation_client_name_;
  std::string validation_key_path_;
  std::string ssl_verify_mode_;
  std::string trusted_certs_dir_;
  bool skip_clean_staging_ = false;
  std::vector<HostInput> inputs_;
};

void ChefProvisioner::prepare(ConfigReader& cfg) {
  cookbook_paths_ = cfg.strings("cookbook_paths");
  remote_cookbook_paths_ = cfg.strings("remote_cookbook_paths");
  roles_path_ = cfg.string("roles_path");
  data_bags_path_ = cfg.string("data_bags_path");
  environments_path_ = cfg.string("environments_path");
  encrypted_data_bag_secret_path_ = cfg.string("encrypted_data_bag_secret_path");
  chef_environment_ = cfg.string("chef_environment");
  run_list_ = cfg.strings("run_list");
  if (const json::Value* j = cfg.raw("json")) {
    if (j->kind != json::Value::Kind::Object)
      cfg.error("json", "'json' must be an object (the node's attributes)");
    else
      json_ = j->to_json();
  }
  execute_command_ = cfg.string("execute_command");
  install_command_ = cfg.string("install_command");
  version_ = cfg.string("version");
  skip_install_ = cfg.boolean("skip_install", false);
  prevent_sudo_ = cfg.boolean("prevent_sudo", false);
  staging_dir_ = cfg.string("staging_directory", staging_dir_);
  // Packer: accept-silent when imgbake installs Chef (15 and later refuse to run otherwise).
  chef_license_ = cfg.string("chef_license", !skip_install_ && install_command_.empty() ? "accept-silent" : "");
  if (!chef_license_.empty() && chef_license_ != "accept" && chef_license_ != "accept-silent" &&
      chef_license_ != "accept-no-persist")
    cfg.error("chef_license",
              "must be \"accept\", \"accept-silent\" or \"accept-no-persist\", not \"" + chef_license_ + "\"");
  if (cfg.has("config_template"))
    cfg.error("config_template", "is not supported: imgbake writes " + std::string(client_ ? "client.rb" : "solo.rb") +
                                     " itself (docs/provisioners/" + tool_ + ".md lists what it sets)");
  if (client_) {
    server_url_ = cfg.string("server_url");
    node_name_ = cfg.string("node_name", "packer-" + util::uuid_v4());
    client_key_ = cfg.string("client_key");
    validation_client_name_ = cfg.string("validation_client_name");
    validation_key_path_ = cfg.string("validation_key_path");
    ssl_verify_mode_ = cfg.string("ssl_verify_mode");
    trusted_certs_dir_ = cfg.string("trusted_certs_dir");
    skip_clean_staging_ = cfg.boolean("skip_clean_staging_directory", false);
    if (!ssl_verify_mode_.empty() && ssl_verify_mode_ != "verify_none" && ssl_verify_mode_ != "verify_peer")
      cfg.error("ssl_verify_mode", "must be \"verify_none\" or \"verify_peer\", not \"" + ssl_verify_mode_ + "\"");
    if (!validation_key_path_.empty() && !fs::is_regular_file(validation_key_path_))
      cfg.error("validation_key_path", "'" + validation_key_path_ + "' is not a file");
    // Packer deletes the node and client from the Chef server afterwards with knife on the host;
    // imgbake does not run knife, so a server build must say it keeps them.
    if (!server_url_.empty() && (!cfg.boolean("skip_clean_node", false) || !cfg.boolean("skip_clean_client", false)))
      cfg.error("server_url",
                "imgbake does not remove the node and client from the Chef server afterwards (Packer runs knife for "
                "that): set \"skip_clean_node\": true and \"skip_clean_client\": true, and remove them yourself");
    for (const char* key : {"policy_group", "policy_name", "knife_command", "elevated_user", "elevated_password"})
      if (cfg.has(key)) cfg.error(key, "is not supported by imgbake's chef-client provisioner");
  } else if (cfg.has("server_url")) {
    cfg.error("server_url", "chef-solo has no server: use the chef-client provisioner");
  }
  std::string os = cfg.string("guest_os_type", "unix");
  if (os != "unix") cfg.error("guest_os_type", "only \"unix\" guests are supported, not \"" + os + "\"");
  if (!environments_path_.empty() && chef_environment_.empty())
    cfg.warn("chef_environment", "environments_path is set but chef_environment is not: Chef uses \"_default\"");
  for (const char* key : {"execute_command", "install_command"}) {
    std::string v = key == std::string("execute_command") ? execute_command_ : install_command_;
    if (v.find("{{if") != std::string::npos || v.find("{{ if") != std::string::npos)
      cfg.error(key,
                "Go template control actions ({{if}}…{{end}}) are not supported; use the values directly "
                "({{.Sudo}}, {{.ConfigPath}}, {{.JsonPath}}, {{.Version}})");
  }

  auto must_be_dir = [&](const char* key, const std::string& path) {
    if (path.empty()) return;
    std::error_code ec;
    if (!fs::is_directory(path, ec))
      cfg.error(key, "'" + path + "' is not a directory (relative paths start at the directory imgbake runs in)");
  };
  for (const auto& p : cookbook_paths_) must_be_dir("cookbook_paths", p);
  must_be_dir("roles_path", roles_path_);
  must_be_dir("data_bags_path", data_bags_path_);
  must_be_dir("environments_path", environments_path_);
  if (!encrypted_data_bag_secret_path_.empty() && !fs::is_regular_file(encrypted_data_bag_secret_path_))
    cfg.error("encrypted_data_bag_secret_path", "'" + encrypted_data_bag_secret_path_ + "' is not a file");

  if (client_ && !server_url_.empty() && !cookbook_paths_.empty())
    cfg.error("cookbook_paths", "cookbooks come from the Chef server at server_url; cookbook_paths is for local mode");
  std::vector<std::string> read = cookbook_paths_;
  for (const auto* p :
       {&roles_path_, &data_bags_path_, &environments_path_, &encrypted_data_bag_secret_path_, &validation_key_path_})
    if (!p->empty()) read.push_back(*p);
  inputs_ = host_tree_inputs(read);
}

nlohmann::json ChefProvisioner::key_material() const {
  return {{"cookbook_paths", cookbook_paths_},
          {"remote_cookbook_paths", remote_cookbook_paths_},
          {"roles_path", roles_path_},
          {"data_bags_path", data_bags_path_},
          {"environments_path", environments_path_},
          {"encrypted_data_bag_secret_path", encrypted_data_bag_secret_path_},
          {"chef_environment", chef_environment_},
          {"chef_license", chef_license_},
          {"run_list", run_list_},
          {"json", nlohmann::json::parse(json_.dump())},
          {"execute_command", execute_command_},
          {"install_command", install_command_},
          {"version", version_},
          {"skip_install", skip_install_},
          {"prevent_sudo", prevent_sudo_},
          {"staging_directory", staging_dir_},
          {"server_url", server_url_},
          {"node_name", node_name_},
          {"client_key", client_key_},
          {"validation_client_name", validation_client_name_},
          {"ssl_verify_mode", ssl_verify_mode_},
          {"trusted_certs_dir", trusted_certs_dir_},
          {"skip_clean_staging_directory", skip_clean_staging_},
          {"inputs", host_inputs_json(inputs_)}};
}

void ChefProvisioner::run_checked(State& st, const std::string& command, const std::string& what,
                                  ChefErrors* errors) const {
  ToolSinks sinks = tool_sinks(st, [errors](std::string_view l) {
    if (errors) errors->add(l);
  });
  RemoteCommand run;
  run.command = command;
  run.timeout = st.time_left();
  RunResult r = st.communicator->run(run, sinks.out, sinks.err, st.cancel);
  if (r.disconnected) throw BuildError("the connection to the machine dropped while " + what + " ran");
  if (r.status != 0)
    throw CommandFailed(
        errors ? errors->describe(r.status) : what + " failed with exit status " + std::to_string(r.status), r.status);
}

std::string ChefProvisioner::render(const State& st, const std::string& text, const std::string& option, bool sudo,
                                    const std::string& config_path, const std::string& json_path) const {
  interp::Context ctx = st.build.interp;
  for (const auto& [k, v] : st.data) ctx.data[k] = v;
  ctx.data["Sudo"] = sudo ? "true" : "false";
  ctx.data["ConfigPath"] = config_path;
  ctx.data["JsonPath"] = json_path;
  ctx.data["Version"] = version_;
  try {
    return interp::render(text, ctx);
  } catch (const interp::Error& e) {
    throw BuildError("cannot render " + option + " \"" + text + "\": " + e.what());
  }
}

void ChefProvisioner::provision(State& st) {
  if (!st.communicator)
    throw BuildError(tool_ + " runs on the machine, but this build has no communicator (\"communicator\": \"none\")");
  Communicator& comm = *st.communicator;

  bool sudo = false;
  if (!prevent_sudo_) {
    RemoteCommand id;
    id.command = "id -u";
    id.timeout = st.time_left();
    std::string uid;
    RunResult r = comm.run(
        id, [&](std::string_view l) { uid += l; }, nullptr, st.cancel);
    sudo = !(r.succeeded() && util::trim(uid) == "0");
  }
  std::string config_path = staging_dir_ + (client_ ? "/client.rb" : "/solo.rb");
  std::string json_path = staging_dir_ + "/node.json";

  if (!skip_install_) {
    std::string install = install_command_.empty()
                              ? "curl -L https://omnitruck.chef.io/install.sh | " + std::string(sudo ? "sudo " : "") +
                                    "bash -s --" + (version_.empty() ? "" : " -v " + quote(version_))
                              : render(st, install_command_, "install_command", sudo, config_path, json_path);
    st.message("installing Chef: " + install);
    run_checked(st, install, "the Chef installation", nullptr);
  }

  st.message("creating the staging directory " + staging_dir_);
  run_quiet(st, "mkdir -p " + quote(staging_dir_) + " && chmod 0700 " + quote(staging_dir_),
            "create the staging directory " + staging_dir_);

  chef::SoloSettings settings;
  for (size_t i = 0; i < cookbook_paths_.size(); ++i) {
    std::string remote = staging_dir_ + "/cookbooks-" + std::to_string(i);
    st.message("uploading the cookbooks in " + cookbook_paths_[i]);
    comm.upload(cookbook_paths_[i], remote, st.cancel);
    settings.paths.cookbook_paths.push_back(remote);
  }
  for (const auto& p : remote_cookbook_paths_) settings.paths.cookbook_paths.push_back(p);
  auto stage_dir = [&](const std::string& local, const char* name, std::string& remote_out) {
    if (local.empty()) return;
    remote_out = staging_dir_ + "/" + name;
    st.message("uploading " + std::string(name) + " from " + local);
    comm.upload(local, remote_out, st.cancel);
  };
  stage_dir(roles_path_, "roles", settings.paths.roles_path);
  stage_dir(data_bags_path_, "data_bags", settings.paths.data_bags_path);
  stage_dir(environments_path_, "environments", settings.paths.environments_path);
  stage_dir(encrypted_data_bag_secret_path_, "encrypted_data_bag_secret",
            settings.paths.encrypted_data_bag_secret_path);
  settings.chef_environment = chef_environment_;
  settings.chef_license = chef_license_;

  std::string config;
  if (client_) {
    chef::ClientSettings cs;
    cs.paths = settings.paths;
    cs.chef_environment = chef_environment_;
    cs.chef_license = chef_license_;
    cs.node_name = node_name_;
    cs.chef_server_url = server_url_;
    if (server_url_.empty()) {
      cs.node_path = staging_dir_ + "/nodes";
    } else {
      cs.client_key = client_key_.empty() ? staging_dir_ + "/client.pem" : client_key_;
      cs.validation_client_name = validation_client_name_;
      if (!validation_key_path_.empty()) {
        cs.validation_key = staging_dir_ + "/validation.pem";
        comm.upload(validation_key_path_, cs.validation_key, st.cancel);
      }
      cs.ssl_verify_mode = ssl_verify_mode_;
      cs.trusted_certs_dir = trusted_certs_dir_;
    }
    config = chef::client_rb(cs);
  } else {
    config = chef::solo_rb(settings);
  }
  {
    TempFile file(config, client_ ? "imgbake-client" : "imgbake-solo", 0600, ".rb");
    comm.upload(file.path(), config_path, st.cancel);
    // The node JSON can hold secrets (attributes from sensitive variables): mode 0600.
    TempFile node(chef::node_json(json_, run_list_), "imgbake-node", 0600, ".json");
    comm.upload(node.path(), json_path, st.cancel);
  }

  std::string command = execute_command_.empty()
                            ? std::string(sudo ? "sudo " : "") + tool_ +
                                  (client_ && server_url_.empty() ? " --local-mode" : "") + " --no-color -c " +
                                  quote(config_path) + " -j " + quote(json_path)
                            : render(st, execute_command_, "execute_command", sudo, config_path, json_path);
  st.message("running " + tool_ + ": " + command);
  ChefErrors errors(tool_);
  // After the run, failed or not: chef-client's staging directory goes (unless
  // skip_clean_staging_directory); chef-solo keeps its staging directory, as Packer does, but never
  // the files that hold secrets (the data bag key, node.json's attributes, the validator key), which
  // would otherwise be baked into the image.
  auto clean = [&] {
    if (client_ && !skip_clean_staging_) {
      st.message("removing the staging directory " + staging_dir_);
      remove_on_machine(st, {staging_dir_}, sudo, "remove the staging directory " + staging_dir_);
      return;
    }
    std::vector<std::string> secrets = {json_path};
    if (!settings.paths.encrypted_data_bag_secret_path.empty())
      secrets.push_back(settings.paths.encrypted_data_bag_secret_path);
    if (client_ && !validation_key_path_.empty() && !server_url_.empty())
      secrets.push_back(staging_dir_ + "/validation.pem");
    st.message("removing the files that hold secrets: " + util::join(secrets, ", "));
    remove_on_machine(st, secrets, sudo, "remove " + util::join(secrets, ", "));
  };
  try {
    run_checked(st, command, tool_, &errors);
  } catch (...) {
    clean();
    throw;
  }
  clean();
}

class ChefSolo : public ChefProvisioner {
 public:
  ChefSolo() : ChefProvisioner(false) {}
};

class ChefClient : public ChefProvisioner {
 public:
  ChefClient() : ChefProvisioner(true) {}
};

}  // namespace
}  // namespace imgbake

IMGBAKE_REGISTER_PROVISIONER("chef-solo", imgbake::ChefSolo)
IMGBAKE_REGISTER_PROVISIONER("chef-client", imgbake::ChefClient)
