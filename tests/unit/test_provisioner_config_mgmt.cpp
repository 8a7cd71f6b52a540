// The configuration-management provisioners (puppet-masterless, ansible-local, ansible, chef-solo,
// chef-client) against a fake communicator: the staged uploads and the command lines they run, what a failure says,
// the host files in their keys and provenance. Also the readers of the tools' output and Chef's
// generated files. The real tools run in tests/e2e/test_config_mgmt.sh.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ansible/communicator_proxy.h"
#include "chef/chef_files.h"
#include "imgbake/ansible_output.h"
#include "imgbake/cancel.h"
#include "imgbake/communicator.h"
#include "imgbake/config.h"
#include "imgbake/error.h"
#include "imgbake/json.h"
#include "imgbake/pipeline.h"
#include "imgbake/provisioner.h"
#include "imgbake/ui.h"
#include "imgbake/util.h"
#include "puppet-masterless/puppet_errors.h"

namespace {

namespace fs = std::filesystem;
using imgbake::AnsibleOutput;
using imgbake::BuildInfo;
using imgbake::CancelToken;
using imgbake::CommandFailed;
using imgbake::Communicator;
using imgbake::ConfigReader;
using imgbake::Diagnostics;
using imgbake::LineSink;
using imgbake::Provisioner;
using imgbake::ProvisionerRegistry;
using imgbake::RemoteCommand;
using imgbake::RunResult;
using imgbake::State;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

void WriteFile(const fs::path& p, const std::string& text) {
  if (p.has_parent_path()) fs::create_directories(p.parent_path());
  std::ofstream(p) << text;
}

std::string ReadFile(const fs::path& p) {
  std::ifstream in(p);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Records uploads (with their content) and commands; the command that matches `tool` prints
// `tool_output` and exits with `tool_status`. `id -u` answers `uid`.
class FakeMachine : public Communicator {
 public:
  RunResult run(const RemoteCommand& cmd, const LineSink& out, const LineSink& err, const CancelToken&) override {
    commands.push_back(cmd.command);
    if (cmd.command == "id -u") {
      if (out) out(uid);
      return RunResult::exited(0);
    }
    if (!failing.empty() && cmd.command.find(failing) != std::string::npos) {
      if (err) err("rm: cannot remove 'x': Permission denied");
      return RunResult::exited(1);
    }
    if (!tool.empty() && cmd.command.find(tool) != std::string::npos) {
      for (const auto& l : tool_output)
        if (l.starts_with("!")) {
          if (err) err(l.substr(1));
        } else if (out) {
          out(l);
        }
      return RunResult::exited(tool_status);
    }
    return RunResult::exited(0);
  }
  void upload(const std::string& local, const std::string& remote, const CancelToken&) override {
    uploads.push_back(remote);
    if (fs::is_regular_file(local)) contents[remote] = ReadFile(local);
  }
  void download(const std::string&, const std::string&, const CancelToken&) override {}

  std::vector<std::string> commands;
  std::vector<std::string> uploads;
  std::map<std::string, std::string> contents;
  std::string uid = "0";
  std::string tool;
  std::string failing;  // a command containing this fails (exit 1, "Permission denied")
  std::vector<std::string> tool_output;
  int tool_status = 0;
};

class ConfigMgmtTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("imgbake-cm-" + imgbake::util::uuid_v4());
    fs::create_directories(dir_);
    old_cwd_ = fs::current_path();
    fs::current_path(dir_);
    masker_ = std::make_shared<imgbake::Masker>();
    masker_->add("hunter2-secret");
    ui_out_ = std::fopen((dir_ / "events.jsonl").c_str(), "w");
    ui_ = std::make_unique<imgbake::Ui>(imgbake::OutputMode::Json, ui_out_, ui_out_, false, masker_);
  }
  void TearDown() override {
    std::fclose(ui_out_);
    fs::current_path(old_cwd_);
    fs::remove_all(dir_);
  }

  std::unique_ptr<Provisioner> Prepare(const std::string& type, const std::string& text, Diagnostics& diags) {
    auto p = ProvisionerRegistry::instance().create(type);
    imgbake::json::Value v = imgbake::json::parse(text);
    ConfigReader reader(v, "t.json", "provisioner 1 (" + type + ")", diags);
    p->prepare(reader);
    reader.finish();
    return p;
  }
  std::unique_ptr<Provisioner> Make(const std::string& type, const std::string& text) {
    Diagnostics diags;
    auto p = Prepare(type, text, diags);
    for (const auto& d : diags.items()) ADD_FAILURE() << d.str();
    return p;
  }
  std::string Errors(const std::string& type, const std::string& text) {
    Diagnostics diags;
    Prepare(type, text, diags);
    std::string out;
    for (const auto& d : diags.items()) out += d.str() + "\n";
    return out;
  }
  void Provision(Provisioner& p, const std::map<std::string, std::string>& data = {}) {
    BuildInfo info;
    info.name = "web";
    info.type = "rootfs";
    info.run_uuid = "0123456789abcdef";
    State st(*ui_, cancel_, info);
    st.communicator = &machine_;
    st.data = data;
    p.provision(st);
  }
  std::string Events() {
    std::fflush(ui_out_);
    return ReadFile(dir_ / "events.jsonl");
  }

  fs::path dir_;
  fs::path old_cwd_;
  std::shared_ptr<imgbake::Masker> masker_;
  FILE* ui_out_ = nullptr;
  std::unique_ptr<imgbake::Ui> ui_;
  CancelToken cancel_;
  FakeMachine machine_;
};

// --- host files in keys and provenance ----------------------------------------------------

