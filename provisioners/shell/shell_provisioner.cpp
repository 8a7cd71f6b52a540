// The "shell" provisioner (Packer's): uploads each script to the machine and runs it there
// through the build's communicator, with the build's variables in {{.Vars}}.
//
// Packer spends four round trips per script (upload, chmod, run, rm). Here a script costs two:
// the upload (the local copy is already mode 0755, and uploads keep modes) and one command
// that runs execute_command with the removal of the script in an EXIT trap, so the script's
// own exit status is what comes back.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "imgbake/cancel.h"
#include "imgbake/communicator.h"
#include "imgbake/error.h"
#include "imgbake/interpolate.h"
#include "imgbake/provisioner.h"
#include "imgbake/shell_local.h"
#include "imgbake/temp_file.h"
#include "imgbake/util.h"

namespace imgbake {
namespace {

using std::chrono::milliseconds;

// Packer has no separate "disconnected" result and reports a dropped connection as this exit
// status, so templates accept a drop by listing it in valid_exit_codes. Only that template
// setting sees it; communicators report a drop as RunResult::disconnected.
constexpr int64_t kPackerDisconnectStatus = 2300218;

std::string shell_quote(const std::string& v) { return "'" + escape_single_quotes(v) + "'"; }

// Packer's UnixReader: scripts written on Windows must still run under /bin/sh.
std::string to_unix_line_endings(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\r' && i + 1 < text.size() && text[i + 1] == '\n') continue;
    out += text[i];
  }
  return out;
}

std::string random_number() {
  static std::mt19937 rng{std::random_device{}()};
  return std::to_string(std::uniform_int_distribution<int>(0, 9998)(rng));
}

std::string join_path(const std::string& folder, const std::string& file) {
  if (folder.empty()) return file;
  return folder.back() == '/' ? folder + file : folder + "/" + file;
}

class ShellProvisioner : public Provisioner {
 public:
  std::set<std::string> runtime_keys() const override { return {"execute_command"}; }
  void prepare(ConfigReader& cfg) override;
  void provision(State& st) override;
  nlohmann::json key_material() const override;

 private:
  struct Script {
    std::string name;  // for messages: "script x.sh" or "inline script \"first line\""
    std::string body;
  };

  // `ui` masks the inline script's first line before it is cut for names: a cut secret's
  // prefix would not be masked any more.
  std::vector<Script> load_scripts(const Ui& ui) const;
  std::map<std::string, std::string> environment(const State& st) const;
  std::string render_execute_command(const State& st, const std::string& vars, const std::string& var_file) const;
  // Runs `attempt` (upload and start), retrying while the machine can't be reached (a
  // reboot), for up to start_retry_timeout. Failing twice while the machine answers is final.
  template <class Attempt>
  auto retry_while_unreachable(State& st, const std::string& what, Attempt attempt) const;
  void remove_remote(State& st, const std::vector<std::string>& paths) const;

