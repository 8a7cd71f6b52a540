#include <algorithm>
#include <cstdio>
#include <iostream>

#include "imgbake/oci_client.h"
#include "imgbake/publish.h"
#include "imgbake/records.h"
#include "store_verbs.h"

namespace imgbake::cli {
namespace {

// "sha256:0123456789ab" for a line read by people.
std::string short_digest(const std::string& d) { return d.substr(0, std::min<size_t>(d.size(), 19)); }

void print_move(const registry::ChannelMove& m) {
  std::cout << m.repository << ":" << m.channel << " -> " << m.to_digest
            << (m.from_digest.empty() ? "" : " (was " + m.from_digest + ")") << "; record " << m.record_digest << "\n";
}

registry::RecordAuthor author_with(const provenance::SigningKey& key) {
  registry::RecordAuthor a;
  a.key = &key;
  a.who = util::current_user() + "@" + util::hostname();
  return a;
}

// What a verb on a registry repository needs: the keys the local store trusts, and a client.
struct Remote {
  Remote(const GlobalOptions& global, const std::string& host, const RegistryFlags& flags)
      : keys(trusted_keys(*open_store())),
        ui(make_ui(global, nullptr)),
        client(make_registry_client(host, flags, ui)) {}
  Remote(const Remote&) = delete;
  Remote& operator=(const Remote&) = delete;
  std::vector<provenance::VerifyingKey> keys;
  Ui ui;  // the client reports through it
  std::unique_ptr<registry::Client> client;
};

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

Action setup_promote(CLI::App& sub, const GlobalOptions& global) {
  struct Opts {
    std::string ref, channel, reason;
    bool protect = false;
    RegistryFlags reg;
  };
  auto o = std::make_shared<Opts>();
  sub.add_option("ref", o->ref,
                 "The image to promote (name:version, name@sha256:…, or REGISTRY/REPO:VERSION, REGISTRY/REPO@DIGEST)")
      ->required();
  sub.add_option("--channel", o->channel, "The channel (environment), e.g. staging, production")->required();
  sub.add_option("--reason", o->reason, "Why (kept in the audit log)");
  sub.add_flag("--protect", o->protect, "Mark the channel protected: it only accepts images whose provenance verifies");
  add_registry_flags(sub, o->reg, true);
  return [o, &global] {
    if (registry::names_registry(o->ref)) {
      if (o->protect) throw UsageError("promote: --protect is for channels of the local store, not of a registry");
      registry::Reference ref = registry::Reference::parse(o->ref);
      Remote r(global, ref.registry, o->reg);
      auto v = registry::verify_remote(*r.client, ref, r.keys, global_cancel());
      provenance::SigningKey key = record_signing_key(o->reg);
      auto move =
          registry::promote_remote(*r.client, ref, o->channel, o->reason, author_with(key), r.keys, global_cancel());
      print_move(move);
      if (!v.ok) std::cerr << "warning: provenance not verified: " << util::join(v.problems, "; ") << "\n";
      return 0;
    }
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

Action setup_rollback(CLI::App& sub, const GlobalOptions& global) {
  struct Opts {
    std::string name, channel, reason;
    RegistryFlags reg;
  };
  auto o = std::make_shared<Opts>();
  sub.add_option("name", o->name, "The image name (or REGISTRY/REPO)")->required();
  sub.add_option("--channel", o->channel, "The channel to point back at its previous image")->required();
  sub.add_option("--reason", o->reason, "Why (kept in the audit log)");
  add_registry_flags(sub, o->reg, true);
  return [o, &global] {
    if (registry::names_registry(o->name)) {
      registry::Reference repo = registry::Reference::parse(o->name);
      if (!repo.tag.empty() || !repo.digest.empty())
        throw UsageError("rollback: name the repository (REGISTRY/REPO) and the tag with --channel");
      Remote r(global, repo.registry, o->reg);
      provenance::SigningKey key = record_signing_key(o->reg);
      print_move(
          registry::rollback_remote(*r.client, repo, o->channel, o->reason, author_with(key), r.keys, global_cancel()));
      return 0;
    }
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

Action setup_revoke(CLI::App& sub, const GlobalOptions& global) {
  struct Opts {
    std::string ref, reason;
    bool descendants = false;
    RegistryFlags reg;
  };
  auto o = std::make_shared<Opts>();
  sub.add_option("ref", o->ref, "The image to revoke (or REGISTRY/REPO@DIGEST, REGISTRY/REPO:TAG)")->required();
  sub.add_option("--reason", o->reason, "Why (required; kept in the audit log)")->required();
  sub.add_flag("--descendants", o->descendants, "Also revoke every image built on it (its parent chain)");
  add_registry_flags(sub, o->reg, true);
  return [o, &global] {
    if (registry::names_registry(o->ref)) {
      if (o->descendants) throw UsageError("revoke: --descendants is for images of the local store");
      registry::Reference ref = registry::Reference::parse(o->ref);
      Remote r(global, ref.registry, o->reg);
      provenance::SigningKey key = record_signing_key(o->reg);
      auto m = registry::revoke_remote(*r.client, ref, o->reason, author_with(key), r.keys, global_cancel());
      std::cout << (m.already ? "already revoked: " : "revoked ") << m.repository << "@" << m.to_digest << "; record "
                << m.record_digest << "\n";
      return 0;
    }
    auto st = open_store();
    auto revoked = st->revoke(o->ref, o->reason, o->descendants);
    if (revoked.empty()) std::cout << "already revoked: " << st->resolve(o->ref).ref() << "\n";
    for (const auto& r : revoked) std::cout << "revoked " << r << "\n";
    return 0;
  };
}

}  // namespace imgbake::cli
