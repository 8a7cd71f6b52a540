#include "imgbake/artifact.h"

#include <filesystem>

#include "imgbake/util.h"

namespace imgbake {

std::string Artifact::describe() const {
  uint64_t total = 0;
  for (const auto& f : files) total += f.size;
  std::string s = builder_type + ": " + id;
  if (!files.empty()) {
    s += " (" + std::to_string(files.size()) + (files.size() == 1 ? " file, " : " files, ") + std::to_string(total) +
         " bytes)";
  }
  return s;
}

void Artifact::destroy() const {
  for (const auto& f : files) {
    std::error_code ec;
    std::filesystem::remove(f.path, ec);
  }
}

std::vector<ArtifactFile> describe_files(const std::vector<std::string>& paths) {
  std::vector<ArtifactFile> out;
  for (const auto& p : paths) {
    ArtifactFile f;
    f.path = p;
    f.size = std::filesystem::file_size(p);
    f.sha256 = util::file_digest_hex(p, "sha256");
    out.push_back(std::move(f));
  }
  return out;
}

}  // namespace imgbake
