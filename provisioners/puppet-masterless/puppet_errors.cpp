// Reading puppet's error lines (puppet_errors.h).
#include "puppet_errors.h"

#include <algorithm>
#include <cctype>

#include "imgbake/util.h"

namespace imgbake {
namespace {

void replace_all(std::string& s, const std::string& from, const std::string& to) {
  if (from.empty()) return;
  for (size_t p = 0; (p = s.find(from, p)) != std::string::npos; p += to.size()) s.replace(p, from.size(), to);
}

}  // namespace

std::string puppet_resource_of(std::string_view text) {
  if (!text.starts_with("/Stage[")) return "";
  // Walk the path's segments: "/Stage[main]", "/Main", "/Exec[fail]", "/returns", then ": ".
  // A segment with brackets is a resource (its title may hold '/', ':' or spaces).
  std::string last;
  size_t i = 0;
  while (i < text.size() && text[i] == '/') {
    size_t start = i + 1;
    size_t j = start;
    // Class names hold "::" (Profile::Web); a single ':' ends the path.
    while (j < text.size() && text[j] != '/' && text[j] != '[' && text[j] != ' ') {
      if (text[j] == ':') {
        if (j + 1 < text.size() && text[j + 1] == ':') {
          j += 2;
          continue;
        }
        break;
      }
      ++j;
    }
    if (j < text.size() && text[j] == '[') {
      int depth = 0;
      for (; j < text.size(); ++j) {
        if (text[j] == '[') ++depth;
        if (text[j] == ']' && --depth == 0) break;
      }
      if (j >= text.size()) break;
      ++j;
      std::string seg(text.substr(start, j - start));
      if (!seg.starts_with("Stage[")) last = seg;
    }
    i = j;
  }
  return last;
}

void PuppetErrors::add(std::string_view raw) {
  std::string line = util::strip_ansi(raw);
  if (!line.starts_with("Error: ")) return;
  std::string text = line.substr(7);
  std::string resource = puppet_resource_of(text);
  if (!resource.empty()) {
    if (std::find(resources_.begin(), resources_.end(), resource) == resources_.end()) {
      resources_.push_back(resource);
      resource_errors_.push_back(text);
    }
    return;
  }
  // Facter's complaints about what a sandbox lacks (/sys/block) are not why a run failed.
  if (text.starts_with("Facter: ")) return;
  if (messages_.size() < 3) messages_.push_back(text);
}

std::string PuppetErrors::describe(int status, const std::map<std::string, std::string>& remote_to_local) const {
  std::string kind;
  if (status == 4) kind = " (failures)";
  if (status == 6) kind = " (changes and failures)";
  if (status == 1) kind = " (the run failed)";
  std::string out = "failed with exit status " + std::to_string(status) + kind;
  if (!resources_.empty()) {
    out += ": " + std::string(resources_.size() == 1 ? "resource " : "resources ") + util::join(resources_, ", ") +
           " failed";
    out += " (" + resource_errors_.front() + ")";
  } else if (!messages_.empty()) {
    out += ": " + util::join(messages_, "; ");
  }
  // Longest remote paths first, so that ".../manifests/site.pp" wins over ".../manifests".
  std::vector<std::pair<std::string, std::string>> paths(remote_to_local.begin(), remote_to_local.end());
  std::sort(paths.begin(), paths.end(), [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
  for (const auto& [remote, local] : paths) replace_all(out, remote, local);
  return out;
}

}  // namespace imgbake