TEST_F(ConfigMgmtTest, HostTreeInputsListEveryFileOfATreeInPathOrder) {
  WriteFile("roles/web/tasks/main.yml", "- debug: msg=hi\n");
  WriteFile("roles/web/defaults/main.yml", "port: 80\n");
  WriteFile("site.yml", "- hosts: all\n");
  auto inputs = imgbake::host_tree_inputs({"site.yml", "roles", "nope"});
  ASSERT_EQ(inputs.size(), 4u);
  EXPECT_EQ(inputs[0].path, "site.yml");
  EXPECT_EQ(inputs[1].path, "roles/web/defaults/main.yml");
  EXPECT_EQ(inputs[2].path, "roles/web/tasks/main.yml");
  EXPECT_EQ(inputs[2].sha256, imgbake::util::sha256_hex("- debug: msg=hi\n"));
  EXPECT_EQ(inputs[3].path, "nope");
  EXPECT_EQ(inputs[3].sha256, "missing");
}

TEST_F(ConfigMgmtTest, ChangingOneRoleFileChangesTheKeyUnderItsPath) {
  WriteFile("site.yml", "- hosts: all\n");
  WriteFile("roles/web/tasks/main.yml", "a\n");
  const std::string cfg = R"({"playbook_file": "site.yml", "role_paths": ["roles/web"]})";
  nlohmann::json before = Make("ansible-local", cfg)->key_material();
  WriteFile("roles/web/tasks/main.yml", "b\n");
  auto after_p = Make("ansible-local", cfg);
  nlohmann::json after = after_p->key_material();
  EXPECT_NE(before, after);
  EXPECT_NE(before["inputs"]["roles/web/tasks/main.yml"], after["inputs"]["roles/web/tasks/main.yml"]);
  EXPECT_EQ(before["inputs"]["site.yml"], after["inputs"]["site.yml"]);
  ASSERT_EQ(after_p->host_inputs().size(), 2u);
  EXPECT_EQ(after_p->host_inputs()[1].path, "roles/web/tasks/main.yml");
}

// --- puppet-masterless ---------------------------------------------------------------------

TEST_F(ConfigMgmtTest, PuppetStagesFilesAndRunsPuppetApplyLikePacker) {
  WriteFile("manifests/site.pp", "include motd\n");
  WriteFile("modules/motd/manifests/init.pp", "class motd {}\n");
  WriteFile("hiera.yaml", "version: 5\n");
  auto p = Make("puppet-masterless", R"({"manifest_file": "manifests/site.pp", "module_paths": ["modules"],
      "hiera_config_path": "hiera.yaml", "facter": {"role": "web"}, "extra_arguments": ["--noop"]})");
  machine_.tool = "puppet apply";
  machine_.tool_status = 2;
  Provision(*p);
  EXPECT_THAT(machine_.uploads,
              ElementsAre("/tmp/packer-puppet-masterless/hiera.yaml", "/tmp/packer-puppet-masterless/module-0",
                          "/tmp/packer-puppet-masterless/manifests/site.pp"));
  const std::string& cmd = machine_.commands.back();
  EXPECT_EQ(cmd,
            "cd '/tmp/packer-puppet-masterless' && FACTER_packer_build_name='web' FACTER_packer_builder_type='rootfs' "
            "FACTER_role='web' puppet apply --detailed-exitcodes --color=false "
            "--vardir='/tmp/packer-puppet-masterless/.puppet/var' --rundir='/tmp/packer-puppet-masterless/.puppet/run' "
            "--ssldir='/tmp/packer-puppet-masterless/.puppet/ssl' --logdir='/tmp/packer-puppet-masterless/.puppet/log' "
            "--publicdir='/tmp/packer-puppet-masterless/.puppet/public' "
            "--modulepath='/tmp/packer-puppet-masterless/module-0' "
            "--hiera_config='/tmp/packer-puppet-masterless/hiera.yaml' --noop "
            "'/tmp/packer-puppet-masterless/manifests/site.pp'");
}

TEST_F(ConfigMgmtTest, PuppetUsesSudoOnlyWhenNotRoot) {
  WriteFile("site.pp", "");
  machine_.uid = "1000";
  auto p = Make("puppet-masterless", R"({"manifest_file": "site.pp", "puppet_bin_dir": "/opt/puppetlabs/bin"})");
  Provision(*p);
  EXPECT_THAT(machine_.commands.back(), HasSubstr("' sudo -E /opt/puppetlabs/bin/puppet apply"));
  FakeMachine fresh;
  machine_ = fresh;
  machine_.uid = "1000";
  auto q = Make("puppet-masterless", R"({"manifest_file": "site.pp", "prevent_sudo": true})");
  Provision(*q);
  EXPECT_THAT(machine_.commands.back(), Not(HasSubstr("sudo")));
  EXPECT_THAT(machine_.commands, Not(testing::Contains("id -u")));
}

TEST_F(ConfigMgmtTest, PuppetExecuteCommandGetsPackersValues) {
  WriteFile("site.pp", "");
  auto p = Make("puppet-masterless", R"({"manifest_file": "site.pp", "facter": {"a": "it's"},
      "execute_command": "cd {{.WorkingDir}} && {{.FacterVars}} puppet apply {{.ManifestFile}} # sudo={{.Sudo}}"})");
  Provision(*p);
  EXPECT_EQ(machine_.commands.back(),
            "cd /tmp/packer-puppet-masterless && FACTER_a='it'\"'\"'s' FACTER_packer_build_name='web' "
            "FACTER_packer_builder_type='rootfs' puppet apply /tmp/packer-puppet-masterless/manifests/site.pp # "
            "sudo=false");
}

