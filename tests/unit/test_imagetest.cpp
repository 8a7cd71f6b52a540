// The test spec reader (template module) and the check runner (imagetest), with a scripted
// machine standing in for the sandbox (the e2e test runs the real one).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <string>

#include "imagetest/runners.h"
#include "imgbake/imagetest.h"
#include "imgbake/json.h"
#include "imgbake/test_spec.h"

namespace {

using ::testing::HasSubstr;

imgbake::TestSpec Read(const std::string& text, imgbake::Diagnostics& d) {
  return imgbake::read_test_spec(imgbake::json::parse(text), "spec.json", d);
}

std::string Errors(const imgbake::Diagnostics& d) {
  std::string out;
  for (const auto& e : d.errors())
    out += std::to_string(e.pos.line) + ":" + std::to_string(e.pos.col) + " " + e.message + "\n";
  return out;
}

TEST(TestSpec, ReadsTheIssuesFormWithDefaults) {
  imgbake::Diagnostics d;
  auto spec = Read(R"({"suite": "smoke", "checks": [
    {"name": "motd", "file": "/etc/motd", "contains": "baked"},
    {"name": "hello runs", "command": "/usr/bin/hello", "exit_status": 0, "stdout_contains": "Hello"},
    {"package": "nginx", "version": "1.22"}]})",
                   d);
  ASSERT_FALSE(d.has_errors()) << Errors(d);
  EXPECT_EQ(spec.suite, "smoke");
  ASSERT_EQ(spec.checks.size(), 3U);
  EXPECT_EQ(spec.checks[0].kind, "file");
  EXPECT_EQ(spec.checks[0].contains, std::vector<std::string>{"baked"});
  EXPECT_TRUE(spec.checks[0].exists);
  EXPECT_EQ(spec.checks[1].stdout_contains, std::vector<std::string>{"Hello"});
  EXPECT_EQ(spec.checks[2].name, "package nginx");
  EXPECT_EQ(spec.checks[2].version, "1.22");
}

TEST(TestSpec, EveryMistakeIsReportedWhereItIs) {
  imgbake::Diagnostics d;
  Read(R"({"checks": [
  {"name": "a", "file": "etc/motd", "mode": "rw"},
  {"name": "b", "command": "true", "user": "x"},
  {"name": "a", "command": "true", "stdout_matches": "("},
  {"name": "d", "file": "/x", "exists": false, "contains": "y"},
  {"name": "e"}
], "sute": "x"})",
       d);
  const std::string e = Errors(d);
  EXPECT_THAT(e, HasSubstr("2:25 check 1 ('a'): 'file' must be an absolute path"));
  EXPECT_THAT(e, HasSubstr("2:45 check 1 ('a'): 'mode' must be an octal mode"));
  EXPECT_THAT(e, HasSubstr("3:3 check 2 ('b'): a check has one kind, not 'command' and 'user'"));
  EXPECT_THAT(e, HasSubstr("two checks are named 'a'"));
  EXPECT_THAT(e, HasSubstr("'stdout_matches' is not a valid regular expression"));
  EXPECT_THAT(e, HasSubstr("a file that must not exist has no type"));
  EXPECT_THAT(e, HasSubstr("check 5 ('e'): a check needs one of"));
  EXPECT_THAT(e, HasSubstr("sute"));
}

// A machine that answers each command from a script of (substring of the command -> result).
class ScriptedMachine : public imgbake::Communicator {
 public:
  struct Answer {
    int status;
    std::string out, err;
  };
  std::vector<std::pair<std::string, Answer>> script;
  std::vector<std::string> commands;

  imgbake::RunResult run(const imgbake::RemoteCommand& cmd, const imgbake::LineSink& out, const imgbake::LineSink& err,
                         const imgbake::CancelToken&) override {
    commands.push_back(cmd.command);
    for (const auto& [key, a] : script) {
      if (cmd.command.find(key) == std::string::npos) continue;
      if (!a.out.empty()) out(a.out);
      if (!a.err.empty()) err(a.err);
      return imgbake::RunResult::exited(a.status);
    }
    return imgbake::RunResult::exited(127);
  }
  void upload(const std::string&, const std::string&, const imgbake::CancelToken&) override {}
  void download(const std::string&, const std::string&, const imgbake::CancelToken&) override {}
};

