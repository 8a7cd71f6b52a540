#include <iostream>

#include "cli/store_verbs.h"
#include "imgbake/publish.h"

namespace imgbake::cli {

Action setup_verify(CLI::App& sub, const GlobalOptions& global) {
  struct Opts {
    std::string ref, key;
  };
  auto o = std::make_shared<Opts>();
  sub.add_option("ref", o->ref, "The image")->required();
  sub.add_option("--key", o->key, "Public key (PEM) to verify with (default: the trusted keys)");
  return [o, &global] {
    auto st = open_store();
    store::ImageRecord img = st->resolve(o->ref);
    Verification v = verify_image(*st, img, trusted_keys(*st, o->key));
    if (img.revoked) {
      v.ok = false;
      v.problems.push_back("the image is revoked: " + img.revoked_reason);
    }
    if (!v.statement.is_object()) v.statement = nlohmann::json::object();
    const auto& pred = v.statement.value("predicate", nlohmann::json::object());
    auto def = pred.value("buildDefinition", nlohmann::json::object());
    auto run = pred.value("runDetails", nlohmann::json::object());
    std::string builder = run.value("builder", nlohmann::json::object()).value("id", "");
    std::string tdigest = def.value("externalParameters", nlohmann::json::object())
                              .value("template", nlohmann::json::object())
                              .value("digest", nlohmann::json::object())
                              .value("sha256", "");
    std::string commit, parent;
    for (const auto& d : def.value("resolvedDependencies", nlohmann::json::array())) {
      if (d.contains("digest") && d["digest"].contains("gitCommit")) commit = d["digest"]["gitCommit"];
      if (d.value("name", "") == "parent")
        parent = d.contains("uri") ? d["uri"].get<std::string>() : "sha256:" + d["digest"].value("sha256", "");
    }
    if (global.output == "json") {
      std::cout << nlohmann::json{{"ref", img.ref()},     {"verified", v.ok},   {"problems", v.problems},
                                  {"keyid", v.keyid},     {"builder", builder}, {"template_sha256", tdigest},
                                  {"git_commit", commit}, {"parent", parent}}
                       .dump(2)
                << "\n";
      return v.ok ? 0 : 1;
    }
    std::cout << (v.ok ? "VERIFIED " : "NOT VERIFIED ") << img.ref() << " (" << img.manifest_digest << ")\n";
    for (const auto& p : v.problems) std::cout << "  problem: " << p << "\n";
    if (!v.statement.empty()) {
      std::cout << "  signed by:  " << (v.keyid.empty() ? "-" : v.keyid) << "\n"
                << "  builder:    " << builder << "\n"
                << "  template:   sha256:" << tdigest << "\n"
                << "  git commit: " << (commit.empty() ? "-" : commit) << "\n"
                << "  parent:     " << (parent.empty() ? "-" : parent) << "\n";
    }
    return v.ok ? 0 : 1;
  };
}

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
                << ".pub in $IMGBAKE_HOME/trusted/ to go on verifying images it signed)\n";
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
