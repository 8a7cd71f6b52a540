// Reading OCI image manifests (manifest.h).
#include "manifest.h"

#include "imgbake/oci_json.h"

namespace imgbake::store::detail {

std::string string_field(const nlohmann::json& j, const std::string& key) {
  return j.is_object() && j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : "";
}

Descriptor descriptor_from_json(const nlohmann::json& j, const std::string& where) {
  if (!j.is_object() || !j.contains("digest") || !j["digest"].is_string() || !j.contains("size") ||
      !j["size"].is_number_unsigned())
    throw StoreError(where + " is not a descriptor with a digest and a size");
  Descriptor d;
  d.media_type = string_field(j, "mediaType");
  d.digest = j["digest"].get<std::string>();
  d.size = j["size"].get<uint64_t>();
  if (j.contains("annotations") && j["annotations"].is_object())
    for (const auto& [k, v] : j["annotations"].items())
      if (v.is_string()) d.annotations[k] = v.get<std::string>();
  return d;
}

ParsedManifest parse_manifest(const std::string& bytes, const std::string& what) {
  ParsedManifest p;
  try {
    p.json = nlohmann::json::parse(bytes);
  } catch (const std::exception& e) {
    throw StoreError(what + " is not JSON: " + oci::json_error_text(e));
  }
  if (!p.json.is_object() || !p.json.contains("schemaVersion") || p.json["schemaVersion"] != 2)
    throw StoreError(what + " is not an image manifest (schemaVersion 2)");
  std::string media_type = string_field(p.json, "mediaType");
  if (!media_type.empty() && media_type != oci::kManifestMediaType)
    throw StoreError(what + " has media type " + media_type + "; only OCI image manifests (" + oci::kManifestMediaType +
                     ") can be imported (pick one platform's manifest of an index)");
  if (!p.json.contains("config") || !p.json.contains("layers") || !p.json["layers"].is_array())
    throw StoreError(what + " has no config or no layers list");
  p.config = descriptor_from_json(p.json["config"], what + ": config");
  for (size_t i = 0; i < p.json["layers"].size(); ++i)
    p.layers.push_back(descriptor_from_json(p.json["layers"][i], what + ": layer " + std::to_string(i + 1)));
  return p;
}

}  // namespace imgbake::store::detail
