// imgbake revoke: revoke an image of the store or of a registry
#include <iostream>

#include "imgbake/store.h"
#include "remote_verbs.h"

namespace imgbake::cli {

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
    store::RevokeReport rep = st->revoke(o->ref, o->reason, o->descendants);
    if (rep.revoked.empty()) std::cout << "already revoked: " << st->resolve(o->ref).ref() << "\n";
    for (const auto& r : rep.revoked) std::cout << "revoked " << r << "\n";
    // Channels that now point at a revoked image: say so now, not at the next `store check`.
    for (const auto& r : rep.revoked) {
      store::ImageRecord img = st->resolve(r);
      for (const auto& c : st->channels(img.name)) {
        if (img.name + ":" + c.version != r) continue;
        std::cerr << "warning: channel '" << c.channel << "' of " << img.name << " points at " << r
                  << ", which is now revoked; move it with `imgbake rollback " << img.name << " --channel " << c.channel
                  << "` (the image it held before) or `imgbake promote " << img.name << ":VERSION --channel "
                  << c.channel << "`\n";
      }
    }
    // What was found is revoked; what could not be looked at is named, and the status says the
    // list may be incomplete.
    for (const auto& p : rep.problems) std::cerr << "warning: " << p << "\n";
    if (!rep.problems.empty()) {
      std::cerr << "warning: descendants of the images above may not be revoked (imgbake store check; revoke them "
                   "by name)\n";
      return 1;
    }
    return 0;
  };
}

}  // namespace imgbake::cli
