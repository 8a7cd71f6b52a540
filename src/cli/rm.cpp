// imgbake rm: delete a version from the store (refused while a channel points at it).
#include <iostream>

#include "imgbake/store.h"
#include "store_verbs.h"

namespace imgbake::cli {

Action setup_rm(CLI::App& sub, const GlobalOptions& /*global*/) {
  struct Opts {
    std::string ref, reason;
  };
  auto o = std::make_shared<Opts>();
  sub.add_option("ref", o->ref, "The image: NAME:VERSION or NAME@sha256:…")->required();
  sub.add_option("--reason", o->reason, "Why (kept in the audit log)");
  return [o] {
    auto st = open_store();
    store::ImageRecord img = st->remove(o->ref, o->reason);
    std::cout << "removed " << img.ref() << " (" << img.manifest_digest
              << "); its blobs stay until `imgbake store gc`\n";
    return 0;
  };
}

}  // namespace imgbake::cli