TEST_F(ConfigMgmtTest, PuppetFailureNamesTheFailingResourcesAndTheLocalFile) {
  WriteFile("site.pp", "");
  auto p = Make("puppet-masterless", R"({"manifest_file": "site.pp", "facter": {"token": "hunter2-secret"}})");
  machine_.tool = "puppet apply";
  machine_.tool_status = 6;
  machine_.tool_output = {
      "Notice: token is hunter2-secret", "!Error: Facter: No such file or directory @ dir_initialize - /sys/block",
      "!\x1b[1;31mError: /Stage[main]/Main/Exec[fail-on-purpose]/returns: change from 'notrun' to ['0'] failed: "
      "'/bin/false' returned 1 instead of one of [0]\x1b[0m",
      "!Error: /Stage[main]/Main/File[/etc/app/conf.d]/ensure: change from 'absent' to 'directory' failed"};
  try {
    Provision(*p);
    FAIL() << "no failure";
  } catch (const CommandFailed& e) {
    EXPECT_EQ(e.exit_status, 6);
    EXPECT_THAT(e.what(), HasSubstr("puppet apply failed with exit status 6 (changes and failures): resources "
                                    "Exec[fail-on-purpose], File[/etc/app/conf.d] failed"));
  }
  std::string events = Events();
  EXPECT_THAT(events, HasSubstr("token is <sensitive>"));
  EXPECT_THAT(events, Not(HasSubstr("hunter2-secret")));
}

TEST_F(ConfigMgmtTest, PuppetCompileErrorIsReportedWithTheLocalPath) {
  WriteFile("site.pp", "");
  auto p = Make("puppet-masterless", R"({"manifest_file": "site.pp"})");
  machine_.tool = "puppet apply";
  machine_.tool_status = 1;
  machine_.tool_output = {"!Error: Facter: No such file or directory @ dir_initialize - /sys/block",
                          "!Error: Could not parse for environment production: Syntax error at '}' (file: "
                          "/tmp/packer-puppet-masterless/manifests/site.pp, line: 3, column: 1) on node vm"};
  try {
    Provision(*p);
    FAIL() << "no failure";
  } catch (const CommandFailed& e) {
    EXPECT_THAT(e.what(), HasSubstr("exit status 1 (the run failed): Could not parse for environment production: "
                                    "Syntax error at '}' (file: site.pp, line: 3, column: 1)"));
  }
}

TEST_F(ConfigMgmtTest, PuppetIgnoreExitCodes) {
  WriteFile("site.pp", "");
  auto p = Make("puppet-masterless", R"({"manifest_file": "site.pp", "ignore_exit_codes": true})");
  machine_.tool = "puppet apply";
  machine_.tool_status = 4;
  EXPECT_NO_THROW(Provision(*p));
  EXPECT_THAT(Events(), HasSubstr("puppet exited with status 4; ignored (ignore_exit_codes)"));
}

TEST_F(ConfigMgmtTest, PuppetBadOptionsArePositionedErrors) {
  std::string errors = Errors("puppet-masterless", R"({"manifest_file": "nope.pp", "facter": {"bad-name": "x"},
      "guest_os_type": "windows", "execute_command": "{{if .Sudo}}sudo {{end}}puppet apply"})");
  EXPECT_THAT(errors, HasSubstr("t.json:1:19: provisioner 1 (puppet-masterless): 'nope.pp' does not exist"));
  EXPECT_THAT(errors, HasSubstr("fact name 'bad-name' must be letters, digits and '_'"));
  EXPECT_THAT(errors, HasSubstr("\"windows\" guests are not supported"));
  EXPECT_THAT(errors, HasSubstr("Go template control actions ({{if}}…{{end}}) are not supported"));
  EXPECT_THAT(Errors("puppet-masterless", "{}"), HasSubstr("manifest_file"));
}

TEST(PuppetErrors, ResourceOfAPathWithSlashesInTheTitle) {
  EXPECT_EQ(imgbake::puppet_resource_of("/Stage[main]/Main/File[/etc/a b/c]/ensure: change failed"),
            "File[/etc/a b/c]");
  EXPECT_EQ(imgbake::puppet_resource_of("/Stage[main]/Profile::Web/Nginx::Site[default]/File[x]/content: …"),
            "File[x]");
  EXPECT_EQ(imgbake::puppet_resource_of("Could not parse"), "");
}

// --- ansible-local -------------------------------------------------------------------------

TEST_F(ConfigMgmtTest, AnsibleLocalStagesLikePackerAndRunsWithTheLocalConnection) {
  WriteFile("site.yml", "- hosts: all\n");
  WriteFile("roles/web/tasks/main.yml", "");
  WriteFile("group_vars/all.yml", "");
  WriteFile("host_vars/127.0.0.1.yml", "");
  WriteFile("pb/extra.yml", "");
  auto p = Make("ansible-local", R"({"playbook_file": "site.yml", "role_paths": ["roles/web"],
      "group_vars": "group_vars", "host_vars": "host_vars", "playbook_paths": ["pb"],
      "inventory_groups": ["web", "db"], "staging_directory": "/tmp/st",
      "extra_arguments": ["--extra-vars", "token=hunter2-secret"], "clean_staging_directory": true})");
  machine_.tool = "ansible-playbook";
  Provision(*p);
  EXPECT_THAT(machine_.uploads,
              ElementsAre("/tmp/st/site.yml", "/tmp/st/playbooks", "/tmp/st/roles/web", "/tmp/st/group_vars",
                          "/tmp/st/host_vars", "/tmp/st/packer-provisioner-ansible-local-inventory"));
  EXPECT_EQ(machine_.contents["/tmp/st/packer-provisioner-ansible-local-inventory"],
            "[web]\n127.0.0.1\n[db]\n127.0.0.1\n");
  ASSERT_GE(machine_.commands.size(), 2u);
  EXPECT_EQ(machine_.commands[machine_.commands.size() - 2],
            "cd '/tmp/st' && ANSIBLE_HOME=\"$PWD/.ansible\" ANSIBLE_LOCAL_TEMP=\"$PWD/.ansible/tmp\" "
            "ANSIBLE_REMOTE_TEMP=\"$PWD/.ansible/tmp\" PYTHONUNBUFFERED=1 ansible-playbook '/tmp/st/site.yml' "
            "--extra-vars \"packer_build_name=web packer_builder_type=rootfs packer_http_addr=\" --extra-vars "
            "token=hunter2-secret -c local -i '/tmp/st/packer-provisioner-ansible-local-inventory'");
  EXPECT_EQ(machine_.commands.back(), "rm -rf '/tmp/st'");
  // The command line is shown, masked.
  std::string events = Events();
  EXPECT_THAT(events, HasSubstr("token=<sensitive>"));
  EXPECT_THAT(events, Not(HasSubstr("hunter2-secret")));
}

