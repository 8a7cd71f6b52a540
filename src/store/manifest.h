// Private to the store module: reading the OCI image manifests the store holds or imports (their
// config and layer descriptors). import.cpp and referenced.cpp share these.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "imgbake/store.h"

namespace imgbake::store::detail {

// j[key] when j is an object and it is a string, else "".
std::string string_field(const nlohmann::json& j, const std::string& key);

// A descriptor (digest, size, media type, string annotations); throws StoreError naming `where`.
Descriptor descriptor_from_json(const nlohmann::json& j, const std::string& where);

// An OCI image manifest as pulled: its config and layers.
struct ParsedManifest {
  nlohmann::json json;
  Descriptor config;
  std::vector<Descriptor> layers;
};

// Parses an OCI image manifest; throws StoreError starting with `what` when it is not one.
ParsedManifest parse_manifest(const std::string& bytes, const std::string& what);

}  // namespace imgbake::store::detail
