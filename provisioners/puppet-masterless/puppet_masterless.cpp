// The "puppet-masterless" provisioner (Packer's): uploads a manifest (file or directory), module
// paths and a hiera config into a staging directory on the machine and runs `puppet apply
// --detailed-exitcodes` there through the build's communicator. Exit 0 and 2 (changes applied)
// are success; 4 and 6 are failures, reported with the resources that failed.
#include <filesystem>
#include <map>
#include <optional>
#include <regex>
#include <string>
#include <vector>

#include "imgbake/communicator.h"
#include "imgbake/error.h"
#include "imgbake/interpolate.h"
#include "imgbake/provisioner.h"
#include "imgbake/util.h"
#include "puppet_errors.h"

namespace imgbake {
namespace {

namespace fs = std::filesystem;

std::string quote(const std::string& v) { return "'" + escape_single_quotes(v) + "'"; }

std::string base_name(std::string p) {
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  return fs::path(p).filename().string();
}

class PuppetMasterless : public Provisioner {
 public:
  std::set<std::string> runtime_keys() const override { return {"execute_command"}; }
  void prepare(ConfigReader& cfg) override;
  void provision(State& st) override;
  nlohmann::json key_material() const override;
  std::vector<HostInput> host_inputs() const override { return inputs_; }

 private:
  // Runs a command on the machine that must succeed (mkdir, rm), quietly.

