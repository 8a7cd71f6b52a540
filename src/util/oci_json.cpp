// Reading OCI JSON from elsewhere with errors that name the document and the field.
#include "imgbake/oci_json.h"

#include "imgbake/error.h"

namespace imgbake::oci {

std::string json_kind(const nlohmann::json& j) {
  switch (j.type()) {
    case nlohmann::json::value_t::null: return "null";
    case nlohmann::json::value_t::object: return "an object";
    case nlohmann::json::value_t::array: return "a list";
    case nlohmann::json::value_t::string: return "a string";
    case nlohmann::json::value_t::boolean: return "a boolean";
    case nlohmann::json::value_t::number_integer: return j.get<int64_t>() < 0 ? "a negative number" : "a number";
    case nlohmann::json::value_t::number_float: return "a fractional number";
    default: return "a number";
  }
}

std::string json_error_text(const std::exception& e) {
  std::string text = e.what();
  if (text.starts_with("[json.exception.")) {
    size_t end = text.find("] ");
    if (end != std::string::npos) text = text.substr(end + 2);
  }
  return text;
}

nlohmann::json parse_json(std::string_view bytes, const std::string& where) {
  try {
    return nlohmann::json::parse(bytes);
  } catch (const nlohmann::json::parse_error& e) {
    throw BuildError(where + " is not JSON: " + json_error_text(e));
  }
}

namespace {

const nlohmann::json& member(const nlohmann::json& j, const std::string& key, const std::string& where,
                             bool (nlohmann::json::*is)() const noexcept, const char* want) {
  if (!j.is_object()) throw BuildError(where + " is " + json_kind(j) + ", not an object");
  auto it = j.find(key);
  if (it == j.end()) throw BuildError(where + ": '" + key + "' is missing");
  if (!((*it).*is)()) throw BuildError(where + ": '" + key + "' is " + json_kind(*it) + ", not " + want);
  return *it;
}

}  // namespace

const nlohmann::json& object_at(const nlohmann::json& j, const std::string& key, const std::string& where) {
  return member(j, key, where, &nlohmann::json::is_object, "an object");
}
const nlohmann::json& array_at(const nlohmann::json& j, const std::string& key, const std::string& where) {
  return member(j, key, where, &nlohmann::json::is_array, "a list");
}
std::string string_at(const nlohmann::json& j, const std::string& key, const std::string& where) {
  return member(j, key, where, &nlohmann::json::is_string, "a string").get<std::string>();
}
uint64_t size_at(const nlohmann::json& j, const std::string& key, const std::string& where) {
  return member(j, key, where, &nlohmann::json::is_number_unsigned, "a size (a whole number of bytes)").get<uint64_t>();
}

}  // namespace imgbake::oci
