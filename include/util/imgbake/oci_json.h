// Reading OCI JSON documents that come from elsewhere (an OCI layout, a registry, a store's
// blobs): an error names the document and the field ("…/index.json: manifests[0]: 'digest' is a
// number, not a string"), never the JSON library's own text ("[json.exception.type_error.302]").
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace imgbake::oci {

// Parses `bytes`; throws BuildError "WHERE is not JSON: syntax error at byte N (…)".
nlohmann::json parse_json(std::string_view bytes, const std::string& where);

// The member `key` of the object `j` (`where` names `j`), of the type asked for; throws
// BuildError "WHERE: 'key' is missing", "WHERE: 'key' is a number, not a string", or "WHERE is
// a string, not an object".
const nlohmann::json& object_at(const nlohmann::json& j, const std::string& key, const std::string& where);
const nlohmann::json& array_at(const nlohmann::json& j, const std::string& key, const std::string& where);
std::string string_at(const nlohmann::json& j, const std::string& key, const std::string& where);
uint64_t size_at(const nlohmann::json& j, const std::string& key, const std::string& where);

// "a string", "an object", "a number", … (for messages).
std::string json_kind(const nlohmann::json& j);
// A JSON library error without its "[json.exception.…]" prefix.
std::string json_error_text(const std::exception& e);

}  // namespace imgbake::oci
