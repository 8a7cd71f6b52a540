// Reading the checks of `imgbake test` (test_spec.h).
#include "imgbake/test_spec.h"

#include <filesystem>
#include <regex>
#include <set>

#include "imgbake/config.h"

namespace imgbake {

namespace {

constexpr const char* kKinds[] = {"command", "file", "package", "user",      "group",      "service",
                                  "port",    "http", "script",  "testinfra", "serverspec", "kernel_param"};

bool plain_name(const std::string& s) {
  return !s.empty() && s.find_first_of(" \t\n'\"\\$`;|&<>") == std::string::npos;
}

// A host file a runner reads: absolute, or relative to the spec's directory.
std::string host_file(const std::string& given, const std::string& spec_file) {
  if (given.empty() || given.front() == '/') return given;
  return std::filesystem::absolute(std::filesystem::path(spec_file).parent_path() / given).lexically_normal().string();
}

TestBoot read_boot(const json::Value& v, const std::string& file, Diagnostics& diags) {
  TestBoot b;
  ConfigReader r(v, file, "'tests': 'boot'", diags);
  b.kernel = host_file(r.string("kernel"), file);
  b.initrd = host_file(r.string("initrd"), file);
  b.append = r.string("append");
  if (r.has("memory")) b.memory = r.integer("memory", 0);
  if (r.has("cpus")) b.cpus = r.integer("cpus", 0);
  if ((b.memory && *b.memory < 16) || (b.cpus && *b.cpus < 1))
    r.error(b.memory && *b.memory < 16 ? "memory" : "cpus", "'memory' (MiB) and 'cpus' must be positive");
  b.accelerator = r.string("accelerator");
  b.ssh_username = r.string("ssh_username");
  b.ssh_password = r.string("ssh_password");
  b.ssh_private_key_file = host_file(r.string("ssh_private_key_file"), file);
  b.ssh_timeout = r.duration("ssh_timeout");
  if (const json::Value* q = r.raw("qemuargs")) {
    bool ok = q->is_array();
    for (const auto& entry : ok ? q->items : std::vector<json::Value>{}) {
      std::vector<std::string> args;
      ok = ok && entry.is_array() && !entry.items.empty();
      for (const auto& a : ok ? entry.items : std::vector<json::Value>{}) {
        ok = ok && a.is_string();
        args.push_back(a.text);
      }
      if (ok) b.qemuargs.push_back(std::move(args));
    }
    if (!ok) r.error("qemuargs", "'qemuargs' must be a list of lists of strings, e.g. [[\"-cpu\", \"max\"]]");
  }
  r.finish();
  return b;
}

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
    r.error(kinds.empty() ? "a check needs one of 'command', 'file', 'package', 'user', 'group', 'service', "
                            "'port', 'http', 'kernel_param', 'script', 'testinfra', 'serverspec'"
                          : "a check has one kind, not '" + kinds[0] + "' and '" + kinds[1] + "'");
    for (const char* k : kKinds) r.raw(k);
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
  } else if (c.kind == "port") {
    c.port = r.integer("port", 0);
    if (c.port < 1 || c.port > 65535) r.error("port", "'port' must be a port number (1-65535)");
    c.protocol = r.string("protocol", "tcp");
    if (c.protocol != "tcp" && c.protocol != "udp")
      r.error("protocol", "'protocol' must be \"tcp\" or \"udp\", not \"" + c.protocol + "\"");
    c.exists = r.boolean("listening", true);
    c.subject = c.protocol + "/" + std::to_string(c.port);
  } else if (c.kind == "http") {
    c.url = r.string("http");
    if (!c.url.starts_with("http://") && !c.url.starts_with("https://"))
      r.error("http", "'http' must be an http:// or https:// URL (as the machine reaches it)");
    if (c.url.find_first_of(" \t\n'\"\\`") != std::string::npos) r.error("http", "'http' must be a plain URL");
    c.status = r.integer("status", 200);
    c.body_contains = r.strings("body_contains");
    const std::string from = r.string("from", "machine");
    if (from != "machine" && from != "host")
      r.error("from", "'from' must be \"machine\" (fetched inside it) or \"host\" (through a forwarded port)");
    c.from_host = from == "host";
    if (c.from_host && !c.url.starts_with("http://"))
      r.error("http", "an http check from the host fetches http:// URLs only");
  } else if (c.kind == "script" || c.kind == "testinfra" || c.kind == "serverspec") {
    c.local_file = host_file(r.string(c.kind), file);
    if (c.local_file.empty()) r.error(c.kind, "'" + c.kind + "' must name a file on this host");
    if (c.kind == "script") c.exit_status = r.integer("exit_status", 0);
  } else if (!c.kind.empty()) {  // package, user, group, service, kernel_param
    c.subject = r.string(c.kind);
    if (!plain_name(c.subject) || (c.kind == "kernel_param" && c.subject.find('/') != std::string::npos))
      r.error(c.kind, "'" + c.kind + "' must be a " + (c.kind == "kernel_param" ? "sysctl" : c.kind) + " name");
    if (c.kind == "service") {
      c.running = r.optional_boolean("running");
      c.enabled = r.optional_boolean("enabled");
      if (!c.running && !c.enabled) c.running = true;
    } else if (c.kind == "kernel_param") {
      c.value = r.string("value");
      r.require("value");
    } else {
      c.exists = r.boolean(c.kind == "package" ? "installed" : "exists", true);
      if (c.kind == "package") c.version = r.string("version");
    }
  }
  if (c.name.empty())
    c.name = c.kind + " " +
             (c.kind == "command"     ? c.command
              : c.kind == "file"      ? c.path
              : c.kind == "http"      ? c.url
              : !c.local_file.empty() ? std::filesystem::path(c.local_file).filename().string()
                                      : c.subject);
  r.finish();
  return c;
}

}  // namespace

bool TestSpec::needs_ssh() const {
  for (const auto& c : checks)
    if (c.kind == "testinfra" || c.kind == "serverspec") return true;
  return false;
}

TestSpec read_test_spec(const json::Value& v, const std::string& file, Diagnostics& diags) {
  TestSpec spec;
  spec.file = file;
  spec.pos = v.pos;
  ConfigReader r(v, file, "'tests'", diags);
  spec.suite = r.string("suite", "default");
  if (const json::Value* boot = r.raw("boot")) {
    if (boot->is_object())
      spec.boot = read_boot(*boot, file, diags);
    else
      r.error("boot", "'boot' must be an object (kernel, initrd, append, memory, cpus, ssh_username, ...)");
  }
  spec.service_start = r.boolean("service_start", false);
  spec.service_wait = r.duration("service_wait");
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
