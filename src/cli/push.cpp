// imgbake push: an image of the store and its provenance to a registry.
#include <iostream>

#include "imgbake/cancel.h"
#include "imgbake/oci_client.h"
#include "imgbake/publish.h"
#include "transfer_verbs.h"

namespace imgbake::cli {

Action setup_push(CLI::App& sub, const GlobalOptions& global) {
  struct Opts {
    std::string ref, dest;
    std::vector<std::string> tags;
    bool force = false;
    RegistryFlags reg;
  };
  auto o = std::make_shared<Opts>();
  sub.add_option("ref", o->ref, "The image in the store (NAME, NAME:VERSION, NAME:CHANNEL, NAME@DIGEST)")->required();
  sub.add_option("dest", o->dest, "REGISTRY/REPOSITORY[:TAG] (default tag: the image's version)")->required();
  sub.add_option("--tag", o->tags, "Another tag to set; repeatable");
  sub.add_flag("--force", o->force, "Replace tags that point at another image (version tags are immutable otherwise)");
  add_registry_flags(sub, o->reg, true);
  return [o, &global] {
    CooperativeInterrupts interrupts;  // transfers poll the token and remove their temp blobs
    auto st = open_store();
    store::ImageRecord img = st->resolve(o->ref);
    registry::Reference dest = registry::Reference::parse(o->dest);
    if (!dest.digest.empty()) throw UsageError("push: the destination takes a tag, not a digest");
    Ui ui = make_ui(global, nullptr);
    auto client = make_registry_client(dest.registry, o->reg, ui, true);
    // The image's local promotions, rollbacks and revocations go along as signed records.
    std::optional<provenance::SigningKey> key;
    for (const auto& e : st->history(img.name))
      if ((e.action == "promote" || e.action == "rollback" || e.action == "revoke") && e.to_ref == img.ref()) {
        key = record_signing_key(o->reg);
        break;
      }
    auto rep = registry::push_image(
        *st, img, *client, dest, o->tags, o->force, key ? &*key : nullptr,
        [&](std::string_view l) { ui.message("", l); }, global_cancel());
    return finish(global, "push", dest.registry + "/" + dest.repository, rep);
  };
}

}  // namespace imgbake::cli
