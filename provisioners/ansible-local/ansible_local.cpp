// The "ansible-local" provisioner (Packer's): uploads playbooks, roles, group_vars/host_vars and
// an inventory into a staging directory on the machine and runs ansible-playbook there with
// the local connection, through the build's communicator.
//
// Unlike Packer, ansible's own state directory (ANSIBLE_HOME: ~/.ansible, its temporary files)
// is kept in the staging directory, so it does not end up in the image.
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "imgbake/ansible_output.h"
#include "imgbake/communicator.h"
#include "imgbake/error.h"
#include "imgbake/provisioner.h"
#include "imgbake/temp_file.h"
#include "imgbake/util.h"

namespace imgbake {
namespace {

namespace fs = std::filesystem;

std::string quote(const std::string& v) { return "'" + escape_single_quotes(v) + "'"; }

std::string base_name(std::string p) {
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  return fs::path(p).filename().string();
}

class AnsibleLocal : public Provisioner {
 public:
  void prepare(ConfigReader& cfg) override;
  void provision(State& st) override;
  nlohmann::json key_material() const override;
  std::vector<HostInput> host_inputs() const override { return inputs_; }

 private:
  // Runs a command with its output streamed into the build view; throws with what failed.
  void run_tool(State& st, const std::string& command, const std::string& what) const;

