#include <iostream>

#include "store_verbs.h"

namespace imgbake::cli {

Action setup_images(CLI::App& sub, const GlobalOptions& global) {
  auto name = std::make_shared<std::string>();
  sub.add_option("name", *name, "Only the versions of this image");
  return [name, &global] {
    auto st = open_store();
    auto list = st->images(*name);
    if (global.output == "json") {
      nlohmann::json arr = nlohmann::json::array();
      for (const auto& r : list) {
        nlohmann::json j = image_json(r);
        j["tests"] = test_status_json(newest_test_runs(*st, r));
        arr.push_back(std::move(j));
      }
      std::cout << arr.dump(2) << "\n";
      return 0;
    }
    if (list.empty()) {
      std::cout << (name->empty() ? "the store " + st->home().string() + " holds no images\n"
                                  : "no image named '" + *name + "'\n");
      return name->empty() ? 0 : 1;
    }
    std::printf("%-24s  %-19s  %-20s  %s\n", "IMAGE", "DIGEST", "CREATED", "CHANNELS / STATUS");
    for (const auto& r : list) {
      std::string status;
      for (const auto& c : r.channels) status += (status.empty() ? "" : ", ") + c;
      if (r.revoked) status += std::string(status.empty() ? "" : "  ") + "REVOKED: " + r.revoked_reason;
      if (const std::string tests = test_status_text(newest_test_runs(*st, r)); !tests.empty())
        status += std::string(status.empty() ? "" : "  ") + "tests " + tests;
      std::printf("%-24s  %-19s  %-20s  %s\n", r.ref().c_str(), r.manifest_digest.substr(0, 19).c_str(),
                  r.created.c_str(), status.c_str());
    }
    return 0;
  };
}

}  // namespace imgbake::cli
