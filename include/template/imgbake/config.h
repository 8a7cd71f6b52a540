// Typed, position-aware access to one component's options. Every read marks the
// key as known; finish() reports the keys nobody read as unknown, with "did you
// mean". Errors are collected, not thrown, so a user sees them all at once.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "imgbake/error.h"
#include "imgbake/json.h"

namespace imgbake {

class ConfigReader {
 public:
  // `label` prefixes messages, e.g. "builder 'hello' (file)".
  ConfigReader(const json::Value& object, std::string file, std::string label, Diagnostics& diags);

  std::string string(const std::string& key, const std::string& def = "");
  std::optional<std::string> optional_string(const std::string& key);
  bool boolean(const std::string& key, bool def);
  std::optional<bool> optional_boolean(const std::string& key);
  int64_t integer(const std::string& key, int64_t def);
  // A list of strings; a single string is accepted as a one-element list.
  std::vector<std::string> strings(const std::string& key);
  std::vector<int64_t> integers(const std::string& key, std::vector<int64_t> def);
  std::optional<std::chrono::milliseconds> duration(const std::string& key);
  std::map<std::string, std::string> string_map(const std::string& key);
  // The raw value (marks the key known); nullptr when absent.
  const json::Value* raw(const std::string& key);
  bool has(const std::string& key) const;

  // Declares keys that are accepted and ignored (options imgbake does not act on).
  void accept(std::initializer_list<const char*> keys);

  void error(const std::string& key, const std::string& message);  // at the key's value
  void error(const std::string& message);                          // at the object
  void warn(const std::string& key, const std::string& message);
  void require(const std::string& key);  // error if absent or empty

  // Reports every key that no reader asked for. Call once, after reading everything.
  void finish();

  const std::string& file() const { return file_; }
  const std::string& label() const { return label_; }
  json::Pos pos() const { return obj_.pos; }
  json::Pos pos_of(const std::string& key) const;
  Diagnostics& diagnostics() { return diags_; }

 private:
  const json::Value& obj_;
  std::string file_;
  std::string label_;
  Diagnostics& diags_;
  std::set<std::string> known_;

  const json::Value* get(const std::string& key);
  void type_error(const std::string& key, const json::Value& v, const char* expected);
};

// The "config" object of the template's "imgbake" section as an OCI image config
// (Env as ["K=V"], ExposedPorts/Volumes as sets); unknown keys and bad values are
// reported through the reader.
nlohmann::ordered_json read_image_config(ConfigReader& r);

}  // namespace imgbake