TEST(RunChecks, JudgesWhatTheMachineAnswersAndQuotesPaths) {
  imgbake::Diagnostics d;
  auto spec = Read(R"({"checks": [
    {"name": "f", "file": "/etc/it's here", "mode": "0644", "owner": "root", "sha256": "0000000000000000000000000000000000000000000000000000000000000000"},
    {"name": "c", "command": "run-it", "stdout_matches": "^v[0-9]+$"},
    {"name": "p", "package": "nginx", "version": "1.22"},
    {"name": "u", "user": "www", "exists": false}]})",
                   d);
  ASSERT_FALSE(d.has_errors()) << Errors(d);
  ScriptedMachine m;
  m.script = {{"stat -c", {0, "file\n640 root root", ""}},
              {"sha256sum", {0, "abc  -", ""}},
              {"run-it", {0, "v12", ""}},
              {"dpkg-query", {0, "install ok installed|1.18.0-6", ""}},
              {"awk", {0, "", ""}}};
  imgbake::CancelToken cancel;
  auto results = imgbake::imagetest::run_checks(spec, m, cancel);
  ASSERT_EQ(results.size(), 4U);
  EXPECT_FALSE(results[0].passed);
  EXPECT_EQ(results[0].message,
            "mode 0640, not 0644; sha256 abc, not 0000000000000000000000000000000000000000000000000000000000000000");
  EXPECT_TRUE(results[1].passed) << results[1].message;
  EXPECT_FALSE(results[2].passed);
  EXPECT_EQ(results[2].message, "version 1.18.0-6 is installed, not 1.22");
  EXPECT_FALSE(results[3].passed);
  EXPECT_EQ(results[3].message, "it exists");
  // The path reaches the shell quoted, whatever it holds.
  EXPECT_THAT(m.commands[0], HasSubstr("p='/etc/it'\\''s here'"));
}

TEST(TestSpec, ReadsTheServiceKindsRunnersAndBootSettings) {
  imgbake::Diagnostics d;
  auto spec =
      imgbake::read_test_spec(imgbake::json::parse(R"({"suite": "s", "service_start": true, "service_wait": "3s",
    "boot": {"kernel": "guest/vmlinuz", "memory": 256, "ssh_username": "root", "qemuargs": [["-cpu", "max"]]},
    "checks": [
    {"service": "nginx", "enabled": true},
    {"port": 53, "protocol": "udp", "listening": false},
    {"http": "http://127.0.0.1:8080/", "status": 204, "body_contains": "ok", "from": "host"},
    {"kernel_param": "net.ipv4.ip_forward", "value": "1"},
    {"script": "checks/a.sh"},
    {"name": "infra", "testinfra": "/abs/test_x.py"}]})"),
                              "/specs/spec.json", d);
  ASSERT_FALSE(d.has_errors()) << Errors(d);
  EXPECT_TRUE(spec.service_start);
  EXPECT_EQ(spec.service_wait, std::chrono::milliseconds(3000));
  EXPECT_EQ(spec.boot.kernel, "/specs/guest/vmlinuz");  // relative to the spec's directory
  EXPECT_EQ(spec.boot.memory, 256);
  EXPECT_EQ(spec.boot.qemuargs, (std::vector<std::vector<std::string>>{{"-cpu", "max"}}));
  ASSERT_EQ(spec.checks.size(), 6U);
  EXPECT_EQ(spec.checks[0].name, "service nginx");
  EXPECT_FALSE(spec.checks[0].running.has_value());  // only `enabled` was asked
  EXPECT_EQ(spec.checks[0].enabled, true);
  EXPECT_EQ(spec.checks[1].name, "port udp/53");
  EXPECT_FALSE(spec.checks[1].exists);
  EXPECT_EQ(spec.checks[2].status, 204);
  EXPECT_TRUE(spec.checks[2].from_host);
  EXPECT_EQ(spec.checks[3].value, "1");
  EXPECT_EQ(spec.checks[4].local_file, "/specs/checks/a.sh");
  EXPECT_EQ(spec.checks[5].local_file, "/abs/test_x.py");
  EXPECT_TRUE(spec.needs_ssh());
}

TEST(TestSpec, MistakesInTheNewKindsAreReported) {
  imgbake::Diagnostics d;
  Read(R"({"boot": {"memory": 1, "qemuargs": ["-cpu"]}, "checks": [
  {"port": 70000},
  {"port": 80, "protocol": "sctp"},
  {"http": "ftp://x/"},
  {"http": "https://x/", "from": "host"},
  {"http": "http://x/", "from": "outside"},
  {"kernel_param": "kernel.hostname"},
  {"service": "a b"}
]})",
       d);
  const std::string e = Errors(d);
  EXPECT_THAT(e, HasSubstr("'memory' (MiB) and 'cpus' must be positive"));
  EXPECT_THAT(e, HasSubstr("'qemuargs' must be a list of lists of strings"));
  EXPECT_THAT(e, HasSubstr("'port' must be a port number"));
  EXPECT_THAT(e, HasSubstr("'protocol' must be \"tcp\" or \"udp\""));
  EXPECT_THAT(e, HasSubstr("'http' must be an http:// or https:// URL"));
  EXPECT_THAT(e, HasSubstr("an http check from the host fetches http:// URLs only"));
  EXPECT_THAT(e, HasSubstr("'from' must be \"machine\""));
  EXPECT_THAT(e, HasSubstr("value"));
  EXPECT_THAT(e, HasSubstr("'service' must be a service name"));
}

