// Reading the checks of `imgbake test` (test_spec.h).
#include "imgbake/test_spec.h"

#include <regex>
#include <set>

#include "imgbake/config.h"

namespace imgbake {

namespace {

constexpr const char* kKinds[] = {"command", "file", "package", "user", "group"};

TestCheck read_check(const json::Value& v, size_t index, const std::string& file, Diagnostics& diags) {
  TestCheck c;
  c.pos = v.pos;
  std::string label = "check " + std::to_string(index + 1);
  if (const json::Value* n = v.find("name"); n && n->is_string() && !n->text.empty()) label += " ('" + n->text + "')";
  ConfigReader r(v, file, label, diags);
  c.name = r.string("name");
  // "group" is also what a file check names its group with: it is the kind only alone.
  std::vector<std::string> kinds;
  for (const char* k : kKinds)
    if (r.has(k) && std::string_view(k) != "group") kinds.emplace_back(k);
  if (kinds.empty() && r.has("group")) kinds.emplace_back("group");
  if (kinds.size() != 1) {
    r.error(kinds.empty() ? "a check needs one of 'command', 'file', 'package', 'user', 'group'"
                          : "a check has one kind, not '" + kinds[0] + "' and '" + kinds[1] + "'");
    r.accept({"command", "file", "package", "user", "group"});
  }
  c.kind = kinds.empty() ? "" : kinds[0];
  c.timeout = r.duration("timeout");
  if (c.kind == "command") {
    c.command = r.string("command");
    if (c.command.empty()) r.error("command", "'command' must not be empty");
    c.exit_status = r.integer("exit_status", 0);
    c.stdout_contains = r.strings("stdout_contains");
    c.stderr_contains = r.strings("stderr_contains");
    c.stdout_matches = r.string("stdout_matches");
    if (!c.stdout_matches.empty()) {
      try {
        std::regex re(c.stdout_matches);
      } catch (const std::regex_error& e) {
        r.error("stdout_matches", "'stdout_matches' is not a valid regular expression: " + std::string(e.what()));
      }
    }
  } else if (c.kind == "file") {
    c.path = r.string("file");
    if (c.path.empty() || c.path.front() != '/') r.error("file", "'file' must be an absolute path in the image");
    c.exists = r.boolean("exists", true);
    c.type = r.string("type");
    if (!c.type.empty() && c.type != "file" && c.type != "directory" && c.type != "symlink")
      r.error("type", "'type' must be \"file\", \"directory\" or \"symlink\", not \"" + c.type + "\"");
    c.mode = r.string("mode");
    if (!c.mode.empty() && (c.mode.size() > 5 || c.mode.find_first_not_of("01234567") != std::string::npos))
      r.error("mode", "'mode' must be an octal mode such as \"0644\", not \"" + c.mode + "\"");
    c.owner = r.string("owner");
    c.group = r.string("group");
    c.contains = r.strings("contains");
    c.sha256 = r.string("sha256");
    if (!c.sha256.empty() &&
        (c.sha256.size() != 64 || c.sha256.find_first_not_of("0123456789abcdef") != std::string::npos))
      r.error("sha256", "'sha256' must be 64 lower-case hex digits");
    if (!c.exists && (!c.type.empty() || !c.mode.empty() || !c.owner.empty() || !c.group.empty() ||
                      !c.contains.empty() || !c.sha256.empty()))
      r.error("exists", "a file that must not exist has no type, mode, owner, group, contents or digest to check");
  } else if (!c.kind.empty()) {  // package, user, group
    c.subject = r.string(c.kind);
    if (c.subject.empty() || c.subject.find_first_of(" \t\n'\"\\$`;|&<>") != std::string::npos)
      r.error(c.kind, "'" + c.kind + "' must be a " + c.kind + " name");
    c.exists = r.boolean(c.kind == "package" ? "installed" : "exists", true);
    if (c.kind == "package") c.version = r.string("version");
  }
  if (c.name.empty()) c.name = c.kind + " " + (c.kind == "command" ? c.command : c.kind == "file" ? c.path : c.subject);
  r.finish();
  return c;
}

}  // namespace

TestSpec read_test_spec(const json::Value& v, const std::string& file, Diagnostics& diags) {
  TestSpec spec;
  spec.file = file;
  spec.pos = v.pos;
  ConfigReader r(v, file, "'tests'", diags);
  spec.suite = r.string("suite", "default");
  if (spec.suite.empty() || spec.suite.find_first_of(" \t\n/:@") != std::string::npos)
    r.error("suite", "'suite' must be a name without spaces, '/', ':' or '@'");
  const json::Value* checks = r.raw("checks");
  if (!checks || !checks->is_array() || checks->items.empty()) {
    r.error(checks ? "checks" : "", "'checks' must be a list of at least one check");
  } else {
    std::set<std::string> names;
    for (size_t i = 0; i < checks->items.size(); ++i) {
      const json::Value& item = checks->items[i];
      if (!item.is_object()) {
        diags.error(file, item.pos, "'tests': check " + std::to_string(i + 1) + " must be an object");
        continue;
      }
      TestCheck c = read_check(item, i, file, diags);
      if (!names.insert(c.name).second)
        diags.error(file, item.pos, "'tests': two checks are named '" + c.name + "'; give each its own name");
      spec.checks.push_back(std::move(c));
    }
  }
  r.finish();
  return spec;
}

}  // namespace imgbake
