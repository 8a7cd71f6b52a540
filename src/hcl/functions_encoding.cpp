// cty's JSON functions: jsonencode and jsondecode (cty/json's encoding: object keys sorted,
// numbers in full, strings escaped as Go's encoding/json does).
#include <nlohmann/json.hpp>

#include "functions_internal.h"
#include "utf8.h"

namespace imgbake::hcl {

namespace {

void encode_string(const std::string& s, std::string& out) {
  static const char* hex = "0123456789abcdef";
  out += '"';
  for (size_t i = 0; i < s.size();) {
    size_t len = 1;
    uint32_t cp = utf8_decode(s, i, len);
    auto c = static_cast<unsigned char>(s[i]);
    if (cp == '"' || cp == '\\') {
      out += '\\';
      out += static_cast<char>(cp);
    } else if (cp == '\n') {
      out += "\\n";
    } else if (cp == '\r') {
      out += "\\r";
    } else if (cp == '\t') {
      out += "\\t";
    } else if (cp < 0x20 || cp == '<' || cp == '>' || cp == '&') {
      out += "\\u00";
      out += hex[cp >> 4];
      out += hex[cp & 15];
    } else if (cp == 0x2028 || cp == 0x2029) {
      out += cp == 0x2028 ? "\\u2028" : "\\u2029";
    } else if (cp == 0xFFFD && len == 1 && c >= 0x80) {
      out += "\\ufffd";  // not UTF-8
    } else {
      out += s.substr(i, len);
    }
    i += len;
  }
  out += '"';
}

void encode(const Value& v, std::string& out) {
  if (!v.is_known()) throw FunctionError("value is not known");
  if (v.is_null()) {
    out += "null";
    return;
  }
  switch (v.type().kind()) {
    case Type::Kind::String: encode_string(v.as_string(), out); return;
    case Type::Kind::Number:
      if (v.as_number().is_infinite()) throw FunctionError("an infinite number cannot be encoded as JSON");
      out += v.as_number().str();
      return;
    case Type::Kind::Bool: out += v.as_bool() ? "true" : "false"; return;
    case Type::Kind::List:
    case Type::Kind::Set:
    case Type::Kind::Tuple: {
      out += '[';
      bool first = true;
      for (const auto& e : v.elements()) {
        if (!first) out += ',';
        first = false;
        encode(e, out);
      }
      out += ']';
      return;
    }
    case Type::Kind::Map:
    case Type::Kind::Object: {
      out += '{';
      bool first = true;
      for (const auto& [k, e] : v.attributes()) {
        if (!first) out += ',';
        first = false;
        encode_string(k, out);
        out += ':';
        encode(e, out);
      }
      out += '}';
      return;
    }
    case Type::Kind::Dynamic: out += "null"; return;
  }
}

Value decode(const nlohmann::json& j) {
  switch (j.type()) {
    case nlohmann::json::value_t::object: {
      std::map<std::string, Value> attrs;
      for (const auto& [k, e] : j.items()) attrs[k] = decode(e);
      return Value::object(std::move(attrs));
    }
    case nlohmann::json::value_t::array: {
      std::vector<Value> items;
      for (const auto& e : j) items.push_back(decode(e));
      return Value::tuple(std::move(items));
    }
    case nlohmann::json::value_t::string: return Value::string(j.get<std::string>());
    case nlohmann::json::value_t::boolean: return Value::boolean(j.get<bool>());
    case nlohmann::json::value_t::number_integer:
    case nlohmann::json::value_t::number_unsigned:
    case nlohmann::json::value_t::number_float: {
      auto n = Number::parse(j.dump());
      return n ? Value::number(*n) : Value::null(Type::number());
    }
    default: return Value::null();
  }
}

}  // namespace

std::string json_encode(const Value& v) {
  std::string out;
  encode(v, out);
  return out;
}

std::optional<Value> json_decode(std::string_view text, std::string* error) {
  try {
    return decode(nlohmann::json::parse(text));
  } catch (const nlohmann::json::exception& e) {
    if (error) *error = e.what();
    return std::nullopt;
  }
}

void add_encoding_functions(std::map<std::string, Function>& fs) {
  Function enc;
  enc.params = {{"val", Type(), true}};
  enc.result_type = Type::string();
  enc.impl = [](const std::vector<Value>& a) { return Value::string(json_encode(a[0])); };
  fs["jsonencode"] = enc;
  Function dec;
  dec.params = {{"str", Type::string()}};
  dec.impl = [](const std::vector<Value>& a) {
    std::string why;
    auto v = json_decode(a[0].as_string(), &why);
    if (!v) throw FunctionError("invalid JSON: " + why);
    return *v;
  };
  fs["jsondecode"] = dec;
}

}  // namespace imgbake::hcl
