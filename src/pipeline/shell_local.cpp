#include "imgbake/shell_local.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>

#include "imgbake/cancel.h"
#include "imgbake/error.h"
#include "imgbake/process.h"
#include "imgbake/provisioner.h"
#include "imgbake/temp_file.h"
#include "imgbake/util.h"

namespace imgbake {

void ShellLocalRunner::prepare(ConfigReader& cfg) {
  inline_ = cfg.strings("inline");
  std::string command = cfg.string("command");
  if (!command.empty() && !inline_.empty()) cfg.error("command", "give only one of 'inline' and 'command'");
  if (!command.empty()) inline_.push_back(command);
  scripts_ = cfg.strings("scripts");
  if (auto s = cfg.optional_string("script"); s && !s->empty()) scripts_.insert(scripts_.begin(), *s);
  inline_shebang_ = cfg.string("inline_shebang", inline_shebang_);
  environment_vars_ = cfg.strings("environment_vars");
  env_ = cfg.string_map("env");
  execute_command_ = cfg.strings("execute_command");
  if (execute_command_.empty()) execute_command_ = {"/bin/sh", "-c", "{{.Vars}} {{.Script}}"};
  valid_exit_codes_ = cfg.integers("valid_exit_codes", {0});
  env_var_format_ = cfg.string("env_var_format", env_var_format_);
  tempfile_extension_ = cfg.string("tempfile_extension");
  if (!tempfile_extension_.empty() && tempfile_extension_[0] != '.') tempfile_extension_ = "." + tempfile_extension_;
  only_on_ = cfg.strings("only_on");
  cfg.accept({"use_linux_pathing"});  // only meaningful on Windows hosts

  int sources = (!inline_.empty() ? 1 : 0) + (!scripts_.empty() ? 1 : 0);
  if (sources == 0) cfg.error("one of 'inline', 'script', 'scripts' or 'command' is required");
  if (sources > 1) cfg.error("give only one of 'inline', 'script'/'scripts' and 'command'");
  for (const auto& s : scripts_) {
    if (!std::filesystem::is_regular_file(s))
      cfg.error(cfg.has("script") ? "script" : "scripts", "script '" + s + "' does not exist or is not a regular file");
  }
  for (const auto& kv : environment_vars_) {
    if (kv.find('=') == std::string::npos || kv[0] == '=')
      cfg.error("environment_vars", "'" + kv + "' is not of the form NAME=VALUE");
  }
  if (std::count(env_var_format_.begin(), env_var_format_.end(), '%') != 2)
    cfg.error("env_var_format", "must hold exactly two %s (name, value), e.g. \"%s='%s' \"");
}

nlohmann::json ShellLocalRunner::key_material() const {
  nlohmann::json scripts = host_file_digests(scripts_);
  return {{"inline", inline_},
          {"scripts", scripts},
          {"inline_shebang", inline_shebang_},
          {"environment_vars", environment_vars_},
          {"env", env_},
          {"execute_command", execute_command_},
          {"valid_exit_codes", valid_exit_codes_}};
}

std::map<std::string, std::string> build_environment(const State& st) {
  return {{"PACKER_BUILD_NAME", st.build.interp.build_name.empty() ? st.build.name : st.build.interp.build_name},
          {"PACKER_BUILDER_TYPE", st.build.type},
          {"IMGBAKE_BUILD_NAME", st.build.name},
          {"IMGBAKE_BUILDER_TYPE", st.build.type},
          {"PACKER_RUN_UUID", st.build.run_uuid}};
}

void ShellLocalRunner::run(State& st, const std::map<std::string, std::string>& extra_env) const {
  if (!only_on_.empty()) {
    struct utsname u = {};
    uname(&u);
    std::string os = u.sysname;
    std::transform(os.begin(), os.end(), os.begin(), [](unsigned char c) { return std::tolower(c); });
    if (std::find(only_on_.begin(), only_on_.end(), os) == only_on_.end()) {
      st.message("skipping: only_on does not include " + os);
      return;
    }
  }

  std::map<std::string, std::string> env = build_environment(st);
  for (const auto& [k, v] : extra_env) env[k] = v;
  for (const auto& kv : environment_vars_) {
    size_t eq = kv.find('=');
    env[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  for (const auto& [k, v] : env_) env[k] = v;
  std::string vars;
  for (const auto& [k, v] : env) vars += format_env_var(env_var_format_, k, v);
  if (!vars.empty() && vars.back() == ' ') vars.pop_back();

  std::vector<std::unique_ptr<TempFile>> temps;
  std::vector<std::string> paths;
  if (!inline_.empty()) {
    std::string body = "#!" + inline_shebang_ + "\n";
    for (const auto& line : inline_) body += line + "\n";
    temps.push_back(std::make_unique<TempFile>(body, "imgbake-shell-local", 0700, tempfile_extension_));
    paths.push_back(temps.back()->path());
  }
  for (const auto& s : scripts_) paths.push_back(std::filesystem::absolute(s).string());

  for (const auto& path : paths) {
    interp::Context ctx = st.build.interp;
    for (const auto& [k, v] : st.data) ctx.data[k] = v;
    ctx.data["Vars"] = vars;
    ctx.data["Script"] = path;
    ctx.data["Command"] = path;
    ProcessSpec spec;
    for (const auto& part : execute_command_) spec.argv.push_back(interp::render(part, ctx));
    spec.env_add = env;
    spec.timeout = st.time_left();
    if (!inline_.empty() && path == paths.front() && temps.size() == 1)
      st.message("running " + std::to_string(inline_.size()) + " inline command" + (inline_.size() == 1 ? "" : "s") +
                 " on the host");
    else
      st.message("running script " + path + " on the host");
    int status = run_process(
        spec, [&](std::string_view l) { st.ui.output(st.build.name, Stream::Stdout, l); },
        [&](std::string_view l) { st.ui.output(st.build.name, Stream::Stderr, l); }, st.cancel);
    if (std::find(valid_exit_codes_.begin(), valid_exit_codes_.end(), status) == valid_exit_codes_.end()) {
      std::string codes;
      for (auto c : valid_exit_codes_) codes += (codes.empty() ? "" : ", ") + std::to_string(c);
      throw CommandFailed("script exited with status " + std::to_string(status) + " (valid: " + codes + ")", status);
    }
  }
}

}  // namespace imgbake
