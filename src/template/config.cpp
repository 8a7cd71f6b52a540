#include "imgbake/config.h"

#include "imgbake/util.h"

namespace imgbake {

ConfigReader::ConfigReader(const json::Value& object, std::string file, std::string label, Diagnostics& diags)
    : obj_(object), file_(std::move(file)), label_(std::move(label)), diags_(diags) {
  if (!obj_.is_object() && !obj_.is_null()) diags_.error(file_, obj_.pos, label_ + ": options must be an object");
}

const json::Value* ConfigReader::get(const std::string& key) {
  known_.insert(key);
  return obj_.find(key);
}

bool ConfigReader::has(const std::string& key) const { return obj_.find(key) != nullptr; }

json::Pos ConfigReader::pos_of(const std::string& key) const {
  const json::Value* v = obj_.find(key);
  return v ? v->pos : obj_.pos;
}

void ConfigReader::type_error(const std::string& key, const json::Value& v, const char* expected) {
  diags_.error(file_, v.pos,
               label_ + ": '" + key + "' must be " + expected + ", not " + std::string(v.type_name()) +
                   (v.is_string() ? " \"" + v.text + "\"" : ""));
}

std::string ConfigReader::string(const std::string& key, const std::string& def) {
  return optional_string(key).value_or(def);
}

std::optional<std::string> ConfigReader::optional_string(const std::string& key) {
  const json::Value* v = get(key);
  if (!v || v->is_null()) return std::nullopt;
  // Packer decodes weakly: numbers and booleans are accepted where a string is expected.
  if (v->is_string() || v->is_number()) return v->text;
  if (v->is_bool()) return v->boolean ? "true" : "false";
  type_error(key, *v, "a string");
  return std::nullopt;
}

std::optional<bool> ConfigReader::optional_boolean(const std::string& key) {
  const json::Value* v = get(key);
  if (!v || v->is_null()) return std::nullopt;
  if (v->is_bool()) return v->boolean;
  if (v->is_string()) {
    if (v->text == "true" || v->text == "1") return true;
    if (v->text == "false" || v->text == "0" || v->text.empty()) return false;
  }
  type_error(key, *v, "true or false");
  return std::nullopt;
}

bool ConfigReader::boolean(const std::string& key, bool def) { return optional_boolean(key).value_or(def); }

int64_t ConfigReader::integer(const std::string& key, int64_t def) {
  const json::Value* v = get(key);
  if (!v || v->is_null()) return def;
  if (v->is_number() || v->is_string()) {
    try {
      size_t used = 0;
      long long n = std::stoll(v->text, &used);
      if (used == v->text.size()) return n;
    } catch (const std::exception&) {
    }
  }
  type_error(key, *v, "a whole number");
  return def;
}

std::vector<std::string> ConfigReader::strings(const std::string& key) {
  std::vector<std::string> out;
  const json::Value* v = get(key);
  if (!v || v->is_null()) return out;
  if (v->is_string()) {
    out.push_back(v->text);
    return out;
  }
  if (!v->is_array()) {
    type_error(key, *v, "a list of strings");
    return out;
  }
  for (const auto& i : v->items) {
    if (i.is_string() || i.is_number()) {
      out.push_back(i.text);
    } else {
      type_error(key + "[]", i, "a string");
    }
  }
  return out;
}

std::vector<int64_t> ConfigReader::integers(const std::string& key, std::vector<int64_t> def) {
  const json::Value* v = get(key);
  if (!v || v->is_null()) return def;
  std::vector<int64_t> out;
  auto one = [&](const json::Value& i) {
    try {
      size_t used = 0;
      long long n = std::stoll(i.text, &used);
      if ((i.is_number() || i.is_string()) && used == i.text.size()) {
        out.push_back(n);
        return;
      }
    } catch (const std::exception&) {
    }
    type_error(key, i, "a list of whole numbers");
  };
  if (v->is_array()) {
    for (const auto& i : v->items) one(i);
  } else {
    one(*v);
  }
  return out;
}

std::optional<std::chrono::milliseconds> ConfigReader::duration(const std::string& key) {
  const json::Value* v = get(key);
  if (!v || v->is_null()) return std::nullopt;
  if (v->is_string() || v->is_number()) {
    if (auto d = util::parse_duration(v->text)) return d;
  }
  diags_.error(file_, v->pos,
               label_ + ": '" + key + "' is not a valid duration" + (v->is_string() ? " (\"" + v->text + "\")" : "") +
                   "; use e.g. \"30s\", \"5m\", \"1h30m\"");
  return std::nullopt;
}

std::map<std::string, std::string> ConfigReader::string_map(const std::string& key) {
  std::map<std::string, std::string> out;
  const json::Value* v = get(key);
  if (!v || v->is_null()) return out;
  if (!v->is_object()) {
    type_error(key, *v, "an object of strings");
    return out;
  }
  for (const auto& m : v->members) {
    if (m.value.is_string() || m.value.is_number()) {
      out[m.key] = m.value.text;
    } else if (m.value.is_bool()) {
      out[m.key] = m.value.boolean ? "true" : "false";
    } else {
      type_error(key + "." + m.key, m.value, "a string");
    }
  }
  return out;
}

const json::Value* ConfigReader::raw(const std::string& key) { return get(key); }

void ConfigReader::accept(std::initializer_list<const char*> keys) {
  for (const char* k : keys) known_.insert(k);
}

void ConfigReader::error(const std::string& key, const std::string& message) {
  diags_.error(file_, pos_of(key), label_ + ": " + message);
}

void ConfigReader::error(const std::string& message) { diags_.error(file_, obj_.pos, label_ + ": " + message); }

void ConfigReader::warn(const std::string& key, const std::string& message) {
  diags_.warn(file_, pos_of(key), label_ + ": " + message);
}

void ConfigReader::require(const std::string& key) {
  const json::Value* v = get(key);
  if (!v || v->is_null() || (v->is_string() && v->text.empty()))
    diags_.error(file_, obj_.pos, label_ + ": '" + key + "' is required");
}

void ConfigReader::finish() {
  if (!obj_.is_object()) return;
  std::vector<std::string> known(known_.begin(), known_.end());
  for (const auto& m : obj_.members) {
    if (known_.count(m.key) || (!m.key.empty() && m.key[0] == '_')) continue;
    diags_.error(file_, m.key_pos, label_ + ": unknown option '" + m.key + "'" + util::did_you_mean(m.key, known));
  }
}

}  // namespace imgbake
