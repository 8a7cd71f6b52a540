// The test spec reader (template module) and the check runner (imagetest), with a scripted
// machine standing in for the sandbox (the e2e test runs the real one).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <string>

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

}  // namespace
