#include "imgbake/registries_conf.h"

#include <cstdlib>
#include <system_error>

#include "imgbake/error.h"
#include "imgbake/util.h"

namespace imgbake::registry {

namespace fs = std::filesystem;

namespace {

// The text of a TOML basic ("…") or literal ('…') string, or nullopt.
std::optional<std::string> toml_string(const std::string& v) {
  if (v.size() >= 2 && (v.front() == '"' || v.front() == '\'') && v.back() == v.front())
    return v.substr(1, v.size() - 2);
  return std::nullopt;
}

// Strips a comment that is not inside a string.
std::string strip_comment(const std::string& line) {
  char quote = 0;
  for (size_t i = 0; i < line.size(); ++i) {
    char c = line[i];
    if (quote) {
      if (c == '\\' && quote == '"')
        ++i;
      else if (c == quote)
        quote = 0;
    } else if (c == '"' || c == '\'') {
      quote = c;
    } else if (c == '#') {
      return line.substr(0, i);
    }
  }
  return line;
}

// The strings of a TOML array "[ 'a', "b" ]".
std::vector<std::string> toml_strings(const std::string& v, const std::string& where) {
  std::string inner = util::trim(v.substr(1, v.size() - 2));
  std::vector<std::string> out;
  for (const auto& part : util::split(inner, ',')) {
    std::string p = util::trim(part);
    if (p.empty()) continue;
    auto s = toml_string(p);
    if (!s) throw BuildError(where + ": expected a list of quoted registry names, got " + v);
    out.push_back(*s);
  }
  return out;
}

}  // namespace

void RegistriesConf::parse(const std::string& text, const std::string& file) {
  enum class Table { Other, Registry, V1Insecure, V1Block };
  Table table = Table::Other;
  RegistrySettings* current = nullptr;
  std::string location, prefix;
  auto finish_registry = [&] {
    if (current && location.empty()) location = prefix;
    if (current && !location.empty()) entries_.back().first = location;
    if (current && location.empty()) entries_.pop_back();  // nothing to match: ignored
    current = nullptr;
    location.clear();
    prefix.clear();
  };
  std::vector<std::string> lines = util::split(text, '\n');
  for (size_t n = 0; n < lines.size(); ++n) {
    std::string where = file + ":" + std::to_string(n + 1);
    std::string line = util::trim(strip_comment(lines[n]));
    // A multi-line array: read on until its closing bracket.
    size_t eq = line.find('=');
    if (eq != std::string::npos && util::trim(line.substr(eq + 1)).starts_with("[")) {
      while (line.find(']', eq) == std::string::npos && n + 1 < lines.size())
        line += " " + util::trim(strip_comment(lines[++n]));
    }
    if (line.empty()) continue;
    if (line.front() == '[') {
      finish_registry();
      std::string name = line;
      if (name == "[[registry]]") {
        table = Table::Registry;
        entries_.emplace_back("", RegistrySettings{});
        entries_.back().second.source = where;
        current = &entries_.back().second;
      } else if (name == "[registries.insecure]") {
        table = Table::V1Insecure;
      } else if (name == "[registries.block]") {
        table = Table::V1Block;
      } else if (name.back() != ']') {
        throw BuildError(where + ": a table header must end with ']': " + name);
      } else {
        table = Table::Other;  // [[registry.mirror]], [aliases], [registries.search], …
      }
      continue;
    }
    if (eq == std::string::npos) throw BuildError(where + ": expected KEY = VALUE, got '" + line + "'");
    std::string key = util::trim(line.substr(0, eq));
    std::string value = util::trim(line.substr(eq + 1));
    auto boolean = [&]() {
      if (value == "true") return true;
      if (value == "false") return false;
      throw BuildError(where + ": '" + key + "' must be true or false, not " + value);
    };
    if (table == Table::Registry) {
      if (key == "location" || key == "prefix") {
        auto s = toml_string(value);
        if (!s) throw BuildError(where + ": '" + key + "' must be a quoted string, not " + value);
        (key == "location" ? location : prefix) = *s;
      } else if (key == "insecure") {
        current->insecure = boolean();
      } else if (key == "blocked") {
        current->blocked = boolean();
      }
    } else if ((table == Table::V1Insecure || table == Table::V1Block) && key == "registries") {
      if (value.empty() || value.front() != '[' || value.back() != ']')
        throw BuildError(where + ": 'registries' must be a list, not " + value);
      for (const auto& r : toml_strings(value, where)) {
        RegistrySettings s;
        s.source = where;
        (table == Table::V1Insecure ? s.insecure : s.blocked) = true;
        entries_.emplace_back(r, s);
      }
    }
  }
  finish_registry();
}

std::vector<fs::path> registries_conf_paths() {
  std::vector<fs::path> paths;
  fs::path user;
  if (const char* x = std::getenv("XDG_CONFIG_HOME"); x && *x)
    user = fs::path(x) / "containers" / "registries.conf";
  else if (const char* h = std::getenv("HOME"); h && *h)
    user = fs::path(h) / ".config" / "containers" / "registries.conf";
  std::error_code ec;
  if (!user.empty() && fs::exists(user, ec))
    paths.push_back(user);
  else
    paths.emplace_back("/etc/containers/registries.conf");
  fs::path own;
  if (const char* c = std::getenv("IMGBAKE_CONFIG_HOME"); c && *c)
    own = fs::path(c) / "registries.conf";
  else if (const char* x = std::getenv("XDG_CONFIG_HOME"); x && *x)
    own = fs::path(x) / "imgbake" / "registries.conf";
  else if (const char* h = std::getenv("HOME"); h && *h)
    own = fs::path(h) / ".config" / "imgbake" / "registries.conf";
  if (!own.empty()) paths.push_back(own);
  return paths;
}

RegistriesConf RegistriesConf::load() {
  RegistriesConf conf;
  for (const auto& p : registries_conf_paths()) {
    std::error_code ec;
    if (!fs::is_regular_file(p, ec)) continue;
    conf.parse(util::read_file(p), p.string());
  }
  return conf;
}

RegistrySettings RegistriesConf::settings_for(const std::string& host) const {
  RegistrySettings out;
  for (const auto& [location, s] : entries_) {
    std::string loc = location;
    if (size_t star = loc.find("*."); star == 0) {
      // "*.example.com" matches every subdomain.
      std::string suffix = loc.substr(1);
      if (host.size() > suffix.size() && host.ends_with(suffix)) out = s;
      continue;
    }
    if (loc == host || loc.starts_with(host + "/")) out = s;
  }
  return out;
}

}  // namespace imgbake::registry
