// The "ansible" provisioner (Packer's): runs ansible-playbook on the host against the machine
// being built. Two ways in:
//  - over SSH, straight to the build's endpoint with its key (the qemu builder: 127.0.0.1 and the
//    forwarded port), as Packer does with use_proxy false;
//  - through the build's communicator, with the "imgbake" connection plugin and a proxy socket
//    (communicator_proxy.h): a rootfs build's tree is reached through its exec sandbox, the
//    same one the shell provisioner uses. Packer's default (use_proxy true) proxies too, over
//    an SSH server of its own; imgbake's proxy is a local socket instead.
// ansible's temporary files on the machine live in /tmp/.imgbake-ansible-RUN (removed afterwards)
// and on the host in this process's private temporary directory, so neither the image nor the
// user's ~/.ansible keeps traces of the run.
#include <sys/stat.h>

#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "communicator_proxy.h"
#include "connection_plugin.h"
#include "imgbake/ansible_output.h"
#include "imgbake/communicator.h"
#include "imgbake/error.h"
#include "imgbake/process.h"
#include "imgbake/provisioner.h"
#include "imgbake/shell_local.h"
#include "imgbake/temp_file.h"
#include "imgbake/temp_path_guard.h"
#include "imgbake/util.h"

namespace imgbake {
namespace {

namespace fs = std::filesystem;

// Directories next to a playbook that ansible reads by itself: their files enter the step's key.
constexpr const char* kPlaybookSiblings[] = {"roles",    "group_vars",  "host_vars",      "library",
                                             "files",    "templates",   "vars",           "tasks",
                                             "handlers", "collections", "filter_plugins", "module_utils"};

// ansible-core refuses to start unless the locale's encoding is UTF-8 ("Ansible requires the
// locale encoding to be UTF-8"); CI jobs and service managers often run with none set.
bool locale_is_utf8() {
  for (const char* name : {"LC_ALL", "LC_CTYPE", "LANG"}) {
    const char* v = std::getenv(name);
    if (!v || !*v) continue;
    std::string s = v;
    for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s.find("utf-8") != std::string::npos || s.find("utf8") != std::string::npos;
  }
  return false;
}

void write_text(const fs::path& path, const std::string& text, fs::perms perms) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << text;
  f.close();
  if (!f) throw BuildError("cannot write " + path.string());
  fs::permissions(path, perms);
}

class Ansible : public Provisioner {
 public:
  void prepare(ConfigReader& cfg) override;
  void provision(State& st) override;
  nlohmann::json key_material() const override;
  std::vector<HostInput> host_inputs() const override { return inputs_; }

 private:
  // Runs a program on the host with its output in the build view; throws with what failed.
  void run_host(State& st, const ProcessSpec& spec, const std::string& what) const;

