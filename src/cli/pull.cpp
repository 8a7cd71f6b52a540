// imgbake pull: an image and its provenance from a registry into the store.
#include <iostream>

#include "imgbake/cancel.h"
#include "imgbake/oci_client.h"
#include "imgbake/publish.h"
#include "transfer_verbs.h"

namespace imgbake::cli {

Action setup_pull(CLI::App& sub, const GlobalOptions& global) {
  struct Opts {
    std::string src, name, version;
    bool allow_revoked = false;
    bool allow_untrusted = false;
    RegistryFlags reg;
  };
  auto o = std::make_shared<Opts>();
  sub.add_option("src", o->src, "REGISTRY/REPOSITORY:TAG or REGISTRY/REPOSITORY@DIGEST")->required();
  sub.add_option("--name", o->name, "The image's name in the store (default: its own, else the repository's)");
  sub.add_option("--version", o->version, "The version to record (default: the image's own)");
  sub.add_flag("--allow-revoked", o->allow_revoked,
               "Pull an image that has a trusted revocation record (it is revoked in the store too)");
  sub.add_flag("--allow-untrusted", o->allow_untrusted,
               "Import an image whose provenance is not signed by a trusted key (the audit log records it)");
  add_registry_flags(sub, o->reg);
  return [o, &global] {
    CooperativeInterrupts interrupts;  // transfers poll the token and remove their temp blobs
    auto st = open_store();
    registry::Reference src = registry::Reference::parse(o->src);
    Ui ui = make_ui(global, nullptr);
    auto client = make_registry_client(src.registry, o->reg, ui, true);
    auto keys = trusted_keys(*st);
    registry::RevocationPolicy policy{&keys, o->allow_revoked, o->allow_untrusted};
    auto rep = registry::pull_image(
        *st, *client, src, o->name, o->version, policy, [&](std::string_view l) { ui.message("", l); },
        global_cancel());
    return finish(global, "pull", rep.local_ref, rep);
  };
}

}  // namespace imgbake::cli
