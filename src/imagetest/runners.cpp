// testinfra and serverspec, run on the host against the machine's SSH (runners.h).
#include "runners.h"

#include <chrono>
#include <filesystem>
#include <regex>

#include "imgbake/error.h"
#include "imgbake/http.h"
#include "imgbake/process.h"
#include "imgbake/util.h"

namespace imgbake::imagetest {

namespace {

namespace fs = std::filesystem;
constexpr std::chrono::minutes kDefaultRunnerTimeout{10};

std::string xml_text(const std::string& s) {
  static const std::pair<const char*, const char*> kEntities[] = {{"&quot;", "\""}, {"&apos;", "'"}, {"&lt;", "<"},
                                                                  {"&gt;", ">"},    {"&#10;", "\n"}, {"&amp;", "&"}};
  std::string out = s;
  for (const auto& [entity, ch] : kEntities)
    for (size_t at = out.find(entity); at != std::string::npos; at = out.find(entity, at + 1))
      out.replace(at, std::string_view(entity).size(), ch);
  return out;
}

std::string attribute(const std::string& tag, const std::string& name) {
  std::smatch m;
  if (std::regex_search(tag, m, std::regex("\\s" + name + "=\"([^\"]*)\""))) return xml_text(m[1]);
  return "";
}

// One failed result for a runner that ran no test.
std::vector<CheckResult> broken(const TestCheck& c, const std::string& why) {
  return {{c.name, c.kind, false, why, {}}};
}

// The ssh_config both runners' SSH clients read: the machine's key, no host key checking (the
// instance is new each time and lives on 127.0.0.1).
fs::path write_ssh_config(const HostAccess& host) {
  const SshConfig& s = *host.ssh;
  fs::path p = host.scratch / ("ssh_config-" + util::uuid_v4());
  std::string text = "Host *\n  HostName " + s.host + "\n  Port " + std::to_string(s.port) + "\n  User " + s.username +
                     "\n  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n";
  if (!s.private_key_file.empty()) text += "  IdentityFile " + s.private_key_file + "\n  IdentitiesOnly yes\n";
  util::write_file_atomic(p, text, 0600);
  return p;
}

struct ToolRun {
  int status = 0;
  std::string out, err;
};

ToolRun run_tool(const std::vector<std::string>& argv, const fs::path& cwd, const TestCheck& c,
                 const CancelToken& cancel) {
  ProcessSpec spec;
  spec.argv = argv;
  spec.cwd = cwd.string();
  spec.timeout = c.timeout.value_or(kDefaultRunnerTimeout);
  spec.env_add = {{"PYTHONDONTWRITEBYTECODE", "1"}};
  ToolRun r;
  r.status = run_process(
      spec, [&](std::string_view l) { r.out.append(l).push_back('\n'); },
      [&](std::string_view l) { r.err.append(l).push_back('\n'); }, cancel);
  return r;
}

std::string last_lines(const std::string& text, size_t n) {
  std::vector<std::string> lines = util::split(util::trim(text), '\n');
  if (lines.size() > n) lines.erase(lines.begin(), lines.end() - static_cast<std::ptrdiff_t>(n));
  return util::join(lines, " | ");
}

std::vector<CheckResult> testinfra(const TestCheck& c, const HostAccess& host, const CancelToken& cancel) {
  const fs::path cfg = write_ssh_config(host);
  const fs::path report = host.scratch / ("testinfra-" + util::uuid_v4() + ".xml");
  const SshConfig& s = *host.ssh;
  // Debian's pytest-3 runs the system's python3 (which has python3-testinfra) even when another
  // python3 comes first on PATH.
  const std::string pytest =
      "if command -v pytest-3 >/dev/null 2>&1; then exec pytest-3 \"$@\"; else exec python3 -m pytest \"$@\"; fi";
  ToolRun t = run_tool({"/bin/sh", "-c", pytest, "pytest", "-p", "no:cacheprovider", "-q",
                        "--hosts=ssh://" + s.username + "@" + s.host + ":" + std::to_string(s.port),
                        "--ssh-config=" + cfg.string(), "--junit-xml=" + report.string(), c.local_file},
                       host.scratch, c, cancel);
  std::vector<CheckResult> cases =
      fs::exists(report) ? junit_cases(util::read_file(report)) : std::vector<CheckResult>{};
  if (cases.empty()) {
    if (t.err.find("No module named pytest") != std::string::npos)
      return broken(c, "pytest is not installed on this host (Debian package python3-testinfra)");
    return broken(c, "testinfra ran no test (pytest exit status " + std::to_string(t.status) +
                         "): " + last_lines(t.out + t.err, 4));
  }
  return cases;
}

std::vector<CheckResult> serverspec(const TestCheck& c, const HostAccess& host, const CancelToken& cancel) {
  const SshConfig& s = *host.ssh;
  const fs::path helper = host.scratch / ("serverspec-" + util::uuid_v4() + ".rb");
  const fs::path report = host.scratch / ("serverspec-" + util::uuid_v4() + ".json");
  auto ruby = [](const std::string& v) {
    std::string out = "'";
    for (char ch : v) out += (ch == '\'' || ch == '\\') ? std::string("\\") + ch : std::string(1, ch);
    return out + "'";
  };
  std::string opts = "user: " + ruby(s.username) + ", port: " + std::to_string(s.port) +
                     ", verify_host_key: :never, non_interactive: true, timeout: 30";
  if (!s.private_key_file.empty()) opts += ", keys: [" + ruby(s.private_key_file) + "], keys_only: true";
  util::write_file_atomic(
      helper,
      "require 'serverspec'\nrequire 'net/ssh'\nset :backend, :ssh\nset :host, " + ruby(s.host) +
          "\nset :ssh_options, {" + opts +
          "}\n"
          // A guest without /etc/os-release (busybox) is plain Linux to specinfra.
          "begin\n  os\nrescue StandardError, NotImplementedError\n  set :os, family: 'linux'\nend\n",
      0600);
  ToolRun t =
      run_tool({"rspec", "--require", helper.string(), "--format", "json", "--out", report.string(), c.local_file},
               host.scratch, c, cancel);
  std::vector<CheckResult> out;
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(util::read_file(report));
  } catch (const std::exception&) {
    return broken(c, "serverspec ran no test (rspec exit status " + std::to_string(t.status) +
                         "): " + last_lines(t.out + t.err, 4));
  }
  for (const auto& e : j.value("examples", nlohmann::json::array())) {
    CheckResult r{c.name + ": " + e.value("full_description", std::string("?")),
                  c.kind,
                  e.value("status", "") == "passed",
                  "",
                  {}};
    if (!r.passed)
      r.message = e.contains("exception") ? util::trim(e["exception"].value("message", std::string("failed")))
                                          : e.value("status", std::string("failed"));
    r.duration =
        std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::duration<double>(e.value("run_time", 0.0)));
    out.push_back(std::move(r));
  }
  if (out.empty()) return broken(c, "serverspec ran no test: " + last_lines(t.out + t.err, 4));
  return out;
}

}  // namespace

