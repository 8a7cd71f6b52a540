#include "imgbake/provisioner.h"

#include "imgbake/util.h"

namespace imgbake {

nlohmann::json host_file_digests(const std::vector<std::string>& paths) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& path : paths) {
    std::string digest;
    try {
      digest = util::file_digest_hex(path);
    } catch (const std::exception&) {
      digest = "missing";
    }
    out.push_back({{"path", path}, {"sha256", digest}});
  }
  return out;
}

}  // namespace imgbake
