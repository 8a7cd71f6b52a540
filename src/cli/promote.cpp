// imgbake promote: point a channel of the store or a registry at an image
#include <iostream>

#include "imgbake/publish.h"
#include "remote_verbs.h"

namespace imgbake::cli {

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
    // Only keys the store trusts count for protected channels (not one the caller brings). The
    // promotion names the version that was verified (a version is never given to another image;
    // NAME@DIGEST would pick the first of two versions with the same content).
    const auto keys = trusted_keys(*st);
    Verification v = verify_image(*st, img, keys);
    st->promote(img.ref(), o->channel, o->reason, v.ok, o->protect, &keys);
    std::cout << img.name << ":" << o->channel << " -> " << img.ref() << " (" << img.manifest_digest << ")\n";
    if (!v.ok) std::cerr << "warning: provenance not verified: " << util::join(v.problems, "; ") << "\n";
    return 0;
  };
}

}  // namespace imgbake::cli