CheckResult http_from_host(const TestCheck& c, const HostAccess& host, const CancelToken& cancel) {
  CheckResult r{c.name, c.kind, false, "", {}};
  const auto t0 = std::chrono::steady_clock::now();
  // http://AUTHORITY/TARGET, AUTHORITY = HOST[:PORT] (the reader takes http:// URLs only here)
  const std::string rest = c.url.substr(std::string_view("http://").size());
  const std::string authority = rest.substr(0, rest.find('/'));
  const std::string target = rest.find('/') == std::string::npos ? "/" : rest.substr(rest.find('/'));
  const auto colon = authority.rfind(':');
  const int port =
      colon == std::string::npos || authority.back() == ']' ? 80 : std::atoi(authority.c_str() + colon + 1);
  if (!host.forward_tcp) {
    r.message =
        "an http check from the host needs a disk image booted for its tests (a sandbox has no port to forward)";
  } else if (port <= 0 || port > 65535) {
    r.message = "no port in " + c.url;
  } else {
    try {
      const int local = host.forward_tcp(port);
      http::Request req;
      req.url = "http://127.0.0.1:" + std::to_string(local) + target;
      req.headers = {"Host: " + authority};
      req.max_redirects = 0;
      req.cancel = &cancel;
      http::SessionOptions so;
      so.timeout = c.timeout.value_or(kDefaultCheckTimeout);
      http::Session session(so);
      const http::Response got = session.send(req);
      std::vector<std::string> why;
      if (got.status != c.status)
        why.push_back("status " + std::to_string(got.status) + ", not " + std::to_string(c.status));
      for (const auto& s : c.body_contains)
        if (got.body.find(s) == std::string::npos) why.push_back("the body does not contain \"" + s + "\"");
      r.message = util::join(why, "; ");
    } catch (const Cancelled&) {
      throw;
    } catch (const std::exception& e) {
      r.message = "no HTTP answer from " + c.url + " through the forwarded port: " + e.what();
    }
  }
  r.passed = r.message.empty();
  r.duration = std::chrono::steady_clock::now() - t0;
  return r;
}

