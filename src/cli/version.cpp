#include <iostream>

#include "cli.h"
#include "imgbake/builder.h"
#include "imgbake/machine_readable.h"
#include "imgbake/post_processor.h"
#include "imgbake/provisioner.h"
#include "imgbake/util.h"
#include "imgbake/version.h"

namespace imgbake::cli {

Action setup_version(CLI::App& sub, const GlobalOptions& global) {
  auto machine_readable = std::make_shared<bool>(false);
  sub.add_flag("--machine-readable", *machine_readable, "Packer's CSV lines (version, version-prelease, ...)");
  return [&global, machine_readable] {
    auto builders = BuilderRegistry::instance().names();
    auto provisioners = ProvisionerRegistry::instance().names();
    auto pps = PostProcessorRegistry::instance().names();
    if (*machine_readable) {
      // The lines of `packer version -machine-readable`.
      std::cout << packer_line("", "version", {kVersion}) << packer_line("", "version-prelease", {""})
                << packer_line("", "version-commit", {""})
                << packer_line("", "ui", {"say", std::string("imgbake v") + kVersion});
      return 0;
    }
    if (global.output == "json") {
      nlohmann::json j = {{"version", kVersion},
                          {"template_format", "packer-json"},
                          {"builders", builders},
                          {"provisioners", provisioners},
                          {"post_processors", pps}};
      std::cout << j.dump() << "\n";
      return 0;
    }
    std::cout << "imgbake " << kVersion << "\n"
              << "template format: Packer JSON ({{packer_version}} reports " << kVersion << ")\n"
              << "builders: " << util::join(builders, ", ") << "\n"
              << "provisioners: " << util::join(provisioners, ", ") << "\n"
              << "post-processors: " << util::join(pps, ", ") << "\n";
    return 0;
  };
}

}  // namespace imgbake::cli