TEST_F(ConfigMgmtTest, AnsibleLocalFailureNamesTheTaskAndMasksTheSecret) {
  WriteFile("site.yml", "");
  auto p = Make("ansible-local", R"({"playbook_files": ["site.yml"]})");
  machine_.tool = "ansible-playbook";
  machine_.tool_status = 2;
  machine_.tool_output = {
      "TASK [web : install nginx] *****",
      "fatal: [127.0.0.1]: FAILED! => {\"changed\": false, \"msg\": \"No package matching 'ngnix' (token "
      "hunter2-secret)\"}",
      "PLAY RECAP ****"};
  try {
    Provision(*p);
    FAIL() << "no failure";
  } catch (const CommandFailed& e) {
    EXPECT_EQ(e.exit_status, 2);
    EXPECT_THAT(e.what(), HasSubstr("ansible-playbook site.yml failed with exit status 2: task 'web : install nginx' "
                                    "failed on 127.0.0.1: No package matching 'ngnix'"));
  }
  EXPECT_THAT(Events(), Not(HasSubstr("hunter2-secret")));
}

TEST_F(ConfigMgmtTest, AnsibleLocalBadOptions) {
  WriteFile("a.yml", "");
  std::string errors = Errors("ansible-local", R"({"playbook_file": "a.yml", "playbook_files": ["a.yml"],
      "inventory_file": "inv", "inventory_groups": ["x"], "role_paths": ["a.yml"]})");
  EXPECT_THAT(errors, HasSubstr("give either 'playbook_file' or 'playbook_files', not both"));
  EXPECT_THAT(errors, HasSubstr("'inv' does not exist"));
  EXPECT_THAT(errors, HasSubstr("it can't be used with 'inventory_file'"));
  EXPECT_THAT(errors, HasSubstr("'a.yml' is not a directory"));
  EXPECT_THAT(Errors("ansible-local", "{}"), HasSubstr("one of 'playbook_file' or 'playbook_files' is required"));
}

TEST(AnsibleOutput, ErrorLinesWhenNoTaskFailed) {
  AnsibleOutput o;
  o.add("ERROR! the role 'webb' was not found in /tmp/st/roles:/root/.ansible/roles");
  EXPECT_EQ(o.describe("ansible-playbook site.yml", 1),
            "ansible-playbook site.yml failed with exit status 1: the role 'webb' was not found in "
            "/tmp/st/roles:/root/.ansible/roles");
}

TEST(AnsibleOutput, LoopItemsAndSeveralHosts) {
  AnsibleOutput o;
  o.add("TASK [create users] ***");
  o.add("failed: [web1] (item=bob) => {\"ansible_loop_var\": \"item\", \"item\": \"bob\", \"msg\": \"bad uid\"}");
  o.add("fatal: [web2]: UNREACHABLE! => {\"msg\": \"Failed to connect\"}");
  EXPECT_EQ(o.describe("ansible-playbook p.yml", 4),
            "ansible-playbook p.yml failed with exit status 4: task 'create users' failed on web1: bad uid "
            "(also failed: 'create users' on web2)");
}

// --- chef-solo -----------------------------------------------------------------------------

TEST(ChefSoloFiles, SoloRbInChefsFormat) {
  imgbake::chef::SoloSettings s;
  s.paths.cookbook_paths = {"/tmp/packer-chef-solo/cookbooks-0", "/var/chef/site-cookbooks"};
  s.paths.roles_path = "/tmp/packer-chef-solo/roles";
  s.paths.data_bags_path = "/tmp/packer-chef-solo/data_bags";
  s.paths.environments_path = "/tmp/packer-chef-solo/environments";
  s.chef_environment = "production";
  s.chef_license = "accept-silent";
  EXPECT_EQ(imgbake::chef::solo_rb(s),
            "# Written by imgbake's chef-solo provisioner.\n"
            "cookbook_path [\"/tmp/packer-chef-solo/cookbooks-0\", \"/var/chef/site-cookbooks\"]\n"
            "data_bag_path \"/tmp/packer-chef-solo/data_bags\"\n"
            "role_path \"/tmp/packer-chef-solo/roles\"\n"
            "environment_path \"/tmp/packer-chef-solo/environments\"\n"
            "environment \"production\"\n"
            "chef_license \"accept-silent\"\n");
  EXPECT_EQ(imgbake::chef::ruby_string("a\"b\\c#{x}\n"), "\"a\\\"b\\\\c\\#{x}\\n\"");
}

TEST(ChefSoloFiles, NodeJsonKeepsAttributesAndSetsTheRunList) {
  auto attrs = nlohmann::ordered_json::parse(R"({"nginx": {"port": 8080}, "run_list": ["old"]})");
  EXPECT_EQ(imgbake::chef::node_json(attrs, {"recipe[nginx]", "role[web]"}),
            "{\n  \"nginx\": {\n    \"port\": 8080\n  },\n  \"run_list\": [\n    \"recipe[nginx]\",\n    "
            "\"role[web]\"\n  ]\n}\n");
  EXPECT_EQ(imgbake::chef::node_json(nlohmann::ordered_json::object(), {}), "{}\n");
}

