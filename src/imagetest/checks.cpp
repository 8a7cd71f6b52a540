// Each kind of check as shell commands on the machine, and the verdict on what they print.
#include <chrono>
#include <regex>

#include "imgbake/error.h"
#include "imgbake/imagetest.h"
#include "imgbake/util.h"

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

}  // namespace

size_t SuiteResult::failed() const {
  size_t n = 0;
  for (const auto& c : checks) n += c.passed ? 0 : 1;
  return n;
}

std::vector<CheckResult> run_checks(const TestSpec& spec, Communicator& machine, const CancelToken& cancel,
                                    const std::function<void(const CheckResult&)>& on_result) {
  std::vector<CheckResult> out;
  for (const auto& c : spec.checks) {
    cancel.throw_if_cancelled();
    CheckResult r{c.name, c.kind, false, "", {}};
    const auto t0 = std::chrono::steady_clock::now();
    try {
      Machine m(machine, c, cancel);
      if (c.kind == "command")
        r.message = check_command(m, c);
      else if (c.kind == "file")
        r.message = check_file(m, c);
      else if (c.kind == "package")
        r.message = check_package(m, c);
      else
        r.message = check_account(m, c);
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
