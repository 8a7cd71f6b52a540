// imgbake history: the audit log of an image name, or the signed records of a registry repository
#include <algorithm>
#include <cstdio>
#include <iostream>

#include "remote_verbs.h"

namespace imgbake::cli {
namespace {

// "sha256:0123456789ab" for a line read by people.
std::string short_digest(const std::string& d) { return d.substr(0, std::min<size_t>(d.size(), 19)); }

// The records of a registry repository, newest first, as `history` shows the local audit log;
// a record that does not verify is shown with the reason, never as trusted.
int print_remote_history(const GlobalOptions& global, const registry::Reference& repo, const std::string& channel,
                         const RegistryFlags& flags) {
  Remote remote(global, repo.registry, flags);
  auto records = registry::repository_records(*remote.client, repo.repository, remote.keys, global_cancel());
  const std::string repository = repo.registry + "/" + repo.repository;
  std::vector<std::pair<size_t, registry::CheckedRecord>> shown;  // seq (oldest is 1), record
  for (size_t i = 0; i < records.size(); ++i) {
    const auto& r = records[i].record;
    // Records of another repository came along with a copy: they are about that one's tags.
    if (records[i].verified && r.repository != repository) continue;
    if (!channel.empty() && r.channel != channel) continue;
    shown.emplace_back(shown.size() + 1, records[i]);
  }
  std::reverse(shown.begin(), shown.end());
  if (global.output == "json") {
    nlohmann::json arr = nlohmann::json::array();
    for (const auto& [seq, c] : shown)
      arr.push_back({{"seq", seq},
                     {"time", c.record.time},
                     {"who", c.record.who},
                     {"action", c.record.action},
                     {"name", c.record.repository},
                     {"channel", c.record.channel},
                     {"from", c.record.from_digest},
                     {"to", c.record.to_digest},
                     {"reason", c.record.reason},
                     {"hash", c.digest},
                     {"previous", c.record.previous},
                     {"verified", c.verified},
                     {"problem", c.problem},
                     {"keyid", c.keyid},
                     {"imported_from", c.record.imported_from}});
    std::cout << arr.dump(2) << "\n";
    return 0;
  }
  if (shown.empty()) {
    std::cout << "no history for '" << repository << "'" << (channel.empty() ? "" : " channel " + channel) << "\n";
    return 1;
  }
  for (const auto& [seq, c] : shown) {
    const auto& r = c.record;
    std::string what = r.action.empty() ? "?" : r.action;
    if (!r.channel.empty()) what += " " + r.channel;
    std::string move = r.from_digest.empty() ? short_digest(r.to_digest)
                                             : short_digest(r.from_digest) + " -> " + short_digest(r.to_digest);
    std::string notes;
    if (!r.reason.empty()) notes += "  (" + r.reason + ")";
    if (!r.imported_from.empty()) notes += "  [imported from the " + r.imported_from + ": " + r.local_name + "]";
    if (!c.verified) notes += "  UNVERIFIED: " + c.problem;
    std::printf("%4zu  %s  %-20s  %-22s %s%s\n", seq, r.time.c_str(), r.who.c_str(), what.c_str(), move.c_str(),
                notes.c_str());
  }
  return 0;
}

}  // namespace

Action setup_history(CLI::App& sub, const GlobalOptions& global) {
  struct Opts {
    std::string name, channel;
    RegistryFlags reg;
  };
  auto o = std::make_shared<Opts>();
  sub.add_option("name", o->name, "The image name (or REGISTRY/REPO: its signed records)")->required();
  sub.add_option("--channel", o->channel, "Only this channel's moves");
  add_registry_flags(sub, o->reg);
  return [o, &global] {
    if (registry::names_registry(o->name)) {
      registry::Reference repo = registry::Reference::parse(o->name);
      if (!repo.tag.empty() || !repo.digest.empty())
        throw UsageError("history: name the repository (REGISTRY/REPO); --channel TAG shows one channel");
      return print_remote_history(global, repo, o->channel, o->reg);
    }
    auto st = open_store();
    auto entries = st->history(o->name, o->channel);
    if (global.output == "json") {
      nlohmann::json arr = nlohmann::json::array();
      for (const auto& e : entries)
        arr.push_back(
            {{"seq", e.seq},
             {"time", e.time},
             {"who", e.who},
             {"action", e.action},
             {"name", e.name},
             {"channel", e.channel},
             {"from", e.from_ref},
             {"to", e.to_ref},
             {"reason", e.reason},
             {"detail", nlohmann::json::parse(e.detail, nullptr, false).is_object() ? nlohmann::json::parse(e.detail)
                                                                                    : nlohmann::json::object()},
             {"hash", e.hash}});
      std::cout << arr.dump(2) << "\n";
      return 0;
    }
    if (entries.empty()) {
      std::cout << "no history for '" << o->name << "'" << (o->channel.empty() ? "" : " channel " + o->channel) << "\n";
      return 1;
    }
    for (const auto& e : entries) {
      std::string what = e.action;
      if (!e.channel.empty()) what += " " + e.channel;
      std::string move = e.from_ref.empty() ? e.to_ref : e.from_ref + " -> " + e.to_ref;
      if (e.action == "label") {
        auto d = nlohmann::json::parse(e.detail, nullptr, false);
        if (d.is_object()) move += "  " + d.value("key", "") + "=" + d.value("new", "");
      } else if (e.action == "test") {
        auto d = nlohmann::json::parse(e.detail, nullptr, false);
        if (d.is_object()) move += "  suite " + d.value("suite", "") + " " + d.value("result", "");
      } else if (e.action == "policy") {
        auto d = nlohmann::json::parse(e.detail, nullptr, false);
        std::vector<std::string> suites;
        if (d.is_object() && d.contains("require_tests") && d["require_tests"].is_array())
          for (const auto& t : d["require_tests"])
            if (t.is_string()) suites.push_back(t.get<std::string>());
        move = suites.empty() ? "no policy" : "requires " + util::join(suites, ", ");
      }
      std::printf("%4lld  %s  %-20s  %-22s %s%s\n", static_cast<long long>(e.seq), e.time.c_str(), e.who.c_str(),
                  what.c_str(), move.c_str(), e.reason.empty() ? "" : ("  (" + e.reason + ")").c_str());
    }
    return 0;
  };
}

}  // namespace imgbake::cli
