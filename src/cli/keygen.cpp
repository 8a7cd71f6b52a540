// imgbake keygen: make an Ed25519 signing key.
#include <filesystem>
#include <iostream>

#include "imgbake/publish.h"
#include "store_verbs.h"

namespace imgbake::cli {

Action setup_keygen(CLI::App& sub, const GlobalOptions&) {
  struct Opts {
    std::string out;
    bool force = false;
  };
  auto o = std::make_shared<Opts>();
  sub.add_option("-o,--output-key", o->out, "Where to write the private key (default: the per-user default key)");
  sub.add_flag("--force", o->force, "Replace an existing key");
  return [o] {
    std::filesystem::path p = o->out.empty() ? default_signing_key_path() : std::filesystem::path(o->out);
    if (std::filesystem::exists(p) && !o->force) {
      std::cerr << "imgbake: " << p.string() << " exists; --force replaces it and its .pub (keep a copy of the "
                << ".pub in " << (config_home() / "trusted").string()
                << "/ to go on verifying images and audit entries it signed)\n";
      return 1;
    }
    if (p.has_parent_path()) std::filesystem::create_directories(p.parent_path());
    auto key = provenance::SigningKey::generate();
    key.save(p.string());
    std::cout << "private key: " << p.string() << " (0600)\npublic key:  " << p.string()
              << ".pub\nkeyid:       " << key.keyid() << "\n";
    return 0;
  };
}

}  // namespace imgbake::cli