  std::string command_ = "PYTHONUNBUFFERED=1 ansible-playbook";
  std::vector<std::string> extra_arguments_;
  std::vector<std::string> playbook_files_;
  std::string playbook_dir_;
  std::vector<std::string> playbook_paths_;
  std::vector<std::string> role_paths_;
  std::string group_vars_;
  std::string host_vars_;
  std::string inventory_file_;
  std::vector<std::string> inventory_groups_;
  std::string galaxy_file_;
  std::string galaxy_command_ = "ansible-galaxy";
  std::string staging_dir_;  // "" = /tmp/packer-provisioner-ansible-local/<uuid>
  bool clean_staging_ = false;
  std::vector<HostInput> inputs_;
};

void AnsibleLocal::prepare(ConfigReader& cfg) {
  command_ = cfg.string("command", command_);
  extra_arguments_ = cfg.strings("extra_arguments");
  std::string playbook_file = cfg.string("playbook_file");
  std::vector<std::string> playbook_files = cfg.strings("playbook_files");
  playbook_dir_ = cfg.string("playbook_dir");
  playbook_paths_ = cfg.strings("playbook_paths");
  role_paths_ = cfg.strings("role_paths");
  group_vars_ = cfg.string("group_vars");
  host_vars_ = cfg.string("host_vars");
  inventory_file_ = cfg.string("inventory_file");
  inventory_groups_ = cfg.strings("inventory_groups");
  galaxy_file_ = cfg.string("galaxy_file");
  galaxy_command_ = cfg.string("galaxy_command", galaxy_command_);
  staging_dir_ = cfg.string("staging_directory");
  clean_staging_ = cfg.boolean("clean_staging_directory", false);

  if (!playbook_file.empty() && !playbook_files.empty())
    cfg.error("playbook_files", "give either 'playbook_file' or 'playbook_files', not both");
  else if (playbook_file.empty() && playbook_files.empty())
    cfg.error("one of 'playbook_file' or 'playbook_files' is required");
  playbook_files_ = playbook_file.empty() ? playbook_files : std::vector<std::string>{playbook_file};
  if (!inventory_file_.empty() && !inventory_groups_.empty())
    cfg.error("inventory_groups", "'inventory_groups' makes an inventory; it can't be used with 'inventory_file'");

  using enum HostPathKind;
  for (const auto& p : playbook_files_)
    check_host_path(cfg, playbook_file.empty() ? "playbook_files" : "playbook_file", p, File);
  check_host_path(cfg, "playbook_dir", playbook_dir_, Directory);
  for (const auto& p : playbook_paths_) check_host_path(cfg, "playbook_paths", p, Directory);
  for (const auto& p : role_paths_) check_host_path(cfg, "role_paths", p, Directory);
  check_host_path(cfg, "group_vars", group_vars_, Directory);
  check_host_path(cfg, "host_vars", host_vars_, Directory);
  check_host_path(cfg, "inventory_file", inventory_file_, File);
  check_host_path(cfg, "galaxy_file", galaxy_file_, File);

  std::vector<std::string> read = playbook_files_;
  for (const auto* dir : {&playbook_dir_, &group_vars_, &host_vars_, &inventory_file_, &galaxy_file_})
    if (!dir->empty()) read.push_back(*dir);
  read.insert(read.end(), playbook_paths_.begin(), playbook_paths_.end());
  read.insert(read.end(), role_paths_.begin(), role_paths_.end());
  inputs_ = host_tree_inputs(read);
}

nlohmann::json AnsibleLocal::key_material() const {
  return {{"command", command_},
          {"extra_arguments", extra_arguments_},
          {"playbook_files", playbook_files_},
          {"playbook_dir", playbook_dir_},
          {"playbook_paths", playbook_paths_},
          {"role_paths", role_paths_},
          {"group_vars", group_vars_},
          {"host_vars", host_vars_},
          {"inventory_file", inventory_file_},
          {"inventory_groups", inventory_groups_},
          {"galaxy_file", galaxy_file_},
          {"galaxy_command", galaxy_command_},
          {"staging_directory", staging_dir_},
          {"clean_staging_directory", clean_staging_},
          {"inputs", host_inputs_json(inputs_)}};
}

void AnsibleLocal::run_tool(State& st, const std::string& command, const std::string& what) const {
  AnsibleOutput seen;
  ToolSinks sinks = tool_sinks(st, [&](std::string_view l) { seen.add(l); });
  RemoteCommand run;
  run.command = command;
  run.timeout = st.time_left();
  RunResult r = st.communicator->run(run, sinks.out, sinks.err, st.cancel);
  if (r.disconnected) throw BuildError("the connection to the machine dropped while " + what + " ran");
  if (r.status != 0) throw CommandFailed(seen.describe(what, r.status), r.status);
}

void AnsibleLocal::provision(State& st) {
  if (!st.communicator)
    throw BuildError(
        "ansible-local runs ansible-playbook on the machine, but this build has no communicator "
        "(\"communicator\": \"none\"); the ansible provisioner runs it on the host");
  Communicator& comm = *st.communicator;
  std::string staging =
      staging_dir_.empty() ? "/tmp/packer-provisioner-ansible-local/" + util::uuid_v4() : staging_dir_;
  std::string q = quote(staging);

  st.message("creating the staging directory " + staging);
  run_quiet(st, "mkdir -p " + q + " && chmod 0700 " + q, "create the staging directory " + staging);

  // Packer's layout of the staging directory.
  if (!playbook_dir_.empty()) {
    st.message("uploading the playbook directory " + playbook_dir_);
    comm.upload(playbook_dir_, staging, st.cancel);
  }
  std::vector<std::string> playbooks;
  for (const auto& p : playbook_files_) {
    std::string remote = staging + "/" + base_name(p);
    st.message("uploading the playbook " + p);
    comm.upload(p, remote, st.cancel);
    playbooks.push_back(remote);
  }
  for (const auto& p : playbook_paths_) {
    st.message("uploading the playbook path " + p);
    comm.upload(p, staging + "/playbooks", st.cancel);
  }
  for (const auto& p : role_paths_) {
    st.message("uploading the role " + p);
    comm.upload(p, staging + "/roles/" + base_name(p), st.cancel);
  }
  if (!group_vars_.empty()) {
    st.message("uploading group_vars " + group_vars_);
    comm.upload(group_vars_, staging + "/group_vars", st.cancel);
  }
  if (!host_vars_.empty()) {
    st.message("uploading host_vars " + host_vars_);
    comm.upload(host_vars_, staging + "/host_vars", st.cancel);
  }
  std::string inventory;
  if (!inventory_file_.empty()) {
    inventory = staging + "/" + base_name(inventory_file_);
    st.message("uploading the inventory " + inventory_file_);
    comm.upload(inventory_file_, inventory, st.cancel);
  } else {
    std::string text;
    for (const auto& g : inventory_groups_) text += "[" + g + "]\n127.0.0.1\n";
    if (text.empty()) text = "127.0.0.1\n";
    inventory = staging + "/packer-provisioner-ansible-local-inventory";
    TempFile local(text, "imgbake-inventory", 0644);
    comm.upload(local.path(), inventory, st.cancel);
  }
  // ansible keeps its state and temporary files under ANSIBLE_HOME (~/.ansible by default).
  std::string env =
      "ANSIBLE_HOME=\"$PWD/.ansible\" ANSIBLE_LOCAL_TEMP=\"$PWD/.ansible/tmp\" "
      "ANSIBLE_REMOTE_TEMP=\"$PWD/.ansible/tmp\" ";
  if (!galaxy_file_.empty()) {
    std::string remote = staging + "/" + base_name(galaxy_file_);
    st.message("uploading the galaxy file " + galaxy_file_);
    comm.upload(galaxy_file_, remote, st.cancel);
    std::string galaxy = "cd " + q + " && " + env + galaxy_command_ + " install -r " + quote(remote) + " -p " +
                         quote(staging + "/roles");
    st.message("installing roles: " + galaxy);
    run_tool(st, galaxy, galaxy_command_ + " install");
  }

  auto data = [&](const char* key) -> std::string {
    auto it = st.data.find(key);
    return it == st.data.end() ? "" : it->second;
  };
  std::string http_addr = data("HTTPIP").empty() ? "" : data("HTTPIP") + ":" + data("HTTPPort");
  std::string extra_vars = "--extra-vars \"packer_build_name=" + st.build.name +
                           " packer_builder_type=" + st.build.type + " packer_http_addr=" + http_addr + "\"";
  std::string extra = util::join(extra_arguments_, " ");
  for (size_t i = 0; i < playbooks.size(); ++i) {
    std::string command = "cd " + q + " && " + env + command_ + " " + quote(playbooks[i]) + " " + extra_vars +
                          (extra.empty() ? "" : " " + extra) + " -c local -i " + quote(inventory);
    st.message("running ansible-playbook " + playbook_files_[i] + ": " + command);
    try {
      run_tool(st, command, "ansible-playbook " + playbook_files_[i]);
    } catch (const BuildError&) {
      if (clean_staging_) {
        try {
          run_quiet(st, "rm -rf " + q, "remove the staging directory " + staging);
        } catch (const BuildError& e) {
          st.ui.warn(st.build.name, e.what());
        }
      }
      throw;
    }
  }
  if (clean_staging_) {
    st.message("removing the staging directory " + staging);
    run_quiet(st, "rm -rf " + q, "remove the staging directory " + staging);
  }
}

}  // namespace
}  // namespace imgbake

IMGBAKE_REGISTER_PROVISIONER("ansible-local", imgbake::AnsibleLocal)
