// Each kind of check as shell commands on the machine, and the verdict on what they print.
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <map>
#include <regex>
#include <sstream>

#include "imgbake/error.h"
#include "imgbake/imagetest.h"
#include "imgbake/util.h"
#include "runners.h"

namespace imgbake::imagetest {

namespace {

constexpr size_t kOutputLimit = 4 << 20;  // what a check keeps of a command's output

// 'text' for a POSIX shell.
std::string quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

struct Output {
  RunResult result;
  std::string out, err;
};

class Machine {
 public:
  Machine(Communicator& c, const TestCheck& check, const CancelToken& cancel)
      : c_(c), timeout_(check.timeout.value_or(kDefaultCheckTimeout)), cancel_(cancel) {}

  Communicator& communicator() { return c_; }
  const CancelToken& cancel() const { return cancel_; }

  Output run(const std::string& command) {
    Output o;
    auto sink = [](std::string& to) {
      return [&to](std::string_view line) {
        if (to.size() >= kOutputLimit) return;
        to.append(line);
        to += '\n';
      };
    };
    RemoteCommand cmd{command, {}, timeout_};
    o.result = c_.run(cmd, sink(o.out), sink(o.err), cancel_);
    return o;
  }

 private:
  Communicator& c_;
  std::chrono::milliseconds timeout_;
  const CancelToken& cancel_;
};

// The first line of `text` (for messages), at most 200 bytes.
std::string first_line(const std::string& text) {
  std::string l = text.substr(0, text.find('\n'));
  return l.size() > 200 ? l.substr(0, 200) + "…" : l;
}

std::string ended(const RunResult& r) {
  return r.disconnected ? "the connection dropped" : "exit status " + std::to_string(r.status);
}

// "" when it passed, else why not.
std::string check_command(Machine& m, const TestCheck& c) {
  Output o = m.run(c.command);
  if (o.result.disconnected) return "the connection dropped before the command ended";
  std::vector<std::string> why;
  if (o.result.status != c.exit_status)
    why.push_back("exit status " + std::to_string(o.result.status) + ", not " + std::to_string(c.exit_status) +
                  (o.err.empty() ? "" : " (stderr: " + first_line(o.err) + ")"));
  for (const auto& s : c.stdout_contains)
    if (o.out.find(s) == std::string::npos) why.push_back("stdout does not contain \"" + s + "\"");
  for (const auto& s : c.stderr_contains)
    if (o.err.find(s) == std::string::npos) why.push_back("stderr does not contain \"" + s + "\"");
  // ^ and $ match at line ends, as people read output.
  if (!c.stdout_matches.empty() &&
      !std::regex_search(o.out, std::regex(c.stdout_matches, std::regex::ECMAScript | std::regex::multiline)))
    why.push_back("stdout does not match /" + c.stdout_matches + "/");
  if (!why.empty() && o.result.status == c.exit_status && !o.out.empty())
    why.back() += " (stdout: " + first_line(o.out) + ")";
  return util::join(why, "; ");
}

std::string check_file(Machine& m, const TestCheck& c) {
  const std::string p = quote(c.path);
  Output o = m.run("p=" + p +
                   "; if [ -L \"$p\" ]; then t=symlink; elif [ -d \"$p\" ]; then t=directory; elif [ -f \"$p\" ]; "
                   "then t=file; elif [ -e \"$p\" ]; then t=other; else echo missing; exit 0; fi; "
                   "echo \"$t\"; stat -c '%a %U %G' \"$p\"");
  if (!o.result.succeeded()) return "cannot inspect it (" + ended(o.result) + ": " + first_line(o.err) + ")";
  std::vector<std::string> lines = util::split(o.out, '\n');
  const std::string type = lines.empty() ? "" : lines[0];
  if (type == "missing") return c.exists ? "it does not exist" : "";
  if (!c.exists) return "it exists (a " + type + ")";
  std::vector<std::string> why;
  if (!c.type.empty() && c.type != type) why.push_back("it is a " + type + ", not a " + c.type);
  std::vector<std::string> st = lines.size() > 1 ? util::split(lines[1], ' ') : std::vector<std::string>{};
  if (st.size() < 3) return "cannot read its mode and owner (stat printed \"" + first_line(o.out) + "\")";
  if (!c.mode.empty() && std::stoul(c.mode, nullptr, 8) != std::stoul(st[0], nullptr, 8))
    why.push_back("mode 0" + st[0] + ", not " + c.mode);
  if (!c.owner.empty() && c.owner != st[1]) why.push_back("owner " + st[1] + ", not " + c.owner);
  if (!c.group.empty() && c.group != st[2]) why.push_back("group " + st[2] + ", not " + c.group);
  if (!c.contains.empty()) {
    Output content = m.run("cat " + p);
    if (!content.result.succeeded()) {
      why.push_back("cannot read it (" + first_line(content.err) + ")");
    } else {
      for (const auto& s : c.contains)
        if (content.out.find(s) == std::string::npos) why.push_back("it does not contain \"" + s + "\"");
    }
  }
  if (!c.sha256.empty()) {
    Output sum = m.run("sha256sum < " + p);
    const std::string got = sum.out.substr(0, sum.out.find_first_of(" \n"));
    if (!sum.result.succeeded())
      why.push_back("cannot hash it (" + first_line(sum.err) + ")");
    else if (got != c.sha256)
      why.push_back("sha256 " + got + ", not " + c.sha256);
  }
  return util::join(why, "; ");
}

std::string check_package(Machine& m, const TestCheck& c) {
  const std::string n = quote(c.subject);
  Output o = m.run("if command -v dpkg-query >/dev/null 2>&1; then dpkg-query -W -f='${Status}|${Version}\\n' " + n +
                   " 2>/dev/null || echo 'not-installed|'; elif command -v rpm >/dev/null 2>&1; then rpm -q --qf "
                   "'install ok installed|%{VERSION}-%{RELEASE}\\n' " +
                   n + " 2>/dev/null || echo 'not-installed|'; else echo 'no-package-manager|'; fi");
  if (!o.result.succeeded()) return "cannot ask the package manager (" + ended(o.result) + ")";
  const std::string line = first_line(o.out);
  const std::string status = line.substr(0, line.find('|'));
  const std::string version = line.find('|') == std::string::npos ? "" : line.substr(line.find('|') + 1);
  if (status == "no-package-manager") return "the image has neither dpkg nor rpm";
  const bool installed = status == "install ok installed";
  if (!c.exists) return installed ? "it is installed (version " + version + ")" : "";
  if (!installed) return "it is not installed";
  if (!c.version.empty() && !version.starts_with(c.version))
    return "version " + version + " is installed, not " + c.version;
  return "";
}

std::string check_account(Machine& m, const TestCheck& c) {
  const char* file = c.kind == "user" ? "/etc/passwd" : "/etc/group";
  Output o = m.run("awk -F: -v n=" + quote(c.subject) + " '$1 == n { found = 1 } END { exit !found }' " + file);
  if (o.result.disconnected || o.result.status > 1)
    return "cannot read " + std::string(file) + " (" + ended(o.result) + ": " + first_line(o.err) + ")";
  const bool exists = o.result.status == 0;
  if (exists == c.exists) return "";
  return exists ? "it exists" : "there is no such " + c.kind + " in " + file;
}

// service: running and enabled as the guest's init system sees it (systemd, else an
// /etc/init.d script with its rc?.d links, else just a process of that name).
std::string check_service(Machine& m, const TestCheck& c) {
  Output o =
      m.run("n=" + quote(c.subject) +
            "; if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then echo init=systemd; "
            "if systemctl is-active --quiet \"$n\"; then echo running=yes; else echo running=no; fi; "
            "if systemctl is-enabled --quiet \"$n\" 2>/dev/null; then echo enabled=yes; else echo enabled=no; fi; "
            "elif [ -x \"/etc/init.d/$n\" ]; then echo init=sysvinit; "
            "if \"/etc/init.d/$n\" status >/dev/null 2>&1 || pidof \"$n\" >/dev/null 2>&1; then echo running=yes; "
            "else echo running=no; fi; "
            "if ls /etc/rc[2345].d/S[0-9][0-9]\"$n\" >/dev/null 2>&1; then echo enabled=yes; else echo "
            "enabled=no; fi; "
            "else echo init=none; if pidof \"$n\" >/dev/null 2>&1 || pgrep -x \"$n\" >/dev/null 2>&1; then echo "
            "running=yes; else echo running=no; fi; echo enabled=unknown; fi");
  if (!o.result.succeeded()) return "cannot ask the init system (" + ended(o.result) + ": " + first_line(o.err) + ")";
  std::map<std::string, std::string> facts;
  for (const auto& line : util::split(o.out, '\n'))
    if (auto eq = line.find('='); eq != std::string::npos) facts[line.substr(0, eq)] = line.substr(eq + 1);
  const std::string init = facts["init"] == "none" ? "no init system: judged by its process" : facts["init"];
  std::vector<std::string> why;
  if (c.running && (facts["running"] == "yes") != *c.running)
    why.push_back(*c.running ? "it is not running (" + init + ")" : "it is running (" + init + ")");
  if (c.enabled) {
    if (facts["enabled"] == "unknown")
      why.push_back("whether it is enabled cannot be told: neither systemd nor an /etc/init.d script");
    else if ((facts["enabled"] == "yes") != *c.enabled)
      why.push_back(*c.enabled ? "it is not enabled (" + init + ")" : "it is enabled (" + init + ")");
  }
  return util::join(why, "; ");
}

std::string check_port(Machine& m, const TestCheck& c) {
  const bool tcp = c.protocol == "tcp";
  const std::string files = tcp ? "/proc/net/tcp /proc/net/tcp6" : "/proc/net/udp /proc/net/udp6";
  // /proc/net first (every Linux has it); ss or netstat when it cannot be read.
  Output o = m.run("if [ -r " + files.substr(0, files.find(' ')) + " ]; then echo proc; cat " + files +
                   " 2>/dev/null; elif command -v ss >/dev/null 2>&1; then echo ss; ss -Hln" + (tcp ? "t" : "u") +
                   "; elif command -v netstat >/dev/null 2>&1; then echo netstat; netstat -ln" + (tcp ? "t" : "u") +
                   "; else echo none; fi");
  if (!o.result.succeeded()) return "cannot list its sockets (" + ended(o.result) + ": " + first_line(o.err) + ")";
  const std::string source = first_line(o.out);
  bool listens = false;
  if (source == "proc") {
    listens = proc_net_listens(o.out, c.port, tcp);
  } else if (source == "none") {
    return "cannot list its sockets: no /proc/net, ss or netstat";
  } else {
    const std::string suffix = ":" + std::to_string(c.port);
    for (const auto& line : util::split(o.out, '\n'))
      for (const auto& word : util::split(line, ' '))
        if (word.ends_with(suffix)) listens = true;
  }
  if (listens == c.exists) return "";
  return listens ? "something listens on " + c.subject : "nothing listens on " + c.subject;
}

// http: fetched on the machine with what it has (curl, else wget, busybox's included).
std::string check_http(Machine& m, const TestCheck& c) {
  Output o = m.run("u=" + quote(c.url) +
                   "; if command -v curl >/dev/null 2>&1; then curl -sS -k -w '\\nIMGBAKE-HTTP-STATUS %{http_code}\\n' "
                   "\"$u\"; elif command -v wget >/dev/null 2>&1; then wget -S -O - \"$u\"; "
                   "else echo 'IMGBAKE-HTTP-NONE' >&2; exit 127; fi");
  if (o.result.disconnected) return "the connection dropped before the request ended";
  if (o.err.find("IMGBAKE-HTTP-NONE") != std::string::npos) return "the machine has neither curl nor wget";
  std::string body = o.out;
  int status = 0;
  std::smatch sm;
  static const std::regex curl_status("\nIMGBAKE-HTTP-STATUS ([0-9]{3})\n?$");
  static const std::regex wget_status("HTTP/[0-9.]+ ([0-9]{3})");
  if (std::regex_search(o.out, sm, curl_status)) {
    status = std::stoi(sm[1]);
    body = o.out.substr(0, static_cast<size_t>(sm.position(0)));
  } else {
    // wget -S prints each response's status line on stderr (the last one after redirects).
    for (auto it = std::sregex_iterator(o.err.begin(), o.err.end(), wget_status); it != std::sregex_iterator(); ++it)
      status = std::stoi((*it)[1]);
  }
  if (status == 0) return "no HTTP answer from " + c.url + " (" + ended(o.result) + ": " + first_line(o.err) + ")";
  std::vector<std::string> why;
  if (status != c.status) why.push_back("status " + std::to_string(status) + ", not " + std::to_string(c.status));
  for (const auto& s : c.body_contains)
    if (body.find(s) == std::string::npos) why.push_back("the body does not contain \"" + s + "\"");
  return util::join(why, "; ");
}

std::string check_kernel_param(Machine& m, const TestCheck& c) {
  std::string path = "/proc/sys/" + c.subject;
  std::replace(path.begin() + 10, path.end(), '.', '/');
  Output o = m.run("cat " + quote(path));
  if (!o.result.succeeded()) return "cannot read " + path + " (" + ended(o.result) + ": " + first_line(o.err) + ")";
  // sysctl separates the words of a value with tabs: compare them as single spaces.
  auto words = [](const std::string& s) {
    std::string out;
    std::istringstream in(s);
    for (std::string w; in >> w;) out += (out.empty() ? "" : " ") + w;
    return out;
  };
  const std::string got = words(o.out);
  return got == words(c.value) ? "" : "value \"" + got + "\", not \"" + words(c.value) + "\"";
}

// script: a host file copied to the machine and run there with /bin/sh.
std::string check_script(Machine& m, const TestCheck& c) {
  if (!std::filesystem::is_regular_file(c.local_file)) return "no such script on this host: " + c.local_file;
  const std::string remote = "/tmp/imgbake-check-" + util::uuid_v4() + ".sh";
  m.communicator().upload(c.local_file, remote, m.cancel());
  Output o = m.run("sh " + remote + "; s=$?; rm -f " + remote + "; exit $s");
  if (o.result.disconnected) return "the connection dropped before the script ended";
  if (o.result.status == c.exit_status) return "";
  const std::string said = !o.err.empty() ? first_line(o.err) : first_line(o.out);
  return "exit status " + std::to_string(o.result.status) + ", not " + std::to_string(c.exit_status) +
         (said.empty() ? "" : " (" + said + ")");
}

// The checker of each kind (the runners, testinfra and serverspec, are not: they run on the host).
using Checker = std::string (*)(Machine&, const TestCheck&);
const std::map<std::string, Checker>& checkers() {
  static const std::map<std::string, Checker> table = {
      {"command", check_command}, {"file", check_file},     {"package", check_package},
      {"user", check_account},    {"group", check_account}, {"service", check_service},
      {"port", check_port},       {"http", check_http},     {"kernel_param", check_kernel_param},
      {"script", check_script}};
  return table;
}

}  // namespace

bool proc_net_listens(const std::string& text, int64_t port, bool tcp) {
  for (const auto& line : util::split(text, '\n')) {
    std::istringstream in(line);
    std::string slot, local, remote, state;
    if (!(in >> slot >> local >> remote >> state) || slot.back() != ':') continue;
    const auto colon = local.rfind(':');
    if (colon == std::string::npos) continue;
    unsigned long p = 0;
    try {
      p = std::stoul(local.substr(colon + 1), nullptr, 16);
    } catch (const std::exception&) {
      continue;
    }
    if (static_cast<int64_t>(p) != port) continue;
    if (!tcp || state == "0A") return true;  // a bound UDP socket receives: it "listens"
  }
  return false;
}

size_t SuiteResult::failed() const {
  size_t n = 0;
  for (const auto& c : checks) n += c.passed ? 0 : 1;
  return n;
}

std::vector<CheckResult> run_checks(const TestSpec& spec, Communicator& machine, const CancelToken& cancel,
                                    const std::function<void(const CheckResult&)>& on_result, const HostAccess& host) {
  std::vector<CheckResult> out;
  for (const auto& c : spec.checks) {
    cancel.throw_if_cancelled();
    if (c.kind == "http" && c.from_host) {
      CheckResult r = http_from_host(c, host, cancel);
      if (on_result) on_result(r);
      out.push_back(std::move(r));
      continue;
    }
    if (c.kind == "testinfra" || c.kind == "serverspec") {
      for (auto& r : run_host_runner(c, host, cancel)) {
        if (on_result) on_result(r);
        out.push_back(std::move(r));
      }
      continue;
    }
    CheckResult r{c.name, c.kind, false, "", {}};
    const auto t0 = std::chrono::steady_clock::now();
    try {
      Machine m(machine, c, cancel);
      r.message = checkers().at(c.kind)(m, c);
      r.passed = r.message.empty();
    } catch (const Cancelled&) {
      throw;
    } catch (const std::exception& e) {
      r.message = std::string("could not run the check: ") + e.what();
    }
    r.duration = std::chrono::steady_clock::now() - t0;
    if (on_result) on_result(r);
    out.push_back(std::move(r));
  }
  return out;
}

}  // namespace imgbake::imagetest
