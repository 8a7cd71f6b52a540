// What a build produces. The id is derived from the content (a sha256), never a
// constant like Packer's qemu "VM".
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "imgbake/oci.h"

namespace imgbake {

struct ArtifactFile {
  std::string path;
  uint64_t size = 0;
  std::string sha256;
  // The store's layer media type; empty: chosen from the file name (.qcow2, .raw, other).
  std::string media_type;
};

struct Artifact {
  std::string builder_type;  // "file", "qemu", or a post-processor's type
  std::string id;            // "sha256:…" of the content, or another stable content id
  std::vector<ArtifactFile> files;
  nlohmann::json metadata = nlohmann::json::object();
  // Set by image builders (rootfs): the container image the store commits.
  std::shared_ptr<const oci::Image> oci_image;

  // One line for people: "file: sha256:ab12… (1 file, 13 B)".
  std::string describe() const;
  // Removes the files (when no post-processor asked to keep the input artifact).
  void destroy() const;
};

// Stats and hashes `paths` into artifact files.
std::vector<ArtifactFile> describe_files(const std::vector<std::string>& paths);

}  // namespace imgbake
