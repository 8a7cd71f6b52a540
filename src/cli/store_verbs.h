// Helpers shared by the store verbs (images, show, label, promote, ...).
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include "cli.h"
#include "imgbake/store.h"
#include "imgbake/util.h"

namespace imgbake::cli {

std::unique_ptr<store::Store> open_store();
nlohmann::json image_json(const store::ImageRecord& r);
// "2026-11-22T03:04:05Z" stays; the rest of a line printed for people.
std::string image_line(const store::ImageRecord& r);
// Whether the image (its manifest) is a container image (tar layers) rather than files or a disk.
bool is_container_image(const nlohmann::json& manifest);
// Applies the layers of a container image (its manifest) to `tree` (made if missing), checking
// each layer's diff_id against the image config (export, test).
void unpack_rootfs(store::Store& st, const nlohmann::json& manifest, const std::filesystem::path& tree);

}  // namespace imgbake::cli
