#include <iostream>

#include "cli/store_verbs.h"
#include "imgbake/publish.h"

namespace imgbake::cli {

Action setup_promote(CLI::App& sub, const GlobalOptions&) {
  struct Opts {
    std::string ref, channel, reason;
    bool protect = false;
  };
  auto o = std::make_shared<Opts>();
  sub.add_option("ref", o->ref, "The image to promote (name:version, name@sha256:…)")->required();
  sub.add_option("--channel", o->channel, "The channel (environment), e.g. staging, production")->required();
  sub.add_option("--reason", o->reason, "Why (kept in the audit log)");
  sub.add_flag("--protect", o->protect, "Mark the channel protected: it only accepts images whose provenance verifies");
  return [o] {
    auto st = open_store();
    store::ImageRecord img = st->resolve(o->ref);
    // Only keys the store trusts count for protected channels (not one the caller brings),
    // and the promotion is pinned to the digest that was verified.
    Verification v = verify_image(*st, img, trusted_keys(*st));
    st->promote(img.name + "@" + img.manifest_digest, o->channel, o->reason, v.ok, o->protect);
    std::cout << img.name << ":" << o->channel << " -> " << img.ref() << " (" << img.manifest_digest << ")\n";
    if (!v.ok) std::cerr << "warning: provenance not verified: " << util::join(v.problems, "; ") << "\n";
    return 0;
  };
}

Action setup_rollback(CLI::App& sub, const GlobalOptions&) {
  struct Opts {
    std::string name, channel, reason;
  };
  auto o = std::make_shared<Opts>();
  sub.add_option("name", o->name, "The image name")->required();
  sub.add_option("--channel", o->channel, "The channel to point back at its previous image")->required();
  sub.add_option("--reason", o->reason, "Why (kept in the audit log)");
  return [o] {
    auto st = open_store();
    auto keys = trusted_keys(*st);
    store::ImageRecord r = st->rollback(o->name, o->channel, o->reason,
                                        [&](const store::ImageRecord& img) { return verify_image(*st, img, keys).ok; });
    std::cout << o->name << ":" << o->channel << " -> " << r.ref() << " (" << r.manifest_digest << ")\n";
    return 0;
  };
}

Action setup_history(CLI::App& sub, const GlobalOptions& global) {
  struct Opts {
    std::string name, channel;
  };
  auto o = std::make_shared<Opts>();
  sub.add_option("name", o->name, "The image name")->required();
  sub.add_option("--channel", o->channel, "Only this channel's moves");
  return [o, &global] {
    auto st = open_store();
    auto entries = st->history(o->name, o->channel);
    if (global.output == "json") {
      nlohmann::json arr = nlohmann::json::array();
      for (const auto& e : entries)
        arr.push_back({{"seq", e.seq},
                       {"time", e.time},
                       {"who", e.who},
                       {"action", e.action},
                       {"name", e.name},
                       {"channel", e.channel},
                       {"from", e.from_ref},
                       {"to", e.to_ref},
                       {"reason", e.reason},
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
      }
      std::printf("%4lld  %s  %-20s  %-22s %s%s\n", static_cast<long long>(e.seq), e.time.c_str(), e.who.c_str(),
                  what.c_str(), move.c_str(), e.reason.empty() ? "" : ("  (" + e.reason + ")").c_str());
    }
    return 0;
  };
}

Action setup_revoke(CLI::App& sub, const GlobalOptions&) {
  struct Opts {
    std::string ref, reason;
    bool descendants = false;
  };
  auto o = std::make_shared<Opts>();
  sub.add_option("ref", o->ref, "The image to revoke")->required();
  sub.add_option("--reason", o->reason, "Why (required; kept in the audit log)")->required();
  sub.add_flag("--descendants", o->descendants, "Also revoke every image built on it (its parent chain)");
  return [o] {
    auto st = open_store();
    auto revoked = st->revoke(o->ref, o->reason, o->descendants);
    if (revoked.empty()) std::cout << "already revoked: " << st->resolve(o->ref).ref() << "\n";
    for (const auto& r : revoked) std::cout << "revoked " << r << "\n";
    return 0;
  };
}

}  // namespace imgbake::cli
