#include "imgbake/provisioner.h"

#include <algorithm>
#include <filesystem>

#include "imgbake/communicator.h"
#include "imgbake/error.h"
#include "imgbake/util.h"

namespace imgbake {

namespace {

std::string digest_or_missing(const std::filesystem::path& path) {
  try {
    return util::file_digest_hex(path);
  } catch (const std::exception&) {
    return "missing";
  }
}

}  // namespace

std::vector<HostInput> host_tree_inputs(const std::vector<std::string>& paths) {
  namespace fs = std::filesystem;
  std::vector<HostInput> out;
  for (const auto& path : paths) {
    std::error_code ec;
    auto status = fs::status(path, ec);
    if (ec || !fs::exists(status)) {
      out.push_back({path, "missing"});
      continue;
    }
    if (!fs::is_directory(status)) {
      out.push_back({path, digest_or_missing(path)});
      continue;
    }
    std::vector<HostInput> tree;
    std::string prefix = path;
    while (prefix.size() > 1 && prefix.back() == '/') prefix.pop_back();
    for (auto it = fs::recursive_directory_iterator(path, fs::directory_options::follow_directory_symlink, ec);
         !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
      std::error_code st_ec;
      if (!it->is_regular_file(st_ec)) continue;
      tree.push_back(
          {prefix + "/" + it->path().lexically_relative(path).generic_string(), digest_or_missing(it->path())});
    }
    if (ec) tree.push_back({path, "unreadable"});
    std::sort(tree.begin(), tree.end(), [](const HostInput& a, const HostInput& b) { return a.path < b.path; });
    out.insert(out.end(), tree.begin(), tree.end());
  }
  return out;
}

nlohmann::json host_inputs_json(const std::vector<HostInput>& inputs) {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& in : inputs) out[in.path] = in.sha256;
  return out;
}

nlohmann::json host_file_digests(const std::vector<std::string>& paths) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& path : paths) {
    std::string digest;
    try {
      digest = util::file_digest_hex(path);
    } catch (const std::exception&) {
      digest = "missing";
    }
    out.push_back({{"path", path}, {"sha256", digest}});
  }
  return out;
}

void check_host_path(ConfigReader& cfg, const std::string& key, const std::string& path, HostPathKind kind) {
  namespace fs = std::filesystem;
  if (path.empty()) return;
  std::error_code ec;
  auto status = fs::status(path, ec);
  if (ec || !fs::exists(status))
    cfg.error(key, "'" + path + "' does not exist (relative paths start at the directory imgbake runs in)");
  else if (kind == HostPathKind::Directory && !fs::is_directory(status))
    cfg.error(key, "'" + path + "' is not a directory");
  else if (kind == HostPathKind::File && fs::is_directory(status))
    cfg.error(key, "'" + path + "' is a directory, not a file");
}

ToolSinks tool_sinks(State& st, std::function<void(std::string_view)> observe) {
  // Assigned one by one: the static analyzer takes a braced pair of std::function temporaries
  // for a leak.
  ToolSinks sinks;
  for (Stream stream : {Stream::Stdout, Stream::Stderr}) {
    LineSink& sink = stream == Stream::Stdout ? sinks.out : sinks.err;
    sink = [&st, observe, stream](std::string_view l) {
      st.ui.output(st.build.name, stream, l);
      if (observe) observe(l);
    };
  }
  return sinks;
}

void run_quiet(State& st, const std::string& command, const std::string& what) {
  if (!st.communicator) throw BuildError("cannot " + what + ": this build has no communicator");
  RemoteCommand c;
  c.command = command;
  c.timeout = st.time_left();
  std::vector<std::string> err;
  RunResult r = st.communicator->run(
      c, nullptr, [&](std::string_view l) { err.emplace_back(l); }, st.cancel);
  if (!r.succeeded())
    throw BuildError("cannot " + what + " on the machine" +
                     (r.disconnected ? ": the connection dropped"
                                     : " (exit status " + std::to_string(r.status) +
                                           (err.empty() ? "" : ": " + util::join(err, " ")) + ")"));
}

void remove_on_machine(State& st, const std::vector<std::string>& paths, bool sudo, const std::string& what) noexcept {
  if (paths.empty() || st.cancel.cancelled()) return;
  try {
    std::string command = std::string(sudo ? "sudo " : "") + "rm -rf";
    for (const auto& p : paths) command += " '" + escape_single_quotes(p) + "'";
    run_quiet(st, command, what);
  } catch (const std::exception& e) {
    st.ui.warn(st.build.name, e.what());
  }
}

std::string escape_single_quotes(const std::string& value) {
  std::string out;
  for (char c : value) {
    if (c == '\'')
      out += "'\"'\"'";
    else
      out += c;
  }
  return out;
}

std::string format_env_var(const std::string& format, const std::string& name, const std::string& value) {
  std::string out;
  int n = 0;
  for (size_t i = 0; i < format.size(); ++i) {
    if (format[i] == '%' && i + 1 < format.size() && format[i + 1] == 's') {
      out += n++ == 0 ? name : escape_single_quotes(value);
      ++i;
    } else {
      out += format[i];
    }
  }
  return out;
}

}  // namespace imgbake
