// imgbake policy: what a channel of the store demands before `promote` moves it
// (docs/testing-images.md, "Evidence and gates").
#include <iostream>

#include "imgbake/store.h"
#include "store_verbs.h"

namespace imgbake::cli {

namespace {

// "CHANNEL" (that channel of every image) or "NAME:CHANNEL".
std::pair<std::string, std::string> split_channel(const std::string& arg) {
  const auto colon = arg.find(':');
  if (colon == std::string::npos) return {"", arg};
  if (colon == 0 || colon + 1 == arg.size()) throw UsageError("policy: '" + arg + "' is not CHANNEL or NAME:CHANNEL");
  return {arg.substr(0, colon), arg.substr(colon + 1)};
}

std::string describe(const std::string& name, const std::string& channel) {
  return name.empty() ? "channel '" + channel + "' (of every image)" : name + ":" + channel;
}

}  // namespace

Action setup_policy(CLI::App& sub, const GlobalOptions& global) {
  struct Opts {
    std::string action, channel, reason;
    std::vector<std::string> require_tests;
  };
  auto o = std::make_shared<Opts>();
  sub.add_option("action", o->action, "set: give a channel its requirements; clear: remove them; list: show all")
      ->required()
      ->check(CLI::IsMember({"set", "clear", "list"}));
  sub.add_option("channel", o->channel, "CHANNEL (that channel of every image) or NAME:CHANNEL");
  sub.add_option("--require-test", o->require_tests,
                 "A test suite whose passing, signed result an image needs to enter the channel (repeatable)");
  sub.add_option("--reason", o->reason, "Why (kept in the audit log)");
  return [o, &global] {
    auto st = open_store();
    if (o->action == "list") {
      const auto all = st->policies();
      if (global.output == "json") {
        nlohmann::json j = nlohmann::json::array();
        for (const auto& p : all)
          j.push_back({{"name", p.name}, {"channel", p.channel}, {"require_tests", p.require_tests}});
        std::cout << j.dump(2) << "\n";
        return 0;
      }
      if (all.empty()) std::cout << "no channel has a policy\n";
      for (const auto& p : all)
        std::cout << describe(p.name, p.channel) << ": requires test suite(s) " << util::join(p.require_tests, ", ")
                  << "\n";
      return 0;
    }
    if (o->channel.empty()) throw UsageError("policy " + o->action + ": name the channel (CHANNEL or NAME:CHANNEL)");
    const auto [name, channel] = split_channel(o->channel);
    if (o->action == "set" && o->require_tests.empty())
      throw UsageError("policy set: say what the channel requires (--require-test SUITE)");
    if (o->action == "clear" && !o->require_tests.empty())
      throw UsageError("policy clear: takes no --require-test (it removes them all)");
    st->set_policy(name, channel, o->action == "set" ? o->require_tests : std::vector<std::string>{}, o->reason);
    if (o->action == "set")
      std::cout << describe(name, channel) << " now requires a passing test of suite(s) "
                << util::join(o->require_tests, ", ") << " before promote\n";
    else
      std::cout << describe(name, channel) << " has no policy now\n";
    return 0;
  };
}

}  // namespace imgbake::cli