std::vector<CheckResult> junit_cases(const std::string& xml) {
  std::vector<CheckResult> out;
  static const std::regex host_param("\\[(ssh|paramiko|local)://[^\\]]*\\]");
  for (size_t at = xml.find("<testcase"); at != std::string::npos; at = xml.find("<testcase", at + 1)) {
    const size_t tag_end = xml.find('>', at);
    if (tag_end == std::string::npos) break;
    const std::string tag = xml.substr(at, tag_end - at + 1);
    CheckResult r;
    r.name = std::regex_replace(attribute(tag, "name"), host_param, "");
    const std::string cls = attribute(tag, "classname");
    if (!cls.empty()) r.name = cls.substr(cls.rfind('.') + 1) + "." + r.name;
    r.duration = std::chrono::duration_cast<std::chrono::nanoseconds>(
        std::chrono::duration<double>(std::atof(attribute(tag, "time").c_str())));
    r.passed = true;
    if (tag[tag.size() - 2] != '/') {
      const size_t close = xml.find("</testcase>", tag_end);
      const std::string body = xml.substr(tag_end, close == std::string::npos ? std::string::npos : close - tag_end);
      for (const char* bad : {"<failure", "<error"}) {
        const size_t f = body.find(bad);
        if (f == std::string::npos) continue;
        r.passed = false;
        const std::string message = attribute(body.substr(f, body.find('>', f) - f + 1), "message");
        r.message = message.substr(0, message.find('\n'));
        if (r.message.empty()) r.message = std::string(bad + 1) == "error" ? "error" : "failed";
        break;
      }
    }
    out.push_back(std::move(r));
  }
  return out;
}

std::vector<CheckResult> run_host_runner(const TestCheck& c, const HostAccess& host, const CancelToken& cancel) {
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<CheckResult> out;
  if (!host.ssh)
    out = broken(c, c.kind +
                        " works over SSH: only a disk image booted for its tests has it (this image runs in a "
                        "sandbox)");
  else if (!fs::is_regular_file(c.local_file))
    out = broken(c, "no such file on this host: " + c.local_file);
  else
    out = c.kind == "testinfra" ? testinfra(c, host, cancel) : serverspec(c, host, cancel);
  for (auto& r : out) {
    r.kind = c.kind;
    if (r.name.rfind(c.name, 0) != 0) r.name = c.name + ": " + r.name;
  }
  if (out.size() == 1 && out[0].duration.count() == 0) out[0].duration = std::chrono::steady_clock::now() - t0;
  return out;
}

}  // namespace imgbake::imagetest