TEST_F(ConfigMgmtTest, ChefSoloStagesWritesItsFilesAndRunsChefSolo) {
  WriteFile("cookbooks/nginx/recipes/default.rb", "package 'nginx'\n");
  WriteFile("roles/web.json", "{}\n");
  auto p = Make("chef-solo", R"({"cookbook_paths": ["cookbooks"], "roles_path": "roles", "skip_install": true,
      "run_list": ["recipe[nginx]"], "json": {"nginx": {"port": 8080}}, "remote_cookbook_paths": ["/srv/cb"]})");
  machine_.tool = "chef-solo";
  Provision(*p);
  EXPECT_THAT(machine_.uploads, ElementsAre("/tmp/packer-chef-solo/cookbooks-0", "/tmp/packer-chef-solo/roles",
                                            "/tmp/packer-chef-solo/solo.rb", "/tmp/packer-chef-solo/node.json"));
  EXPECT_EQ(machine_.contents["/tmp/packer-chef-solo/solo.rb"],
            "# Written by imgbake's chef-solo provisioner.\n"
            "cookbook_path [\"/tmp/packer-chef-solo/cookbooks-0\", \"/srv/cb\"]\n"
            "role_path \"/tmp/packer-chef-solo/roles\"\n");
  EXPECT_EQ(nlohmann::json::parse(machine_.contents["/tmp/packer-chef-solo/node.json"]),
            nlohmann::json::parse(R"({"nginx": {"port": 8080}, "run_list": ["recipe[nginx]"]})"));
  ASSERT_GE(machine_.commands.size(), 2u);
  EXPECT_EQ(machine_.commands[machine_.commands.size() - 2],
            "chef-solo --no-color -c '/tmp/packer-chef-solo/solo.rb' -j '/tmp/packer-chef-solo/node.json'");
  EXPECT_EQ(machine_.commands.back(), "rm -rf '/tmp/packer-chef-solo/node.json'");
  EXPECT_TRUE(p->key_material()["inputs"].contains("cookbooks/nginx/recipes/default.rb"));
}

TEST_F(ConfigMgmtTest, ChefSoloInstallsFirstUnlessSkippedAndNamesAFailingResource) {
  machine_.uid = "1000";
  auto p = Make("chef-solo", R"({"version": "17.10.3", "run_list": ["recipe[x]"]})");
  machine_.tool = "chef-solo --no-color";
  machine_.tool_status = 1;
  machine_.tool_output = {"  * execute[migrate] action run",
                          "    Error executing action `run` on resource 'execute[migrate]'",
                          "FATAL: Chef::Exceptions::ChildConvergeError: Chef run process exited unsuccessfully"};
  try {
    Provision(*p);
    FAIL() << "no failure";
  } catch (const CommandFailed& e) {
    EXPECT_THAT(e.what(),
                HasSubstr("chef-solo failed with exit status 1: resource execute[migrate] (action run) failed"));
  }
  EXPECT_EQ(machine_.commands[1], "curl -L https://omnitruck.chef.io/install.sh | sudo bash -s -- -v '17.10.3'");
  EXPECT_EQ(machine_.contents["/tmp/packer-chef-solo/solo.rb"],
            "# Written by imgbake's chef-solo provisioner.\ncookbook_path []\nchef_license \"accept-silent\"\n");
  EXPECT_THAT(machine_.commands[machine_.commands.size() - 2], HasSubstr("sudo chef-solo --no-color -c"));
}

TEST_F(ConfigMgmtTest, ChefSoloRemovesTheDataBagKeyAndNodeJsonAlsoWhenTheRunFails) {
  machine_.uid = "1000";
  WriteFile("secret.key", "data bag key\n");
  auto p = Make("chef-solo", R"({"skip_install": true, "encrypted_data_bag_secret_path": "secret.key",
      "json": {"db": {"password": "x"}}})");
  machine_.tool = "chef-solo --no-color";
  machine_.tool_status = 1;
  EXPECT_THROW(Provision(*p), CommandFailed);
  EXPECT_EQ(machine_.commands.back(),
            "sudo rm -rf '/tmp/packer-chef-solo/node.json' '/tmp/packer-chef-solo/encrypted_data_bag_secret'");
}

TEST_F(ConfigMgmtTest, ChefClientRemovesItsStagingAlsoWhenTheRunFails) {
  auto p = Make("chef-client", R"({"skip_install": true, "run_list": ["recipe[x]"]})");
  machine_.tool = "chef-client --local-mode";
  machine_.tool_status = 1;
  EXPECT_THROW(Provision(*p), CommandFailed);
  EXPECT_EQ(machine_.commands.back(), "rm -rf '/tmp/packer-chef-client'");
}

TEST_F(ConfigMgmtTest, PuppetRemovesItsStagingWithSudoAndNeverHidesPuppetsResult) {
  WriteFile("site.pp", "");
  machine_.uid = "1000";
  auto p = Make("puppet-masterless", R"({"manifest_file": "site.pp", "clean_staging_directory": true})");
  machine_.tool = "puppet apply";
  machine_.tool_status = 0;
  Provision(*p);
  // puppet ran through sudo: its state under the staging directory is root's.
  EXPECT_EQ(machine_.commands.back(), "sudo rm -rf '/tmp/packer-puppet-masterless'");
  // The removal fails, and puppet failed: puppet's verdict is the error, the removal a warning.
  machine_.tool_status = 6;
  machine_.failing = "rm -rf";
  try {
    Provision(*p);
    FAIL() << "no failure";
  } catch (const CommandFailed& e) {
    EXPECT_EQ(e.exit_status, 6);
    EXPECT_THAT(e.what(), HasSubstr("puppet apply failed with exit status 6"));
  }
  EXPECT_THAT(Events(), HasSubstr("cannot remove the staging directory /tmp/packer-puppet-masterless on the machine"));
}

TEST_F(ConfigMgmtTest, ChefSoloBadOptions) {
  std::string errors = Errors("chef-solo", R"({"cookbook_paths": ["nope"], "json": [1], "chef_license": "yes",
      "config_template": "solo.rb.tpl"})");
  EXPECT_THAT(errors, HasSubstr("'nope' is not a directory"));
  EXPECT_THAT(errors, HasSubstr("'json' must be an object"));
  EXPECT_THAT(errors, HasSubstr("must be \"accept\", \"accept-silent\" or \"accept-no-persist\""));
  EXPECT_THAT(errors, HasSubstr("is not supported: imgbake writes solo.rb itself"));
}

