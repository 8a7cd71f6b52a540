#include <iostream>

#include "imgbake/oci_client.h"
#include "imgbake/publish.h"
#include "imgbake/records.h"
#include "store_verbs.h"

namespace imgbake::cli {

namespace {

// What verify prints, for an image of the store or of a registry.
int report_verification(const GlobalOptions& global, const std::string& ref, const std::string& digest, bool ok,
                        const std::vector<std::string>& problems, const std::string& keyid, nlohmann::json statement,
                        const nlohmann::json& tests = nlohmann::json::array()) {
  if (!statement.is_object()) statement = nlohmann::json::object();
  const auto& pred = statement.value("predicate", nlohmann::json::object());
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
    std::cout << nlohmann::json{{"ref", ref},
                                {"digest", digest},
                                {"verified", ok},
                                {"problems", problems},
                                {"keyid", keyid},
                                {"builder", builder},
                                {"template_sha256", tdigest},
                                {"git_commit", commit},
                                {"parent", parent},
                                {"tests", tests}}
                     .dump(2)
              << "\n";
    return ok ? 0 : 1;
  }
  std::cout << (ok ? "VERIFIED " : "NOT VERIFIED ") << ref << " (" << digest << ")\n";
  for (const auto& p : problems) std::cout << "  problem: " << p << "\n";
  if (!statement.empty()) {
    std::cout << "  signed by:  " << (keyid.empty() ? "-" : keyid) << "\n"
              << "  builder:    " << builder << "\n"
              << "  template:   sha256:" << tdigest << "\n"
              << "  git commit: " << (commit.empty() ? "-" : commit) << "\n"
              << "  parent:     " << (parent.empty() ? "-" : parent) << "\n";
  }
  for (const auto& t : tests)
    std::cout << "  test:       " << t.value("suite", "") << " " << t.value("result", "") << " on "
              << t.value("time", "") << (t.value("verified", false) ? "" : " (NOT VERIFIED)") << "\n";
  return ok ? 0 : 1;
}

}  // namespace

Action setup_verify(CLI::App& sub, const GlobalOptions& global) {
  struct Opts {
    std::string ref, key;
    RegistryFlags reg;
  };
  auto o = std::make_shared<Opts>();
  sub.add_option("ref", o->ref, "The image (of the store, or REGISTRY/REPO[:TAG|@DIGEST])")->required();
  sub.add_option("--key", o->key, "Public key (PEM) to verify with (default: the trusted keys)");
  add_registry_flags(sub, o->reg);
  return [o, &global] {
    auto st = open_store();
    auto keys = trusted_keys(*st, o->key);
    if (registry::names_registry(o->ref)) {
      registry::Reference ref = registry::Reference::parse(o->ref);
      if (ref.tag.empty() && ref.digest.empty()) ref.tag = "latest";
      Ui ui = make_ui(global, nullptr);
      auto client = make_registry_client(ref.registry, o->reg, ui);
      auto v = registry::verify_remote(*client, ref, keys, global_cancel());
      if (auto revoked = registry::find_revocation(
              registry::image_records(*client, ref.repository, v.manifest_digest, keys, global_cancel()))) {
        v.ok = false;
        v.problems.push_back("the image is revoked: " + revoked->record.reason + " (record " + revoked->digest + ")");
      }
      return report_verification(global, ref.str(), v.manifest_digest, v.ok, v.problems, v.keyid, v.statement);
    }
    store::ImageRecord img = st->resolve(o->ref);
    Verification v = verify_image(*st, img, keys);
    if (img.revoked) {
      v.ok = false;
      v.problems.push_back("the image is revoked: " + img.revoked_reason);
    }
    // The catalog's word for it is not enough: what the signed audit log says about the image.
    for (auto& p : st->audit_problems(img, keys)) {
      v.ok = false;
      v.problems.push_back(std::move(p));
    }
    // Its test results: evidence that does not verify makes the image fail verification.
    nlohmann::json tests = nlohmann::json::array();
    for (const store::TestRun& t : st->test_runs(img)) {
      std::string p = st->test_run_problem(img, t, keys);
      tests.push_back({{"suite", t.suite},
                       {"result", t.passed ? "PASSED" : "FAILED"},
                       {"time", t.time},
                       {"envelope", t.envelope_digest},
                       {"verified", p.empty()}});
      if (!p.empty()) {
        v.ok = false;
        v.problems.push_back(std::move(p));
      }
    }
    return report_verification(global, img.ref(), img.manifest_digest, v.ok, v.problems, v.keyid, v.statement, tests);
  };
}

}  // namespace imgbake::cli
