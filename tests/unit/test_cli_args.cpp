// normalize_args: Packer's single-dash spelling of long options, derived from the CLI11
// definitions.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "cli/cli.h"

using imgbake::cli::Action;
using imgbake::cli::define_commands;
using imgbake::cli::GlobalOptions;
using imgbake::cli::normalize_args;
using ::testing::ElementsAre;

namespace {

// The real command line: every verb with its options.
class CliArgs : public ::testing::Test {
 protected:
  CliArgs() { define_commands(app_, global_, action_); }
  std::string One(const std::string& arg) { return normalize_args(app_, {"imgbake", arg})[1]; }

  GlobalOptions global_;
  Action action_;
  CLI::App app_{"imgbake"};
};

}  // namespace

// The flags the hand-written list used to name keep their single-dash spelling.
TEST_F(CliArgs, PackerSingleDashFlagsBecomeLongOptions) {
  for (const std::string name :
       {"var",    "var-file",         "only",         "except", "force",       "on-error", "parallel-builds",
        "debug",  "machine-readable", "syntax-only",  "color",  "check",       "write",    "output",
        "help",   "version",          "timestamp-ui", "label",  "signing-key", "no-store", "channel",
        "reason", "protect",          "descendants",  "format", "key",         "out"}) {
    EXPECT_EQ(One("-" + name), "--" + name);
    EXPECT_EQ(One("-" + name + "=x=y"), "--" + name + "=x=y");
  }
}

// Options no list named before are derived too: any verb's long option accepts -name.
TEST_F(CliArgs, EveryVerbsLongOptionsAcceptASingleDash) {
  EXPECT_EQ(One("-no-cache"), "--no-cache");
  EXPECT_EQ(One("-insecure-registry=localhost:5000"), "--insecure-registry=localhost:5000");
  EXPECT_EQ(One("-password-stdin"), "--password-stdin");
}

TEST_F(CliArgs, EverythingElseIsLeftAlone) {
  EXPECT_EQ(One("--var"), "--var");              // already long
  EXPECT_EQ(One("-o"), "-o");                    // a short option
  EXPECT_EQ(One("-h"), "-h");                    // CLI11's short help
  EXPECT_EQ(One("-"), "-");                      // stdin
  EXPECT_EQ(One("-nosuchflag"), "-nosuchflag");  // CLI11 reports it as it was typed
  EXPECT_EQ(One("template.json"), "template.json");
  EXPECT_EQ(One("-1"), "-1");
  // The program name is never rewritten, even when it looks like a flag.
  EXPECT_THAT(normalize_args(app_, {"-var", "build", "-var", "a=b", "t.json"}),
              ElementsAre("-var", "build", "--var", "a=b", "t.json"));
}

// A new long option needs no second list: the single-dash spelling follows its definition,
// in a subcommand as at the top.
TEST(CliArgsDerived, FollowsTheOptionDefinitions) {
  CLI::App app{"t"};
  std::string top, nested;
  app.add_option("--brand-new", top);
  CLI::App* sub = app.add_subcommand("verb");
  sub->add_option("-n,--nested-name", nested);
  EXPECT_THAT(normalize_args(app, {"t", "-brand-new", "1", "verb", "-nested-name=2", "-n", "-other"}),
              ElementsAre("t", "--brand-new", "1", "verb", "--nested-name=2", "-n", "-other"));
  // The parsed result is what the long spelling gives.
  auto args = normalize_args(app, {"t", "-brand-new", "1", "verb", "-nested-name=2"});
  std::vector<std::string> reversed(args.rbegin(), args.rend() - 1);
  app.parse(reversed);
  EXPECT_EQ(top, "1");
  EXPECT_EQ(nested, "2");
}