// --- chef-client ---------------------------------------------------------------------------

TEST(ChefClientFiles, ClientRbInLocalMode) {
  imgbake::chef::ClientSettings s;
  s.paths.cookbook_paths = {"/tmp/packer-chef-client/cookbooks-0"};
  s.paths.roles_path = "/tmp/packer-chef-client/roles";
  s.node_path = "/tmp/packer-chef-client/nodes";
  s.node_name = "web-1";
  s.chef_license = "accept-no-persist";
  EXPECT_EQ(imgbake::chef::client_rb(s),
            "# Written by imgbake's chef-client provisioner.\n"
            "log_level :info\n"
            "log_location STDOUT\n"
            "local_mode true\n"
            "cookbook_path [\"/tmp/packer-chef-client/cookbooks-0\"]\n"
            "role_path \"/tmp/packer-chef-client/roles\"\n"
            "node_path \"/tmp/packer-chef-client/nodes\"\n"
            "node_name \"web-1\"\n"
            "chef_license \"accept-no-persist\"\n");
}

TEST(ChefClientFiles, ClientRbForAServer) {
  imgbake::chef::ClientSettings s;
  s.chef_server_url = "https://chef.example/organizations/o";
  s.client_key = "/tmp/packer-chef-client/client.pem";
  s.validation_key = "/tmp/packer-chef-client/validation.pem";
  s.node_name = "web-1";
  s.chef_environment = "prod";
  s.ssl_verify_mode = "verify_peer";
  EXPECT_EQ(imgbake::chef::client_rb(s),
            "# Written by imgbake's chef-client provisioner.\n"
            "log_level :info\n"
            "log_location STDOUT\n"
            "chef_server_url \"https://chef.example/organizations/o\"\n"
            "client_key \"/tmp/packer-chef-client/client.pem\"\n"
            "validation_client_name \"chef-validator\"\n"
            "validation_key \"/tmp/packer-chef-client/validation.pem\"\n"
            "environment \"prod\"\n"
            "ssl_verify_mode :verify_peer\n"
            "node_name \"web-1\"\n");
}

TEST_F(ConfigMgmtTest, ChefClientRunsInLocalModeAndRemovesItsStaging) {
  WriteFile("cookbooks/nginx/recipes/default.rb", "package 'nginx'\n");
  auto p = Make("chef-client", R"({"cookbook_paths": ["cookbooks"], "skip_install": true, "node_name": "n1",
      "run_list": ["recipe[nginx]"]})");
  machine_.tool = "chef-client";
  Provision(*p);
  EXPECT_THAT(machine_.uploads, ElementsAre("/tmp/packer-chef-client/cookbooks-0", "/tmp/packer-chef-client/client.rb",
                                            "/tmp/packer-chef-client/node.json"));
  EXPECT_THAT(machine_.contents["/tmp/packer-chef-client/client.rb"],
              HasSubstr("local_mode true\ncookbook_path [\"/tmp/packer-chef-client/cookbooks-0\"]\n"
                        "node_path \"/tmp/packer-chef-client/nodes\"\nnode_name \"n1\"\n"));
  ASSERT_GE(machine_.commands.size(), 2u);
  EXPECT_EQ(machine_.commands[machine_.commands.size() - 2],
            "chef-client --local-mode --no-color -c '/tmp/packer-chef-client/client.rb' -j "
            "'/tmp/packer-chef-client/node.json'");
  EXPECT_EQ(machine_.commands.back(), "rm -rf '/tmp/packer-chef-client'");
}

TEST_F(ConfigMgmtTest, ChefClientBadOptions) {
  std::string errors = Errors("chef-client", R"({"server_url": "https://chef", "policy_name": "p",
      "ssl_verify_mode": "maybe"})");
  EXPECT_THAT(errors, HasSubstr("imgbake does not remove the node and client from the Chef server"));
  EXPECT_THAT(errors, HasSubstr("is not supported by imgbake's chef-client provisioner"));
  EXPECT_THAT(errors, HasSubstr("must be \"verify_none\" or \"verify_peer\""));
  EXPECT_THAT(Errors("chef-solo", R"({"server_url": "https://chef"})"), HasSubstr("use the chef-client provisioner"));
}

// --- ansible (on the host) -----------------------------------------------------------------

// One request to a CommunicatorProxy's socket, as the connection plugin sends it.
nlohmann::json AskProxy(const fs::path& socket_path, const nlohmann::json& request) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, socket_path.c_str(), sizeof addr.sun_path - 1);
  EXPECT_EQ(::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr), 0) << std::strerror(errno);
  std::string line = request.dump() + "\n";
  EXPECT_EQ(::write(fd, line.data(), line.size()), static_cast<ssize_t>(line.size()));
  std::string answer;
  char buf[4096];
  for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;) answer.append(buf, static_cast<size_t>(n));
  ::close(fd);
  return nlohmann::json::parse(answer);
}