TEST(RunChecks, JudgesServicesPortsPagesAndKernelParameters) {
  imgbake::Diagnostics d;
  auto spec = Read(R"({"checks": [
    {"name": "sysv", "service": "cron", "enabled": true},
    {"name": "ssh", "port": 22},
    {"name": "web", "http": "http://127.0.0.1/", "body_contains": "welcome"},
    {"name": "fwd", "kernel_param": "net.ipv4.ip_forward", "value": "1"},
    {"name": "ranges", "kernel_param": "net.ipv4.ip_local_port_range", "value": "32768 60999"}]})",
                   d);
  ASSERT_FALSE(d.has_errors()) << Errors(d);
  ScriptedMachine m;
  m.script = {
      {"systemctl", {0, "init=sysvinit\nrunning=yes\nenabled=no", ""}},
      {"/proc/net/tcp", {0, "proc\n  sl  local_address rem_address   st\n   0: 00000000:0016 00000000:0000 0A 0", ""}},
      {"wget", {1, "not found page", "HTTP/1.1 404 Not Found"}},
      {"ip_forward", {0, "0", ""}},
      {"ip_local_port_range", {0, "32768\t60999", ""}}};
  imgbake::CancelToken cancel;
  auto results = imgbake::imagetest::run_checks(spec, m, cancel);
  ASSERT_EQ(results.size(), 5U);
  EXPECT_EQ(results[0].message, "it is not enabled (sysvinit)");
  EXPECT_TRUE(results[1].passed) << results[1].message;
  EXPECT_EQ(results[2].message, "status 404, not 200; the body does not contain \"welcome\"");
  EXPECT_EQ(results[3].message, "value \"0\", not \"1\"");
  EXPECT_TRUE(results[4].passed) << results[4].message;
  EXPECT_THAT(m.commands[3], HasSubstr("cat '/proc/sys/net/ipv4/ip_forward'"));
}

TEST(RunChecks, ProcNetListensReadsTheKernelsTables) {
  const std::string tcp =
      "  sl  local_address rem_address   st tx_queue rx_queue\n"
      "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000\n"
      "   1: 0100007F:0050 0100007F:A000 01 00000000:00000000\n";
  EXPECT_TRUE(imgbake::imagetest::proc_net_listens(tcp, 8080, true));
  EXPECT_FALSE(imgbake::imagetest::proc_net_listens(tcp, 80, true));  // established, not listening
  EXPECT_TRUE(imgbake::imagetest::proc_net_listens(tcp, 80, false));  // a bound UDP socket receives
  EXPECT_FALSE(imgbake::imagetest::proc_net_listens(tcp, 22, true));
}

TEST(RunChecks, ARunnerWithoutSshFailsSayingWhy) {
  imgbake::Diagnostics d;
  auto spec = Read(R"({"checks": [{"name": "infra", "testinfra": "/nonexistent/test_x.py"}]})", d);
  ASSERT_FALSE(d.has_errors()) << Errors(d);
  ScriptedMachine m;
  imgbake::CancelToken cancel;
  auto results = imgbake::imagetest::run_checks(spec, m, cancel);
  ASSERT_EQ(results.size(), 1U);
  EXPECT_FALSE(results[0].passed);
  EXPECT_THAT(results[0].message, HasSubstr("testinfra works over SSH: only a disk image"));
}

TEST(JUnit, EscapesWhatXmlCannotCarryAsIs) {
  imgbake::imagetest::SuiteResult r;
  r.suite = "smoke";
  r.image = "web:1";
  r.checks = {{"a <b> & \"c\"", "command", false, "exit 1\x01 'x'", std::chrono::milliseconds(1500)},
              {"ok", "file", true, "", {}}};
  const std::string x = imgbake::imagetest::junit_xml(r);
  EXPECT_THAT(x, HasSubstr("<testcase name=\"a &lt;b&gt; &amp; &quot;c&quot;\" classname=\"imgbake.smoke.command\" "
                           "time=\"1.500\">"));
  EXPECT_THAT(x, HasSubstr("<failure message=\"exit 1? &apos;x&apos;\" type=\"command\">"));
  EXPECT_THAT(x, HasSubstr("tests=\"2\" failures=\"1\""));
  EXPECT_THAT(x, HasSubstr("<testcase name=\"ok\" classname=\"imgbake.smoke.file\" time=\"0.000\"/>"));
}

TEST(JUnit, ARunnersReportBecomesChecksWithoutTheHostParameter) {
  const auto cases = imgbake::imagetest::junit_cases(
      R"(<testsuites><testsuite name="pytest" tests="3">)"
      R"(<testcase classname="test_web" name="test_motd[ssh://root@127.0.0.1:2345]" time="0.50"/>)"
      R"(<testcase classname="test_web" name="test_port[ssh://root@127.0.0.1:2345]" time="1.25">)"
      R"(<failure message="AssertionError: assert False&#10;more">trace</failure></testcase>)"
      R"(<testcase classname="test_web" name="test_skip" time="0"><skipped message="later"/></testcase>)"
      R"(</testsuite></testsuites>)");
  ASSERT_EQ(cases.size(), 3U);
  EXPECT_EQ(cases[0].name, "test_web.test_motd");
  EXPECT_TRUE(cases[0].passed);
  EXPECT_EQ(cases[1].name, "test_web.test_port");
  EXPECT_FALSE(cases[1].passed);
  EXPECT_EQ(cases[1].message, "AssertionError: assert False");
  EXPECT_EQ(cases[1].duration, std::chrono::milliseconds(1250));
  EXPECT_TRUE(cases[2].passed);  // skipped: not a failure
}

}  // namespace