  std::vector<std::string> inline_;
  std::vector<std::string> scripts_;
  std::string inline_shebang_ = "/bin/sh -e";
  std::vector<std::string> environment_vars_;  // "K=V"
  std::map<std::string, std::string> env_;
  std::string env_var_format_;
  std::string execute_command_;
  std::string remote_folder_ = "/tmp";
  std::string remote_file_;  // as the user gave them ("" = default), for the key
  std::string remote_path_given_;
  std::string remote_path_;
  bool expect_disconnect_ = false;
  std::vector<int64_t> valid_exit_codes_ = {0};
  milliseconds start_retry_timeout_ = std::chrono::minutes(5);
  bool skip_clean_ = false;
  std::optional<milliseconds> pause_after_;
  bool binary_ = false;
  bool use_env_var_file_ = false;
};

void ShellProvisioner::prepare(ConfigReader& cfg) {
  inline_ = cfg.strings("inline");
  std::optional<std::string> script = cfg.optional_string("script");
  scripts_ = cfg.strings("scripts");
  int sources = (!inline_.empty() ? 1 : 0) + (script && !script->empty() ? 1 : 0) + (!scripts_.empty() ? 1 : 0);
  if (sources == 0) cfg.error("one of 'inline', 'script' or 'scripts' is required");
  if (sources > 1) cfg.error("give only one of 'inline', 'script' and 'scripts'");
  if (script && !script->empty()) scripts_.insert(scripts_.begin(), *script);
  for (const auto& s : scripts_) {
    if (!std::filesystem::is_regular_file(s))
      cfg.error(cfg.has("script") ? "script" : "scripts",
                "script '" + s + "' does not exist or is not a regular file (relative paths start at the directory " +
                    "imgbake runs in)");
  }

  inline_shebang_ = cfg.string("inline_shebang", inline_shebang_);
  environment_vars_ = cfg.strings("environment_vars");
  for (const auto& kv : environment_vars_) {
    if (kv.find('=') == std::string::npos || kv[0] == '=')
      cfg.error("environment_vars", "'" + kv + "' is not of the form NAME=VALUE");
  }
  env_ = cfg.string_map("env");
  use_env_var_file_ = cfg.boolean("use_env_var_file", false);
  env_var_format_ = cfg.string("env_var_format", use_env_var_file_ ? "export %s='%s'\n" : "%s='%s' ");
  {
    size_t placeholders = 0;
    for (size_t i = 0; (i = env_var_format_.find("%s", i)) != std::string::npos; i += 2) ++placeholders;
    if (placeholders != 2 || std::count(env_var_format_.begin(), env_var_format_.end(), '%') != 2)
      cfg.error("env_var_format", "must hold exactly two %s (name, value), e.g. \"%s='%s' \"");
  }
  execute_command_ =
      cfg.string("execute_command", use_env_var_file_ ? "chmod +x {{.Path}}; . {{.EnvVarFile}} && {{.Path}}"
                                                      : "chmod +x {{.Path}}; {{.Vars}} {{.Path}}");
  remote_folder_ = cfg.string("remote_folder", remote_folder_);
  remote_file_ = cfg.string("remote_file");
  remote_path_given_ = cfg.string("remote_path");
  remote_path_ =
      !remote_path_given_.empty()
          ? remote_path_given_
          : join_path(remote_folder_, !remote_file_.empty() ? remote_file_ : "script_" + random_number() + ".sh");
  expect_disconnect_ = cfg.boolean("expect_disconnect", false);
  valid_exit_codes_ = cfg.integers("valid_exit_codes", {0});
  if (auto d = cfg.duration("start_retry_timeout"); d && d->count() > 0) start_retry_timeout_ = *d;
  skip_clean_ = cfg.boolean("skip_clean", false);
  pause_after_ = cfg.duration("pause_after");
  binary_ = cfg.boolean("binary", false);
}

nlohmann::json ShellProvisioner::key_material() const {
  nlohmann::json scripts = host_file_digests(scripts_);
  // The default remote file name is random: only what the user chose identifies the work.
  return {{"inline", inline_},
          {"scripts", scripts},
          {"inline_shebang", inline_shebang_},
          {"environment_vars", environment_vars_},
          {"env", env_},
          {"env_var_format", env_var_format_},
          {"execute_command", execute_command_},
          {"remote_folder", remote_folder_},
          {"remote_file", remote_file_},
          {"remote_path", remote_path_given_},
          {"expect_disconnect", expect_disconnect_},
          {"valid_exit_codes", valid_exit_codes_},
          {"skip_clean", skip_clean_},
          {"binary", binary_},
          {"use_env_var_file", use_env_var_file_}};
}

std::vector<ShellProvisioner::Script> ShellProvisioner::load_scripts(const Ui& ui) const {
  std::vector<Script> out;
  if (!inline_.empty()) {
    std::string body = "#!" + inline_shebang_ + "\n";
    for (const auto& line : inline_) body += line + "\n";
    std::string first = ui.mask(inline_.front());
    if (first.size() > 60) first = first.substr(0, 57) + "...";
    out.push_back({"inline script \"" + first + "\"" +
                       (inline_.size() > 1 ? " (" + std::to_string(inline_.size()) + " lines)" : ""),
                   body});
  }
  for (const auto& s : scripts_) {
    std::string body;
    try {
      body = util::read_file(s);
    } catch (const std::exception& e) {
      throw BuildError("cannot read script " + s + ": " + e.what());
    }
    out.push_back({"script " + s, binary_ ? body : to_unix_line_endings(body)});
  }
  return out;
}

std::map<std::string, std::string> ShellProvisioner::environment(const State& st) const {
  std::map<std::string, std::string> env = build_environment(st);
  // The HTTP server that builders serve http_directory from, when there is one.
  auto data = [&](const char* key) -> std::string {
    auto it = st.data.find(key);
    return it == st.data.end() ? "" : it->second;
  };
  std::string ip = data("HTTPIP"), port = data("HTTPPort");
  if (!ip.empty()) env["PACKER_HTTP_IP"] = ip;
  if (!port.empty()) env["PACKER_HTTP_PORT"] = port;
  if (!ip.empty() && !port.empty()) env["PACKER_HTTP_ADDR"] = ip + ":" + port;
  for (const auto& kv : environment_vars_) {
    size_t eq = kv.find('=');
    env[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  for (const auto& [k, v] : env_) env[k] = v;
  return env;
}

std::string ShellProvisioner::render_execute_command(const State& st, const std::string& vars,
                                                     const std::string& var_file) const {
  interp::Context ctx = st.build.interp;
  for (const auto& [k, v] : st.data) ctx.data[k] = v;
  ctx.data["Vars"] = vars;
  ctx.data["Path"] = remote_path_;
  ctx.data["EnvVarFile"] = var_file;
  try {
    return interp::render(execute_command_, ctx);
  } catch (const interp::Error& e) {
    throw BuildError("cannot render execute_command \"" + execute_command_ + "\": " + e.what());
  }
}

template <class Attempt>
auto ShellProvisioner::retry_while_unreachable(State& st, const std::string& what, Attempt attempt) const {
  Communicator& comm = *st.communicator;
  auto give_up_at = std::chrono::steady_clock::now() + start_retry_timeout_;
  if (st.deadline) give_up_at = std::min(give_up_at, *st.deadline);
  milliseconds backoff(500);
  bool failed_while_answering = false;
  while (true) {
    try {
      return attempt();
    } catch (const BuildError& e) {
      if (!comm.may_be_unreachable()) throw;
      // Whether the machine answers now (the communicator reconnects first if it can).
      bool reachable = false;
      try {
        RemoteCommand probe;
        probe.command = "true";
        probe.timeout = milliseconds(30000);
        reachable = comm.run(probe, nullptr, nullptr, st.cancel).succeeded();
      } catch (const BuildError&) {
        reachable = false;
      }
      if (reachable) {
        // The failure may have been the connection going down (a reboot) and coming back:
        // try once more at once. Failing again while the machine answers is final.
        if (failed_while_answering) throw;
        failed_while_answering = true;
        continue;
      }
      failed_while_answering = false;
      if (std::chrono::steady_clock::now() + backoff >= give_up_at)
        throw BuildError(std::string(e.what()) + " (gave up " + what + ": the machine was unreachable for the " +
                         util::format_duration(start_retry_timeout_) + " of start_retry_timeout)");
      st.ui.warn(st.build.name, std::string("cannot reach the machine (") + e.what() + "); retrying " + what + " in " +
                                    util::format_duration(backoff));
      st.cancel.sleep_for(backoff);
      backoff = std::min(backoff * 2, milliseconds(8000));
    }
  }
}

void ShellProvisioner::remove_remote(State& st, const std::vector<std::string>& paths) const {
  std::string command = "rm -f";
  for (const auto& p : paths) command += " " + shell_quote(p);
  RemoteCommand rm;
  rm.command = command;
  rm.timeout = st.time_left();
  int status = retry_while_unreachable(st, "removing " + util::join(paths, ", "), [&] {
    RunResult r = st.communicator->run(rm, nullptr, nullptr, st.cancel);
    // A machine still rebooting: try again like any other unreachable moment.
    if (r.disconnected) throw BuildError("the connection dropped while removing the script");
    return r.status;
  });
  if (status != 0)
    throw BuildError("cannot remove " + util::join(paths, ", ") + " from the machine (rm exited with status " +
                     std::to_string(status) + "); set \"skip_clean\": true to leave it there");
}

void ShellProvisioner::provision(State& st) {
  if (!st.communicator)
    throw BuildError(
        "the shell provisioner runs scripts on the machine, but this build has no communicator "
        "(\"communicator\": \"none\"); use a communicator such as ssh, or shell-local to run commands on the host");
  Communicator& comm = *st.communicator;
  std::vector<Script> scripts = load_scripts(st.ui);

  std::map<std::string, std::string> env = environment(st);
  std::string formatted;
  for (const auto& [k, v] : env) formatted += format_env_var(env_var_format_, k, v);

  // With use_env_var_file the variables travel in a file that is sourced; {{.Vars}} then
  // sources it, so that a custom execute_command written with {{.Vars}} still works.
  std::string vars, var_file;
  if (use_env_var_file_) {
    var_file = join_path(remote_folder_, "varfile_" + random_number() + ".sh");
    TempFile local(formatted, "imgbake-shell", 0600);
    retry_while_unreachable(st, "uploading the variables file",
                            [&] { comm.upload(local.path(), var_file, st.cancel); });
    vars = ". " + var_file + " &&";
  } else {
    vars = formatted;
    if (!vars.empty() && vars.back() == ' ') vars.pop_back();
  }
  std::string command = render_execute_command(st, vars, var_file);

  bool var_file_left = !var_file.empty();
  for (size_t i = 0; i < scripts.size(); ++i) {
    const Script& script = scripts[i];
    bool last = i + 1 == scripts.size();
    std::vector<std::string> to_remove;
    if (!skip_clean_) {
      to_remove.push_back(remote_path_);
      if (last && var_file_left) to_remove.push_back(var_file);
    }
    RemoteCommand run;
    if (!to_remove.empty()) {
      // The trap runs when the command line ends (also through `exit`), and the shell
      // then exits with the script's status.
      std::string rm = "rm -f";
      for (const auto& p : to_remove) rm += " " + shell_quote(p);
      run.command = "imgbake_clean_up() { " + rm + "; }; trap imgbake_clean_up EXIT\n";
    }
    run.command += command;
    st.message("running " + script.name + " on the machine as " + remote_path_);
    TempFile local(script.body, "imgbake-shell", 0755);
    auto out = [&](std::string_view l) { st.ui.output(st.build.name, Stream::Stdout, l); };
    auto err = [&](std::string_view l) { st.ui.output(st.build.name, Stream::Stderr, l); };
    RunResult result = retry_while_unreachable(st, "starting " + script.name, [&] {
      comm.upload(local.path(), remote_path_, st.cancel);
      run.timeout = st.time_left();
      return comm.run(run, out, err, st.cancel);
    });
    if (last && !skip_clean_) var_file_left = false;

    auto accepted = [&](int64_t s) {
      return std::find(valid_exit_codes_.begin(), valid_exit_codes_.end(), s) != valid_exit_codes_.end();
    };
    if (result.disconnected && (expect_disconnect_ || accepted(kPackerDisconnectStatus))) {
      st.message("the connection dropped while running " + script.name + ", as expect_disconnect allows");
      // The EXIT trap may not have run: remove what is left once the machine answers again.
      if (!to_remove.empty()) remove_remote(st, to_remove);
      continue;
    }
    if (result.disconnected)
      throw BuildError("the connection to the machine dropped while running " + script.name +
                       "; if the script reboots the machine or stops its SSH server on purpose, set "
                       "\"expect_disconnect\": true");
    if (!accepted(result.status)) {
      // The variables may hold secrets: don't leave them behind because an earlier script
      // failed (the machine answered just now, so this is quick).
      if (var_file_left && !skip_clean_) {
        RemoteCommand rm;
        rm.command = "rm -f " + shell_quote(var_file);
        rm.timeout = st.time_left();
        if (!comm.run(rm, nullptr, nullptr, st.cancel).succeeded())
          st.ui.warn(st.build.name, "cannot remove the variables file " + var_file + " from the machine");
      }
      std::string codes;
      for (auto c : valid_exit_codes_) codes += (codes.empty() ? "" : ", ") + std::to_string(c);
      throw CommandFailed(
          script.name + " exited with status " + std::to_string(result.status) + " (valid: " + codes + ")",
          result.status);
    }
  }

  if (pause_after_ && pause_after_->count() > 0) {
    st.message("pausing " + util::format_duration(*pause_after_) + " after this provisioner");
    st.cancel.sleep_for(*pause_after_);
  }
}

}  // namespace
}  // namespace imgbake

IMGBAKE_REGISTER_PROVISIONER("shell", imgbake::ShellProvisioner)