TEST_F(ConfigMgmtTest, CommunicatorProxyRunsCommandsAndMovesFilesThroughTheCommunicator) {
  machine_.tool = "echo hi";
  machine_.tool_output = {"hi", "!warn"};
  machine_.tool_status = 3;
  WriteFile("local.txt", "content\n");
  imgbake::CommunicatorProxy proxy(machine_, cancel_, dir_ / "s", [] { return std::nullopt; });
  EXPECT_EQ(AskProxy(proxy.socket_path(), {{"op", "exec"}, {"cmd", "echo hi"}}),
            nlohmann::json({{"rc", 3}, {"stdout", "hi\n"}, {"stderr", "warn\n"}}));
  EXPECT_EQ(AskProxy(proxy.socket_path(), {{"op", "put"}, {"local", "local.txt"}, {"remote", "/tmp/x"}}),
            nlohmann::json({{"ok", true}}));
  EXPECT_EQ(machine_.contents["/tmp/x"], "content\n");
  EXPECT_EQ(AskProxy(proxy.socket_path(), {{"op", "rm"}}),
            nlohmann::json({{"error", "unknown op 'rm' (exec, put, fetch)"}}));
  EXPECT_EQ(AskProxy(proxy.socket_path(), {{"op", "exec"}}), nlohmann::json({{"error", "the request has no 'cmd'"}}));
  // Standard input (ansible's pipelining) becomes a file the command reads and removes.
  EXPECT_EQ(AskProxy(proxy.socket_path(), {{"op", "exec"}, {"cmd", "python3"}, {"stdin", "cHJpbnQoMSkK"}}),
            nlohmann::json({{"rc", 0}, {"stdout", ""}, {"stderr", ""}}));
  ASSERT_EQ(machine_.uploads.size(), 2u);
  std::string input = machine_.uploads[1];
  EXPECT_THAT(input, ::testing::StartsWith("/tmp/.imgbake-stdin-"));
  EXPECT_EQ(machine_.contents[input], "print(1)\n");
  EXPECT_EQ(proxy.served(), 5u);
  EXPECT_THAT(machine_.commands,
              ElementsAre("echo hi", "(python3) < '" + input + "'; s=$?; rm -f '" + input + "'; exit $s"));
}

TEST_F(ConfigMgmtTest, CommunicatorProxyAnswersARequestOverItsLimitInsteadOfDroppingIt) {
  imgbake::CommunicatorProxy proxy(machine_, cancel_, dir_ / "s", [] { return std::nullopt; });
  std::string big(size_t{65} << 20, 'A');
  auto answer = AskProxy(proxy.socket_path(), {{"op", "exec"}, {"cmd", "python3"}, {"stdin", big}});
  ASSERT_TRUE(answer.contains("error")) << answer.dump().substr(0, 200);
  EXPECT_THAT(answer["error"].get<std::string>(), HasSubstr("exceeds imgbake's limit of 64 MiB"));
  EXPECT_TRUE(machine_.commands.empty());
  // The next request is served as usual.
  EXPECT_EQ(AskProxy(proxy.socket_path(), {{"op", "exec"}, {"cmd", "true"}}),
            nlohmann::json({{"rc", 0}, {"stdout", ""}, {"stderr", ""}}));
}

// A stand-in for ansible-playbook: records its arguments, the inventory and ansible's variables.
void WriteFakeAnsible() {
  WriteFile(
      "fake-ansible",
      "#!/bin/sh\nprintf '%s\\n' \"$@\" > argv\nwhile [ $# -gt 1 ]; do [ \"$1\" = -i ] && cat \"$2\" > inventory; "
      "shift; done\nenv | grep -E '^(ANSIBLE_|IMGBAKE_ANSIBLE|PACKER_BUILD_NAME)' | sort > env\n"
      "[ -z \"$IMGBAKE_ANSIBLE_SOCKET\" ] || ls \"$ANSIBLE_CONNECTION_PLUGINS\" > plugins\n");
  fs::permissions("fake-ansible", fs::perms::owner_all);
}

TEST_F(ConfigMgmtTest, AnsibleOverTheBuildsSshEndpoint) {
  WriteFakeAnsible();
  WriteFile("play/site.yml", "- hosts: all\n");
  WriteFile("play/roles/web/tasks/main.yml", "- debug: msg=hi\n");
  WriteFile("elsewhere.txt", "not read\n");
  auto p = Make("ansible", R"({"playbook_file": "play/site.yml", "command": "./fake-ansible", "groups": ["web", "db"],
      "empty_groups": ["none"], "extra_arguments": ["-e", "token=hunter2-secret"],
      "ansible_env_vars": ["ANSIBLE_SSH_ARGS=-o ControlMaster=auto"]})");
  Provision(
      *p,
      {{"ConnType", "ssh"}, {"Host", "127.0.0.1"}, {"Port", "2222"}, {"User", "root"}, {"SSHPrivateKeyFile", "/k/id"}});
  EXPECT_EQ(
      ReadFile("inventory"),
      "default ansible_host=127.0.0.1 ansible_port=2222 ansible_user=root\n[web]\ndefault\n[db]\ndefault\n[none]\n");
  std::string argv = ReadFile("argv");
  EXPECT_THAT(
      argv, HasSubstr("-e\npacker_build_name=web packer_builder_type=rootfs packer_http_addr=\n"
                      "--private-key\n/k/id\n--ssh-extra-args=-o IdentitiesOnly=yes\n-e\ntoken=hunter2-secret\n-i\n"));
  EXPECT_THAT(argv, HasSubstr("\nplay/site.yml\n"));
  std::string env = ReadFile("env");
  EXPECT_THAT(env, HasSubstr("ANSIBLE_HOST_KEY_CHECKING=False\n"));
  EXPECT_THAT(env, HasSubstr("ANSIBLE_REMOTE_TEMP=/tmp/.imgbake-ansible-01234567\n"));
  EXPECT_THAT(env, HasSubstr("ANSIBLE_SSH_ARGS=-o ControlMaster=auto\n"));  // the template's wins
  EXPECT_THAT(env, Not(HasSubstr("IMGBAKE_ANSIBLE_SOCKET")));
  EXPECT_EQ(machine_.commands.back(), "rm -rf '/tmp/.imgbake-ansible-01234567'");
  EXPECT_THAT(Events(), Not(HasSubstr("hunter2-secret")));
  auto inputs = p->key_material()["inputs"];
  EXPECT_TRUE(inputs.contains("play/site.yml"));
  EXPECT_TRUE(inputs.contains("play/roles/web/tasks/main.yml"));
  EXPECT_FALSE(inputs.contains("elsewhere.txt"));
}

