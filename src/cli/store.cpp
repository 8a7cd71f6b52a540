#include <iostream>

#include "imgbake/publish.h"
#include "store_verbs.h"

namespace imgbake::cli {

// `imgbake store check` and `imgbake store gc`.
Action setup_store(CLI::App& sub, const GlobalOptions& global) {
  auto what = std::make_shared<std::string>();
  sub.add_option("what", *what,
                 "check: verify the catalog, the audit chain and every blob; gc: remove unreferenced blobs")
      ->required()
      ->check(CLI::IsMember({"check", "gc"}));
  auto prune_cache = std::make_shared<bool>(false);
  sub.add_flag("--prune-cache", *prune_cache, "gc: forget the build cache first, so its layers can go too");
  return [what, prune_cache, &global] {
    auto st = open_store();
    if (*what == "gc") {
      store::GcReport r = st->gc(*prune_cache);
      if (*prune_cache) std::cout << "gc: forgot " << r.cache_forgotten << " build cache entries\n";
      std::cout << "gc: removed " << r.removed << " unreferenced blobs and " << r.temp_removed << " temporary files ("
                << r.bytes << " bytes), kept " << r.kept << " blobs\n";
      if (r.busy)
        std::cout << "gc: another imgbake process has the store open (a build, pull, push or export); " << r.left
                  << " unreferenced blobs and temporary files may be its work in progress and were left for a gc "
                     "that runs alone\n";
      for (const auto& w : r.warnings) std::cerr << "gc: warning: " << w << "\n";
      for (const auto& p : r.problems) std::cerr << "gc: PROBLEM: " << p << "\n";
      if (!r.problems.empty()) {
        std::cerr << "gc: removed no blob: the blobs only an unreadable manifest names cannot be told from "
                     "unreferenced ones (imgbake store check lists what is damaged)\n";
        return 1;
      }
      return 0;
    }
    auto keys = trusted_keys(*st);
    store::CheckReport r = st->check([&](const store::ImageRecord& img) {
      Verification v = verify_image(*st, img, keys);
      return v.ok ? std::string() : util::join(v.problems, "; ");
    });
    if (global.output == "json") {
      std::cout << nlohmann::json{{"ok", r.ok()},
                                  {"problems", r.problems},
                                  {"notes", r.notes},
                                  {"images", r.images},
                                  {"blobs_checked", r.blobs_checked},
                                  {"audit_entries", r.audit_entries},
                                  {"trusted_keys", r.trusted},
                                  {"witness", r.witness}}
                       .dump(2)
                << "\n";
      return r.ok() ? 0 : 1;
    }
    for (const auto& p : r.problems) std::cout << "PROBLEM: " << p << "\n";
    for (const auto& n : r.notes) std::cout << "note: " << n << "\n";
    for (const auto& k : r.trusted) std::cout << "trusted key: " << k << "\n";
    if (!r.witness.empty()) std::cout << "witness: this user last saw audit " << r.witness << "\n";
    std::cout << "store " << st->home().string() << ": " << r.images << " images, " << r.blobs_checked
              << " blobs checked, " << r.audit_entries
              << " audit entries: " << (r.ok() ? "OK" : std::to_string(r.problems.size()) + " problem(s)") << "\n";
    return r.ok() ? 0 : 1;
  };
}

}  // namespace imgbake::cli
