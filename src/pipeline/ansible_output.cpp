// Reading ansible-playbook's output (ansible_output.h).
#include "imgbake/ansible_output.h"

#include <cctype>

#include <nlohmann/json.hpp>

#include "imgbake/util.h"

namespace imgbake {
namespace {

std::string shorten(std::string s) {
  if (s.size() > 300) s = s.substr(0, 297) + "...";
  return s;
}

}  // namespace

void AnsibleOutput::add(std::string_view raw) {
  std::string line = util::strip_ansi(raw);
  // "TASK [role : name] *****" / "RUNNING HANDLER [name] ****"
  for (const char* prefix : {"TASK [", "RUNNING HANDLER ["}) {
    std::string_view p(prefix);
    if (line.starts_with(p)) {
      size_t end = line.rfind("] ");
      if (end == std::string::npos || end < p.size()) end = line.rfind(']');
      if (end != std::string::npos && end >= p.size()) task_ = line.substr(p.size(), end - p.size());
      return;
    }
  }
  if (line.starts_with("ERROR! ")) {
    if (errors_.size() < 3) errors_.push_back(shorten(line.substr(7)));
    return;
  }
  // "fatal: [host]: FAILED! => {...}", "failed: [host] (item=x) => {...}",
  // "fatal: [host]: UNREACHABLE! => {...}"
  if (!line.starts_with("fatal: [") && !line.starts_with("failed: [")) return;
  size_t open = line.find('[');
  size_t close = line.find(']', open);
  if (close == std::string::npos) return;
  FailedTask f;
  f.task = task_;
  f.host = line.substr(open + 1, close - open - 1);
  size_t arrow = line.find("=> ", close);
  std::string rest = arrow == std::string::npos ? line.substr(close + 1) : line.substr(arrow + 3);
  f.msg = util::trim(rest);
  if (arrow != std::string::npos) {
    try {
      auto j = nlohmann::json::parse(rest);
      if (j.is_object() && j.contains("msg") && j["msg"].is_string()) f.msg = j["msg"].get<std::string>();
      if (j.is_object() && j.contains("stderr") && j["stderr"].is_string() && !j["stderr"].get<std::string>().empty())
        f.msg += (f.msg.empty() ? "" : ": ") + j["stderr"].get<std::string>();
    } catch (const std::exception&) {
    }
  }
  f.msg = shorten(f.msg);
  if (failed_.size() < 5) failed_.push_back(std::move(f));
}

std::string AnsibleOutput::describe(const std::string& what, int status) const {
  std::string out = what + " failed with exit status " + std::to_string(status);
  if (!failed_.empty()) {
    const FailedTask& f = failed_.front();
    out += ": task '" + (f.task.empty() ? std::string("(unnamed)") : f.task) + "' failed on " + f.host;
    if (!f.msg.empty()) out += ": " + f.msg;
    if (failed_.size() > 1) {
      std::vector<std::string> more;
      for (size_t i = 1; i < failed_.size(); ++i) more.push_back("'" + failed_[i].task + "' on " + failed_[i].host);
      out += " (also failed: " + util::join(more, ", ") + ")";
    }
  } else if (!errors_.empty()) {
    out += ": " + util::join(errors_, "; ");
  }
  return out;
}

}  // namespace imgbake
