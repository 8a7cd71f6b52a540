// The OCI vocabulary every layer speaks: content descriptors and the media types of what
// imgbake stores and pushes (the store, the registry client and the builders use these).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace imgbake::oci {

inline constexpr const char* kManifestMediaType = "application/vnd.oci.image.manifest.v1+json";
inline constexpr const char* kConfigMediaType = "application/vnd.oci.image.config.v1+json";
inline constexpr const char* kImageArtifactType = "application/vnd.imgbake.image.v1";
inline constexpr const char* kFileLayerMediaType = "application/vnd.imgbake.file.v1";
inline constexpr const char* kDiskQcow2MediaType = "application/vnd.imgbake.disk.v1.qcow2";
inline constexpr const char* kDiskRawMediaType = "application/vnd.imgbake.disk.v1.raw";
inline constexpr const char* kBuildInfoMediaType = "application/vnd.imgbake.build-info.v1+json";
inline constexpr const char* kDsseMediaType = "application/vnd.dsse.envelope.v1+json";
inline constexpr const char* kProvenanceArtifactType = "application/vnd.in-toto+json";
inline constexpr const char* kEmptyMediaType = "application/vnd.oci.empty.v1+json";
inline constexpr const char* kIndexMediaType = "application/vnd.oci.image.index.v1+json";

// The name a layer of an image has among its provenance's subjects: the layer's
// org.opencontainers.image.title annotation, else "layer N" (its 1-based position). The
// statement, local verification and remote verification all name layers by this one rule.
inline std::string layer_subject_name(const std::map<std::string, std::string>& annotations, size_t index) {
  auto title = annotations.find("org.opencontainers.image.title");
  return title != annotations.end() ? title->second : "layer " + std::to_string(index + 1);
}
inline std::string layer_subject_name(const nlohmann::json& layer, size_t index) {
  if (layer.contains("annotations") && layer["annotations"].is_object()) {
    const auto& a = layer["annotations"];
    auto title = a.find("org.opencontainers.image.title");
    if (title != a.end() && title->is_string()) return title->get<std::string>();
  }
  return "layer " + std::to_string(index + 1);
}

struct Descriptor {
  std::string media_type;
  std::string digest;  // "sha256:…"
  uint64_t size = 0;
  std::map<std::string, std::string> annotations;

  nlohmann::ordered_json to_json() const {
    nlohmann::ordered_json j = {{"mediaType", media_type}, {"digest", digest}, {"size", size}};
    if (!annotations.empty()) j["annotations"] = annotations;
    return j;
  }
};

// A container image as an image builder describes it to the store (which writes its config and
// manifest): the layers, already in the store as blobs, and the OCI config's parts.
struct Image {
  struct Layer {
    Descriptor blob;  // a tar layer (media type …tar+gzip, …tar+zstd, …tar)
    std::string diff_id;
  };
  std::vector<Layer> layers;
  nlohmann::ordered_json config = nlohmann::ordered_json::object();  // Env, Entrypoint, Cmd, … (OCI "config")
  nlohmann::ordered_json history = nlohmann::ordered_json::array();
  std::string created;  // RFC 3339 (SOURCE_DATE_EPOCH when set)
};

}  // namespace imgbake::oci
