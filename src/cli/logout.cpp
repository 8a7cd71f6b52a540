// imgbake logout: forget the credentials `imgbake login` stored for a registry.
#include <iostream>

#include "cli.h"
#include "imgbake/error.h"
#include "imgbake/oci_client.h"

namespace imgbake::cli {

Action setup_logout(CLI::App& sub, const GlobalOptions&) {
  auto registry = std::make_shared<std::string>();
  sub.add_option("registry", *registry, "HOST[:PORT] of the registry")->required();
  return [registry] {
    if (!registry::remove_credentials(*registry)) {
      std::cerr << "imgbake: not logged in to " << *registry
                << " (imgbake holds no credentials for it; docker's config.json is left alone)\n";
      return static_cast<int>(kExitFailure);
    }
    std::cout << "Removed login credentials for " << *registry << "\n";
    return 0;
  };
}

}  // namespace imgbake::cli
