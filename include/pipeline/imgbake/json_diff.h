// The differences between two cache key preimages, for --explain-cache (the rootfs and qemu
// builders' step caches).
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace imgbake {

// Appends "path: old -> new" lines (at most 8 in all; long values cut at 80 characters).
void json_diff(const nlohmann::json& a, const nlohmann::json& b, const std::string& path,
               std::vector<std::string>& out);

}  // namespace imgbake
