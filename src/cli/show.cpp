#include <iostream>

#include "imgbake/publish.h"
#include "store_verbs.h"

namespace imgbake::cli {

Action setup_show(CLI::App& sub, const GlobalOptions& global) {
  auto ref = std::make_shared<std::string>();
  sub.add_option("ref", *ref, "name, name:version, name:channel or name@sha256:…")->required();
  return [ref, &global] {
    auto st = open_store();
    store::ImageRecord r = st->resolve(*ref);
    nlohmann::json m = st->manifest(r);
    Verification v = verify_image(*st, r, trusted_keys(*st));
    if (global.output == "json") {
      nlohmann::json j = image_json(r);
      j["manifest"] = m;
      j["provenance_verified"] = v.ok;
      j["provenance_problems"] = v.problems;
      j["tests"] = test_status_json(newest_test_runs(*st, r));
      std::cout << j.dump(2) << "\n";
      return 0;
    }
    std::cout << "image:      " << r.ref() << "\n"
              << "digest:     " << r.manifest_digest << "\n"
              << "created:    " << r.created << "\n"
              << "builder:    " << r.builder_type << "\n"
              << "template:   " << r.template_digest << "\n"
              << "git commit: " << (r.git_commit.empty() ? "-" : r.git_commit) << "\n"
              << "parent:     " << (r.parent.empty() ? "-" : r.parent) << "\n"
              << "channels:   " << (r.channels.empty() ? "-" : util::join(r.channels, ", ")) << "\n";
    if (r.revoked) std::cout << "REVOKED:    " << r.revoked_reason << "\n";
    std::cout << "labels:\n";
    for (const auto& [k, val] : r.labels) std::cout << "  " << k << "=" << val << "\n";
    std::cout << "files:\n";
    for (const auto& l : m["layers"]) {
      std::string title = l.contains("annotations") ? l["annotations"].value("org.opencontainers.image.title", "") : "";
      std::cout << "  " << title << "  " << l["digest"].get<std::string>() << "  " << l["size"].get<uint64_t>()
                << " bytes  " << l["mediaType"].get<std::string>() << "\n";
    }
    const auto runs = newest_test_runs(*st, r);
    std::cout << "tests:" << (runs.empty() ? "      - (never tested: imgbake test " + r.ref() + ")" : "") << "\n";
    for (const auto& run : runs)
      std::cout << "  " << run.suite << ": " << (run.passed ? "passed" : "FAILED") << " on " << run.time
                << (run.failed.empty() ? "" : " (failed: " + util::join(run.failed, ", ") + ")") << "  "
                << run.envelope_digest << "\n";
    std::cout << "provenance: " << (r.provenance_digest.empty() ? "-" : r.provenance_digest) << " ("
              << (v.ok ? "signature verifies, key " + v.keyid : "NOT verified: " + util::join(v.problems, "; "))
              << ")\n";
    return 0;
  };
}

}  // namespace imgbake::cli