  std::string playbook_file_;
  std::string command_ = "ansible-playbook";
  std::vector<std::string> extra_arguments_;
  std::vector<std::string> ansible_env_vars_;
  std::vector<std::string> ansible_ssh_extra_args_ = {"-o IdentitiesOnly=yes"};
  std::vector<std::string> groups_;
  std::vector<std::string> empty_groups_;
  std::string host_alias_ = "default";
  std::string user_;
  std::string inventory_file_;
  std::string inventory_directory_;
  bool keep_inventory_file_ = false;
  std::string galaxy_file_;
  std::string galaxy_command_ = "ansible-galaxy";
  bool galaxy_force_install_ = false;
  bool galaxy_force_with_deps_ = false;
  std::string roles_path_;
  std::string collections_path_;
  std::optional<bool> use_proxy_;
  std::vector<HostInput> inputs_;
};

void Ansible::prepare(ConfigReader& cfg) {
  playbook_file_ = cfg.string("playbook_file");
  command_ = cfg.string("command", command_);
  extra_arguments_ = cfg.strings("extra_arguments");
  ansible_env_vars_ = cfg.strings("ansible_env_vars");
  if (cfg.has("ansible_ssh_extra_args")) ansible_ssh_extra_args_ = cfg.strings("ansible_ssh_extra_args");
  groups_ = cfg.strings("groups");
  empty_groups_ = cfg.strings("empty_groups");
  host_alias_ = cfg.string("host_alias", host_alias_);
  user_ = cfg.string("user");
  inventory_file_ = cfg.string("inventory_file");
  inventory_directory_ = cfg.string("inventory_directory");
  keep_inventory_file_ = cfg.boolean("keep_inventory_file", false);
  galaxy_file_ = cfg.string("galaxy_file");
  galaxy_command_ = cfg.string("galaxy_command", galaxy_command_);
  galaxy_force_install_ = cfg.boolean("galaxy_force_install", false);
  galaxy_force_with_deps_ = cfg.boolean("galaxy_force_with_deps", false);
  roles_path_ = cfg.string("roles_path");
  collections_path_ = cfg.string("collections_path");
  use_proxy_ = cfg.optional_boolean("use_proxy");
  // Options of Packer's SSH proxy adapter, which imgbake does not run (its proxy is a socket).
  for (const char* key : {"local_port", "sftp_command", "use_sftp", "ssh_host_key_file", "ssh_authorized_key_file",
                          "adapter_key_type", "skip_version_check"}) {
    if (!cfg.has(key)) continue;
    cfg.accept({key});
    cfg.warn(key, std::string("has no effect: imgbake runs no SSH proxy adapter (docs/provisioners/ansible.md)"));
  }

  cfg.require("playbook_file");
  if (host_alias_.empty() || host_alias_.find_first_of(" \t\n[]=") != std::string::npos)
    cfg.error("host_alias", "'" + host_alias_ + "' must be one word (the host's name in the inventory)");
  for (const auto& kv : ansible_env_vars_)
    if (kv.find('=') == std::string::npos || kv[0] == '=')
      cfg.error("ansible_env_vars", "'" + kv + "' is not of the form NAME=VALUE");
  if (!inventory_file_.empty() && (!groups_.empty() || !empty_groups_.empty()))
    cfg.error(groups_.empty() ? "empty_groups" : "groups",
              "groups make a generated inventory; they can't be used with 'inventory_file'");
  check_host_path(cfg, "playbook_file", playbook_file_, HostPathKind::File);
  check_host_path(cfg, "inventory_file", inventory_file_, HostPathKind::File);
  check_host_path(cfg, "galaxy_file", galaxy_file_, HostPathKind::File);
  check_host_path(cfg, "inventory_directory", inventory_directory_, HostPathKind::Directory);
  // galaxy_file installs into roles_path, which it makes; without one, roles_path must exist.
  if (galaxy_file_.empty() || fs::exists(roles_path_))
    check_host_path(cfg, "roles_path", roles_path_, HostPathKind::Directory);
  if (galaxy_file_.empty() || fs::exists(collections_path_))
    check_host_path(cfg, "collections_path", collections_path_, HostPathKind::Directory);

  std::vector<std::string> read;
  if (!playbook_file_.empty()) {
    read.push_back(playbook_file_);
    fs::path dir = fs::path(playbook_file_).parent_path();
    for (const char* sub : kPlaybookSiblings) {
      fs::path p = dir.empty() ? fs::path(sub) : dir / sub;
      std::error_code ec;
      if (fs::is_directory(p, ec)) read.push_back(p.string());
    }
  }
  for (const auto* p : {&inventory_file_, &galaxy_file_, &roles_path_, &collections_path_})
    if (!p->empty() && fs::exists(*p)) read.push_back(*p);
  inputs_ = host_tree_inputs(read);
}

nlohmann::json Ansible::key_material() const {
  return {{"playbook_file", playbook_file_},
          {"command", command_},
          {"extra_arguments", extra_arguments_},
          {"ansible_env_vars", ansible_env_vars_},
          {"ansible_ssh_extra_args", ansible_ssh_extra_args_},
          {"groups", groups_},
          {"empty_groups", empty_groups_},
          {"host_alias", host_alias_},
          {"user", user_},
          {"inventory_file", inventory_file_},
          {"galaxy_file", galaxy_file_},
          {"galaxy_command", galaxy_command_},
          {"galaxy_force_install", galaxy_force_install_},
          {"galaxy_force_with_deps", galaxy_force_with_deps_},
          {"roles_path", roles_path_},
          {"collections_path", collections_path_},
          {"use_proxy", use_proxy_ ? nlohmann::json(*use_proxy_) : nlohmann::json()},
          {"inputs", host_inputs_json(inputs_)}};
}

void Ansible::run_host(State& st, const ProcessSpec& spec, const std::string& what) const {
  AnsibleOutput seen;
  ToolSinks sinks = tool_sinks(st, [&](std::string_view l) { seen.add(l); });
  int status = run_process(spec, sinks.out, sinks.err, st.cancel);
  if (status != 0) throw CommandFailed(seen.describe(what, status), status);
}

void Ansible::provision(State& st) {
  auto data = [&](const char* key) -> std::string {
    auto it = st.data.find(key);
    return it == st.data.end() ? "" : it->second;
  };
  // The build's SSH endpoint, when it has one that ansible's own ssh can log in to.
  bool ssh_endpoint =
      data("ConnType") == "ssh" && !data("Host").empty() && !data("Port").empty() && !data("SSHPrivateKeyFile").empty();
  bool proxy = use_proxy_.value_or(!ssh_endpoint);
  if (!proxy && !ssh_endpoint)
    throw BuildError(
        "use_proxy is false, but this build has no SSH endpoint with a private key for ansible to log in to (a "
        "rootfs build runs commands in a sandbox; a password-only SSH login needs the proxy): remove 'use_proxy'");
  if (proxy && !st.communicator)
    throw BuildError(
        "the ansible provisioner reaches the machine through the build's communicator, but this build has none "
        "(\"communicator\": \"none\")");

  // Private working directory on the host: the plugin, the socket, the inventory, ansible's own
  // temporary files and roles installed from galaxy_file.
  util::TempPathGuard work(process_temp_dir() / ("ansible-" + util::uuid_v4().substr(0, 8)));
  fs::create_directory(work.path());
  fs::permissions(work.path(), fs::perms::owner_all, fs::perm_options::replace);
  std::string remote_tmp = "/tmp/.imgbake-ansible-" + st.build.run_uuid.substr(0, 8);

  std::map<std::string, std::string> env = build_environment(st);
  env["PYTHONUNBUFFERED"] = "1";
  if (!locale_is_utf8()) env["LC_ALL"] = "C.UTF-8";
  env["ANSIBLE_HOST_KEY_CHECKING"] = "False";
  env["ANSIBLE_RETRY_FILES_ENABLED"] = "False";
  env["ANSIBLE_LOCAL_TEMP"] = (work.path() / "tmp").string();
  env["ANSIBLE_REMOTE_TEMP"] = remote_tmp;
  if (!proxy) env["ANSIBLE_SSH_ARGS"] = "-o ControlMaster=no -o UserKnownHostsFile=/dev/null";
  std::string roles_path = roles_path_;
  if (!galaxy_file_.empty() && roles_path.empty()) roles_path = (work.path() / "roles").string();
  if (!roles_path.empty()) env["ANSIBLE_ROLES_PATH"] = roles_path;
  // Collections a galaxy_file installs go to collections_path, else to the work directory, which
  // ansible then searches first.
  std::string collections_path = collections_path_;
  if (!galaxy_file_.empty() && collections_path.empty()) {
    collections_path = (work.path() / "collections").string();
    const char* inherited = std::getenv("ANSIBLE_COLLECTIONS_PATH");
    env["ANSIBLE_COLLECTIONS_PATH"] =
        collections_path + (inherited && *inherited ? ":" + std::string(inherited) : ":~/.ansible/collections");
  } else if (!collections_path_.empty()) {
    env["ANSIBLE_COLLECTIONS_PATH"] = collections_path_;
  }
  std::optional<CommunicatorProxy> server;
  if (proxy) {
    fs::create_directory(work.path() / "connection_plugins");
    write_text(work.path() / "connection_plugins" / "imgbake.py", kImgbakeConnectionPlugin, fs::perms::owner_read);
    env["ANSIBLE_CONNECTION_PLUGINS"] = (work.path() / "connection_plugins").string();
    // One sandbox per module instead of five (mkdir, upload, chmod, run, rm).
    env["ANSIBLE_PIPELINING"] = "True";
    server.emplace(*st.communicator, st.cancel, work.path() / "s", [&st] { return st.time_left(); });
    env["IMGBAKE_ANSIBLE_SOCKET"] = server->socket_path().string();
  }
  // The template's ansible_env_vars win over imgbake's defaults.
  for (const auto& kv : ansible_env_vars_) {
    size_t eq = kv.find('=');
    env[kv.substr(0, eq)] = kv.substr(eq + 1);
  }

  // The inventory: the template's, or one host (host_alias) in the groups asked for.
  std::string inventory = inventory_file_;
  std::optional<util::TempPathGuard> inventory_guard;
  if (inventory.empty()) {
    std::string user = user_.empty() ? data("User") : user_;
    std::string host = host_alias_;
    if (proxy)
      host += " ansible_connection=imgbake";
    else
      host += " ansible_host=" + data("Host") + " ansible_port=" + data("Port") +
              (user.empty() ? "" : " ansible_user=" + user);
    std::string text = host + "\n";
    for (const auto& g : groups_) text += "[" + g + "]\n" + host_alias_ + "\n";
    for (const auto& g : empty_groups_) text += "[" + g + "]\n";
    fs::path dir = inventory_directory_.empty() ? work.path() : fs::path(inventory_directory_);
    fs::path path = dir / ("packer-provisioner-ansible-" + util::uuid_v4().substr(0, 8));
    write_text(path, text, fs::perms::owner_read | fs::perms::owner_write);
    if (!keep_inventory_file_ && !inventory_directory_.empty()) inventory_guard.emplace(path);
    inventory = path.string();
    st.message("inventory " + inventory + ": " + util::join(util::split(util::trim(text), '\n'), "; "));
  }

  // Packer hides the value of every extra_arguments "key=value" whose key says "password" or
  // "secret" (templates rely on it); here such values become secrets of the run, so ansible's own
  // echo of them is masked too.
  for (const auto& arg : extra_arguments_)
    for (const auto& word : util::split(arg, ' ')) {
      size_t eq = word.find('=');
      if (eq == std::string::npos || eq + 1 == word.size()) continue;
      std::string key = word.substr(0, eq);
      for (char& ch : key) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      if (key.find("password") != std::string::npos || key.find("secret") != std::string::npos)
        st.ui.add_secret(word.substr(eq + 1));
    }

  auto cleanup_remote = [&] {
    try {
      if (st.communicator) run_quiet(st, "rm -rf '" + remote_tmp + "'", "remove ansible's temporary directory");
    } catch (const BuildError& e) {
      st.ui.warn(st.build.name, e.what());
    }
  };
  try {
    if (!galaxy_file_.empty()) {
      // As Packer: roles when the file has a roles: section or no collections: one (the old
      // format, a list of roles), collections when it has a collections: section. One
      // `install -r FILE -p ROLES` skips the collections.
      std::string text = util::read_file(galaxy_file_);
      auto has_section = [&](const std::string& key) {
        return text.starts_with(key + ":") || text.find("\n" + key + ":") != std::string::npos;
      };
      bool roles = has_section("roles") || !has_section("collections");
      std::vector<std::pair<std::string, std::vector<std::string>>> installs;
      if (roles) installs.push_back({"roles", {galaxy_command_, "install", "-r", galaxy_file_, "-p", roles_path}});
      if (has_section("collections"))
        installs.push_back(
            {"collections", {galaxy_command_, "collection", "install", "-r", galaxy_file_, "-p", collections_path}});
      for (auto& [what, argv] : installs) {
        if (galaxy_force_install_) argv.emplace_back("-f");
        if (galaxy_force_with_deps_) argv.emplace_back("--force-with-deps");
        ProcessSpec galaxy;
        galaxy.argv = argv;
        galaxy.env_add = env;
        galaxy.timeout = st.time_left();
        st.message("installing " + what + ": " + st.ui.mask(util::join(galaxy.argv, " ")));
        run_host(st, galaxy, util::join({argv[0], argv[1], argv[2]}, " ") + " -r " + galaxy_file_);
      }
    }

    std::string http_addr = data("HTTPIP").empty() ? "" : data("HTTPIP") + ":" + data("HTTPPort");
    ProcessSpec run;
    run.argv = {command_, "-e",
                "packer_build_name=" + st.build.name + " packer_builder_type=" + st.build.type +
                    " packer_http_addr=" + http_addr};
    if (proxy) {
      run.argv.insert(run.argv.end(), {"-c", "imgbake"});
    } else {
      run.argv.insert(run.argv.end(), {"--private-key", data("SSHPrivateKeyFile")});
      if (!ansible_ssh_extra_args_.empty())
        run.argv.push_back("--ssh-extra-args=" + util::join(ansible_ssh_extra_args_, " "));
    }
    run.argv.insert(run.argv.end(), extra_arguments_.begin(), extra_arguments_.end());
    run.argv.insert(run.argv.end(), {"-i", inventory, playbook_file_});
    run.env_add = env;
    run.timeout = st.time_left();
    st.message(std::string("running ansible-playbook on the host, ") +
               (proxy ? "through the build's communicator" : "over SSH to " + data("Host") + ":" + data("Port")) +
               ": " + st.ui.mask(util::join(run.argv, " ")));
    run_host(st, run, "ansible-playbook " + playbook_file_);
  } catch (const BuildError&) {
    server.reset();
    cleanup_remote();
    throw;
  }
  server.reset();
  cleanup_remote();
}

}  // namespace
}  // namespace imgbake

IMGBAKE_REGISTER_PROVISIONER("ansible", imgbake::Ansible)
