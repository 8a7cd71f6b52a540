// imgbake rollback: point a channel back at its previous image
#include <iostream>

#include "imgbake/publish.h"
#include "remote_verbs.h"

namespace imgbake::cli {

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
    std::string from = st->resolve(o->name + ":" + o->channel).ref();
    store::ImageRecord r = st->rollback(o->name, o->channel, o->reason,
                                        [&](const store::ImageRecord& img) { return verify_image(*st, img, keys).ok; });
    // Which image, and why that one.
    std::cout << o->name << ":" << o->channel << " -> " << r.ref() << " (" << r.manifest_digest
              << "), the image the channel held before " << from << "\n";
    return 0;
  };
}

}  // namespace imgbake::cli
