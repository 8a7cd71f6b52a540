// imgbake copy: an image from one registry to another, keeping its digest.
#include <iostream>

#include "imgbake/cancel.h"
#include "imgbake/oci_client.h"
#include "imgbake/publish.h"
#include "transfer_verbs.h"

namespace imgbake::cli {

Action setup_copy(CLI::App& sub, const GlobalOptions& global) {
  struct Opts {
    std::string src, dest;
    bool allow_revoked = false;
    RegistryFlags reg;
  };
  auto o = std::make_shared<Opts>();
  sub.add_option("src", o->src, "REGISTRY/REPOSITORY:TAG or @DIGEST")->required();
  sub.add_option("dest", o->dest, "REGISTRY/REPOSITORY[:TAG]")->required();
  sub.add_flag("--allow-revoked", o->allow_revoked, "Copy an image that has a trusted revocation record");
  add_registry_flags(sub, o->reg);
  return [o, &global] {
    CooperativeInterrupts interrupts;  // transfers poll the token and remove their temp blobs
    registry::Reference src = registry::Reference::parse(o->src);
    registry::Reference dest = registry::Reference::parse(o->dest);
    Ui ui = make_ui(global, nullptr);
    auto from = make_registry_client(src.registry, o->reg, ui, true);
    auto to = make_registry_client(dest.registry, o->reg, ui, true);
    // The trusted keys are the store's (its trusted/ directory and the default key).
    auto keys = trusted_keys(*open_store());
    registry::RevocationPolicy policy{&keys, o->allow_revoked, false};
    const char* tmpdir = std::getenv("TMPDIR");
    auto rep = registry::copy_image(
        *from, src, *to, dest, tmpdir && *tmpdir ? tmpdir : "/tmp", policy,
        [&](std::string_view l) { ui.message("", l); }, global_cancel());
    return finish(global, "copy", dest.registry + "/" + dest.repository, rep);
  };
}

}  // namespace imgbake::cli