TEST_F(ConfigMgmtTest, AnsibleGalaxyFileInstallsRolesAndCollectionsAsPackerDoes) {
  WriteFakeAnsible();
  WriteFile("fake-galaxy", "#!/bin/sh\nprintf '%s ' \"$@\" >> galaxy-argv\necho >> galaxy-argv\n");
  fs::permissions("fake-galaxy", fs::perms::owner_all);
  WriteFile("site.yml", "- hosts: all\n");
  WriteFile("both.yml", "roles:\n  - name: web\ncollections:\n  - community.general\n");
  WriteFile("v1.yml", "- src: ./web.tar.gz\n");
  fs::create_directories("cols");
  auto both =
      Make("ansible", R"({"playbook_file": "site.yml", "command": "./fake-ansible", "galaxy_command": "./fake-galaxy",
      "galaxy_file": "both.yml", "roles_path": "roles", "collections_path": "cols", "galaxy_force_install": true,
      "galaxy_force_with_deps": true})");
  Provision(*both);
  EXPECT_EQ(ReadFile("galaxy-argv"),
            "install -r both.yml -p roles -f --force-with-deps \n"
            "collection install -r both.yml -p cols -f --force-with-deps \n");
  fs::remove("galaxy-argv");
  // The old format is a list of roles; collections without collections_path go to the work directory.
  auto v1 =
      Make("ansible", R"({"playbook_file": "site.yml", "command": "./fake-ansible", "galaxy_command": "./fake-galaxy",
      "galaxy_file": "v1.yml"})");
  Provision(*v1);
  EXPECT_THAT(ReadFile("galaxy-argv"), testing::MatchesRegex("install -r v1.yml -p .*/roles \n"));
  EXPECT_THAT(ReadFile("env"), HasSubstr("/collections:"));
}

TEST_F(ConfigMgmtTest, AnsibleHidesPasswordAndSecretExtraArgumentsAsPackerDoes) {
  WriteFakeAnsible();
  WriteFile("site.yml", "- hosts: all\n");
  auto p = Make("ansible", R"({"playbook_file": "site.yml", "command": "./fake-ansible",
      "extra_arguments": ["--extra-vars", "db_password=pw-one-9x7 user=alice", "-e", "API_Secret_Key=sk-two-4q2",
                          "-e", "token_plain=visible-3z"]})");
  Provision(*p);
  // ansible gets the values; nothing the build prints shows them.
  EXPECT_THAT(ReadFile("argv"), HasSubstr("db_password=pw-one-9x7 user=alice\n-e\nAPI_Secret_Key=sk-two-4q2\n"));
  std::string events = Events();
  EXPECT_THAT(events, HasSubstr("db_password=<sensitive> user=alice"));
  EXPECT_THAT(events, HasSubstr("API_Secret_Key=<sensitive>"));
  EXPECT_THAT(events, Not(HasSubstr("pw-one-9x7")));
  EXPECT_THAT(events, Not(HasSubstr("sk-two-4q2")));
  EXPECT_THAT(events, HasSubstr("token_plain=visible-3z"));  // neither word in its name: shown, as in Packer
}

TEST_F(ConfigMgmtTest, AnsibleThroughTheCommunicatorWithoutAnSshEndpoint) {
  WriteFakeAnsible();
  WriteFile("site.yml", "- hosts: all\n");
  auto p = Make("ansible", R"({"playbook_file": "site.yml", "command": "./fake-ansible", "host_alias": "tree"})");
  Provision(*p);
  EXPECT_EQ(ReadFile("inventory"), "tree ansible_connection=imgbake\n");
  EXPECT_THAT(ReadFile("argv"), HasSubstr("\n-c\nimgbake\n-i\n"));
  EXPECT_THAT(ReadFile("env"), HasSubstr("IMGBAKE_ANSIBLE_SOCKET="));
  EXPECT_EQ(ReadFile("plugins"), "imgbake.py\n");
  // use_proxy false needs an SSH endpoint.
  auto direct = Make("ansible", R"({"playbook_file": "site.yml", "command": "./fake-ansible", "use_proxy": false})");
  EXPECT_THROW(Provision(*direct), imgbake::BuildError);
}

TEST_F(ConfigMgmtTest, AnsibleFailureNamesTheTask) {
  WriteFile("site.yml", "- hosts: all\n");
  WriteFile("fake-ansible",
            "#!/bin/sh\necho 'TASK [install nginx] ****'\necho 'fatal: [default]: FAILED! => {\"msg\": \"no "
            "package\"}'\nexit 2\n");
  fs::permissions("fake-ansible", fs::perms::owner_all);
  auto p = Make("ansible", R"({"playbook_file": "site.yml", "command": "./fake-ansible"})");
  try {
    Provision(*p);
    FAIL() << "no failure";
  } catch (const CommandFailed& e) {
    EXPECT_EQ(
        std::string(e.what()),
        "ansible-playbook site.yml failed with exit status 2: task 'install nginx' failed on default: no package");
    EXPECT_EQ(e.exit_status, 2);
  }
}

TEST_F(ConfigMgmtTest, AnsibleBadOptions) {
  WriteFile("inv", "x\n");
  std::string errors = Errors("ansible", R"({"inventory_file": "inv", "groups": ["a"], "host_alias": "two words",
      "ansible_env_vars": ["NOVALUE"], "galaxy_file": "nope.yml"})");
  EXPECT_THAT(errors, HasSubstr("'playbook_file' is required"));
  EXPECT_THAT(errors, HasSubstr("groups make a generated inventory"));
  EXPECT_THAT(errors, HasSubstr("'two words' must be one word"));
  EXPECT_THAT(errors, HasSubstr("'NOVALUE' is not of the form NAME=VALUE"));
  EXPECT_THAT(errors, HasSubstr("'nope.yml' does not exist"));
}

}  // namespace