  std::string manifest_file_;
  std::string manifest_dir_;
  std::vector<std::string> module_paths_;
  std::string hiera_config_path_;
  std::map<std::string, std::string> facter_;
  std::vector<std::string> extra_arguments_;
  std::string execute_command_;  // "" = the default
  std::string staging_dir_ = "/tmp/packer-puppet-masterless";
  std::string working_dir_;
  std::string puppet_bin_dir_;
  bool ignore_exit_codes_ = false;
  bool prevent_sudo_ = false;
  bool clean_staging_ = false;
  std::vector<HostInput> inputs_;
};

void PuppetMasterless::prepare(ConfigReader& cfg) {
  manifest_file_ = cfg.string("manifest_file");
  manifest_dir_ = cfg.string("manifest_dir");
  module_paths_ = cfg.strings("module_paths");
  hiera_config_path_ = cfg.string("hiera_config_path");
  facter_ = cfg.string_map("facter");
  extra_arguments_ = cfg.strings("extra_arguments");
  execute_command_ = cfg.string("execute_command");
  staging_dir_ = cfg.string("staging_directory", staging_dir_);
  working_dir_ = cfg.string("working_directory", staging_dir_);
  puppet_bin_dir_ = cfg.string("puppet_bin_dir");
  ignore_exit_codes_ = cfg.boolean("ignore_exit_codes", false);
  prevent_sudo_ = cfg.boolean("prevent_sudo", false);
  clean_staging_ = cfg.boolean("clean_staging_directory", false);
  std::string os = cfg.string("guest_os_type", "unix");
  if (os == "windows")
    cfg.error("guest_os_type", "\"windows\" guests are not supported by imgbake's puppet-masterless (only \"unix\")");
  else if (os != "unix")
    cfg.error("guest_os_type",
              "must be \"unix\" (or Packer's \"windows\", which imgbake does not support), not \"" + os + "\"");
  if (execute_command_.find("{{if") != std::string::npos || execute_command_.find("{{ if") != std::string::npos)
    cfg.error("execute_command",
              "Go template control actions ({{if}}…{{end}}) are not supported; use the values directly "
              "({{.FacterVars}}, {{.Sudo}}, {{.ModulePath}}, …)");

  cfg.require("manifest_file");
  check_host_path(cfg, "manifest_file", manifest_file_, HostPathKind::Any);
  check_host_path(cfg, "manifest_dir", manifest_dir_, HostPathKind::Directory);
  for (const auto& m : module_paths_) check_host_path(cfg, "module_paths", m, HostPathKind::Directory);
  if (fs::is_directory(hiera_config_path_))
    cfg.error("hiera_config_path", "'" + hiera_config_path_ + "' is a directory; name the hiera.yaml file");
  else
    check_host_path(cfg, "hiera_config_path", hiera_config_path_, HostPathKind::File);
  for (const auto& [k, v] : facter_)
    if (k.empty() ||
        k.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") != std::string::npos)
      cfg.error("facter", "fact name '" + k + "' must be letters, digits and '_' (it becomes FACTER_" + k + ")");

  std::vector<std::string> read = {manifest_file_};
  if (!manifest_dir_.empty()) read.push_back(manifest_dir_);
  read.insert(read.end(), module_paths_.begin(), module_paths_.end());
  if (!hiera_config_path_.empty()) read.push_back(hiera_config_path_);
  if (!manifest_file_.empty()) inputs_ = host_tree_inputs(read);
}

nlohmann::json PuppetMasterless::key_material() const {
  return {{"manifest_file", manifest_file_},
          {"manifest_dir", manifest_dir_},
          {"module_paths", module_paths_},
          {"hiera_config_path", hiera_config_path_},
          {"facter", facter_},
          {"extra_arguments", extra_arguments_},
          {"execute_command", execute_command_},
          {"staging_directory", staging_dir_},
          {"working_directory", working_dir_},
          {"puppet_bin_dir", puppet_bin_dir_},
          {"ignore_exit_codes", ignore_exit_codes_},
          {"prevent_sudo", prevent_sudo_},
          {"clean_staging_directory", clean_staging_},
          {"inputs", host_inputs_json(inputs_)}};
}

void PuppetMasterless::provision(State& st) {
  if (!st.communicator)
    throw BuildError(
        "puppet-masterless runs puppet on the machine, but this build has no communicator "
        "(\"communicator\": \"none\")");
  Communicator& comm = *st.communicator;
  // Remote paths of what is uploaded, and back to the local ones for error messages.
  std::map<std::string, std::string> remote_to_local;

  st.message("creating the staging directory " + staging_dir_);
  run_quiet(st, "mkdir -p " + quote(staging_dir_) + " && chmod 0700 " + quote(staging_dir_),
            "create the staging directory " + staging_dir_);

  std::string hiera_remote;
  if (!hiera_config_path_.empty()) {
    hiera_remote = staging_dir_ + "/hiera.yaml";
    st.message("uploading the hiera configuration " + hiera_config_path_);
    comm.upload(hiera_config_path_, hiera_remote, st.cancel);
    remote_to_local[hiera_remote] = hiera_config_path_;
  }
  std::string manifest_dir_remote;
  if (!manifest_dir_.empty()) {
    manifest_dir_remote = staging_dir_ + "/manifests";
    st.message("uploading the manifest directory " + manifest_dir_);
    comm.upload(manifest_dir_, manifest_dir_remote, st.cancel);
    remote_to_local[manifest_dir_remote] = manifest_dir_;
  }
  std::vector<std::string> modules_remote;
  for (size_t i = 0; i < module_paths_.size(); ++i) {
    std::string remote = staging_dir_ + "/module-" + std::to_string(i);
    st.message("uploading the module path " + module_paths_[i]);
    comm.upload(module_paths_[i], remote, st.cancel);
    modules_remote.push_back(remote);
    remote_to_local[remote] = module_paths_[i];
  }
  std::string manifest_remote;
  if (fs::is_directory(manifest_file_)) {
    manifest_remote = staging_dir_ + "/manifests";
    st.message("uploading the manifests in " + manifest_file_);
    comm.upload(manifest_file_, manifest_remote, st.cancel);
  } else {
    run_quiet(st, "mkdir -p " + quote(staging_dir_ + "/manifests"), "create " + staging_dir_ + "/manifests");
    manifest_remote = staging_dir_ + "/manifests/" + base_name(manifest_file_);
    st.message("uploading the manifest " + manifest_file_);
    comm.upload(manifest_file_, manifest_remote, st.cancel);
  }
  remote_to_local[manifest_remote] = manifest_file_;

  // Packer's default facts, then the template's.
  std::map<std::string, std::string> facts = {{"packer_build_name", st.build.name},
                                              {"packer_builder_type", st.build.type}};
  for (const auto& [k, v] : facter_) facts[k] = v;
  std::string facter_vars;
  for (const auto& [k, v] : facts) facter_vars += (facter_vars.empty() ? "" : " ") + ("FACTER_" + k + "=" + quote(v));

  // Packer runs puppet through sudo unless prevent_sudo; a build that is root already (the
  // rootfs builder, a root SSH user) has no need for it, and a minimal image has no sudo.
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

  std::string module_path = util::join(modules_remote, ":");
  std::string extra = util::join(extra_arguments_, " ");
  // Puppet's state (reports with every resource's message, the file bucket, an SSL directory)
  // goes to the staging directory, not into the image.
  std::string state = staging_dir_ + "/.puppet";
  std::string state_dirs;
  for (const char* dir : {"vardir", "rundir", "ssldir", "logdir", "publicdir"})
    state_dirs += std::string("--") + dir + "=" +
                  quote(state + "/" + std::string(dir).substr(0, std::string(dir).size() - 3)) + " ";
  std::string command;
  if (execute_command_.empty()) {
    command = "cd " + quote(working_dir_) + " && " + facter_vars + " " + (sudo ? "sudo -E " : "") +
              (puppet_bin_dir_.empty() ? "" : puppet_bin_dir_ + "/") +
              "puppet apply --detailed-exitcodes --color=false " + state_dirs + (st.build.debug ? "--debug " : "") +
              (module_path.empty() ? "" : "--modulepath=" + quote(module_path) + " ") +
              (hiera_remote.empty() ? "" : "--hiera_config=" + quote(hiera_remote) + " ") +
              (extra.empty() ? "" : extra + " ") + quote(manifest_remote);
  } else {
    interp::Context ctx = st.build.interp;
    for (const auto& [k, v] : st.data) ctx.data[k] = v;
    ctx.data["WorkingDir"] = working_dir_;
    ctx.data["FacterVars"] = facter_vars;
    ctx.data["HieraConfigPath"] = hiera_remote;
    ctx.data["ModulePath"] = module_path;
    ctx.data["ModulePathJoiner"] = ":";
    ctx.data["ManifestFile"] = manifest_remote;
    ctx.data["ManifestDir"] = manifest_dir_remote;
    ctx.data["PuppetBinDir"] = puppet_bin_dir_;
    ctx.data["Sudo"] = sudo ? "true" : "false";
    ctx.data["ExtraArguments"] = extra;
    ctx.data["Debug"] = st.build.debug ? "true" : "false";
    try {
      command = interp::render(execute_command_, ctx);
    } catch (const interp::Error& e) {
      throw BuildError("cannot render execute_command \"" + execute_command_ + "\": " + e.what());
    }
  }

  st.message("running puppet: " + command);
  PuppetErrors errors;
  ToolSinks sinks = tool_sinks(st, [&](std::string_view l) { errors.add(l); });
  RemoteCommand run;
  run.command = command;
  run.timeout = st.time_left();
  // puppet ran through sudo wrote root-owned state under the staging directory: removed with the
  // same sudo, whatever puppet's result, and a failure to remove it never hides that result.
  auto clean = [&] {
    if (!clean_staging_) return;
    st.message("removing the staging directory " + staging_dir_);
    remove_on_machine(st, {staging_dir_}, sudo, "remove the staging directory " + staging_dir_);
  };
  RunResult result;
  try {
    result = comm.run(run, sinks.out, sinks.err, st.cancel);
  } catch (...) {
    clean();
    throw;
  }
  clean();
  if (result.disconnected) throw BuildError("the connection to the machine dropped while puppet ran");
  if (result.status == 0 || result.status == 2) {
    st.message(result.status == 2 ? "puppet applied changes (exit status 2)"
                                  : "puppet changed nothing (exit status 0)");
    return;
  }
  if (ignore_exit_codes_) {
    st.ui.warn(st.build.name,
               "puppet exited with status " + std::to_string(result.status) + "; ignored (ignore_exit_codes)");
    return;
  }
  throw CommandFailed("puppet apply " + errors.describe(result.status, remote_to_local) +
                          " (set \"ignore_exit_codes\": true to accept any status)",
                      result.status);
}

}  // namespace
}  // namespace imgbake

IMGBAKE_REGISTER_PROVISIONER("puppet-masterless", imgbake::PuppetMasterless)
