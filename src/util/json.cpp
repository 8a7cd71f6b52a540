#include "imgbake/json.h"

#include <charconv>
#include <cstdint>
#include <unordered_set>

#include "imgbake/text_encoding.h"

namespace imgbake::json {

const Member* Value::find_member(std::string_view key) const {
  if (kind != Kind::Object) return nullptr;
  for (const auto& m : members)
    if (m.key == key) return &m;
  return nullptr;
}

const Value* Value::find(std::string_view key) const {
  const Member* m = find_member(key);
  return m ? &m->value : nullptr;
}

Value* Value::find(std::string_view key) {
  if (kind != Kind::Object) return nullptr;
  for (auto& m : members)
    if (m.key == key) return &m.value;
  return nullptr;
}

bool Value::erase(std::string_view key) {
  for (auto it = members.begin(); it != members.end(); ++it) {
    if (it->key == key) {
      members.erase(it);
      return true;
    }
  }
  return false;
}

std::string_view Value::type_name() const {
  switch (kind) {
    case Kind::Null: return "null";
    case Kind::Bool: return "boolean";
    case Kind::Number: return "number";
    case Kind::String: return "string";
    case Kind::Array: return "array";
    case Kind::Object: return "object";
  }
  return "?";
}

nlohmann::ordered_json Value::to_json() const {
  switch (kind) {
    case Kind::Null: return nullptr;
    case Kind::Bool: return boolean;
    case Kind::Number: return nlohmann::ordered_json::parse(text);
    case Kind::String: return text;
    case Kind::Array: {
      auto a = nlohmann::ordered_json::array();
      for (const auto& i : items) a.push_back(i.to_json());
      return a;
    }
    case Kind::Object: {
      auto o = nlohmann::ordered_json::object();
      for (const auto& m : members) o[m.key] = m.value.to_json();
      return o;
    }
  }
  return nullptr;
}

Value Value::from_json(const nlohmann::ordered_json& j) {
  Value v;
  if (j.is_null()) {
    v.kind = Kind::Null;
  } else if (j.is_boolean()) {
    v.kind = Kind::Bool;
    v.boolean = j.get<bool>();
  } else if (j.is_number()) {
    v.kind = Kind::Number;
    v.text = j.dump();
  } else if (j.is_string()) {
    v.kind = Kind::String;
    v.text = j.get<std::string>();
  } else if (j.is_array()) {
    v.kind = Kind::Array;
    for (const auto& i : j) v.items.push_back(from_json(i));
  } else {
    v.kind = Kind::Object;
    for (const auto& [k, val] : j.items()) v.members.push_back(Member{k, {}, from_json(val)});
  }
  return v;
}

Value Value::make_string(std::string s, Pos p) {
  Value v;
  v.kind = Kind::String;
  v.text = std::move(s);
  v.pos = p;
  return v;
}

namespace {

class Parser {
 public:
  explicit Parser(std::string_view text) : s_(text) {}

  Value document() {
    skip_ws();
    if (i_ >= s_.size()) fail("unexpected end of input: the file holds no JSON value");
    Value v = value(0);
    skip_ws();
    if (i_ < s_.size()) fail(std::string("unexpected '") + s_[i_] + "' after the top-level value");
    return v;
  }

 private:
  std::string_view s_;
  size_t i_ = 0;
  int line_ = 1;
  size_t line_start_ = 0;

  Pos here() const { return Pos{line_, static_cast<int>(i_ - line_start_) + 1}; }

  [[noreturn]] void fail(const std::string& msg) const { throw ParseError(msg, here()); }
  [[noreturn]] void fail_at(const std::string& msg, Pos p) const { throw ParseError(msg, p); }

  void advance() {
    if (s_[i_] == '\n') {
      ++line_;
      line_start_ = i_ + 1;
    }
    ++i_;
  }

  void skip_ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) advance();
  }

  std::string describe_here() const {
    if (i_ >= s_.size()) return "end of input";
    unsigned char c = static_cast<unsigned char>(s_[i_]);
    if (c < 0x20) return "control character";
    return std::string("'") + s_[i_] + "'";
  }

  Value value(int depth) {
    if (depth > 512) fail("JSON nested too deeply");
    skip_ws();
    if (i_ >= s_.size()) fail("unexpected end of input, expected a value");
    Value v;
    v.pos = here();
    char c = s_[i_];
    switch (c) {
      case '{': object(v, depth); break;
      case '[': array(v, depth); break;
      case '"':
        v.kind = Value::Kind::String;
        v.text = string_literal();
        break;
      case 't': literal("true", v, Value::Kind::Bool, true); break;
      case 'f': literal("false", v, Value::Kind::Bool, false); break;
      case 'n': literal("null", v, Value::Kind::Null, false); break;
      default:
        if (c == '-' || (c >= '0' && c <= '9')) {
          number(v);
        } else {
          fail("unexpected " + describe_here() + ", expected a value");
        }
    }
    return v;
  }

  void literal(std::string_view word, Value& v, Value::Kind k, bool b) {
    if (s_.substr(i_, word.size()) != word) fail("unexpected " + describe_here() + ", expected a value");
    for (size_t n = 0; n < word.size(); ++n) advance();
    v.kind = k;
    v.boolean = b;
  }

  void number(Value& v) {
    size_t start = i_;
    auto digits = [&] {
      size_t d = i_;
      while (i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9') advance();
      return i_ - d;
    };
    if (s_[i_] == '-') advance();
    if (i_ < s_.size() && s_[i_] == '0') {
      advance();
    } else if (digits() == 0) {
      fail("invalid number: expected a digit");
    }
    if (i_ < s_.size() && s_[i_] == '.') {
      advance();
      if (digits() == 0) fail("invalid number: expected a digit after '.'");
    }
    if (i_ < s_.size() && (s_[i_] == 'e' || s_[i_] == 'E')) {
      advance();
      if (i_ < s_.size() && (s_[i_] == '+' || s_[i_] == '-')) advance();
      if (digits() == 0) fail("invalid number: expected a digit in the exponent");
    }
    v.kind = Value::Kind::Number;
    v.text = std::string(s_.substr(start, i_ - start));
  }

  uint32_t hex4() {
    if (i_ + 4 > s_.size()) fail("invalid \\u escape");
    uint32_t cp = 0;
    auto [p, ec] = std::from_chars(s_.data() + i_, s_.data() + i_ + 4, cp, 16);
    if (ec != std::errc() || p != s_.data() + i_ + 4) fail("invalid \\u escape");
    for (int n = 0; n < 4; ++n) advance();
    return cp;
  }

  std::string string_literal() {
    Pos start = here();
    advance();  // opening quote
    std::string out;
    while (true) {
      if (i_ >= s_.size()) fail_at("unterminated string", start);
      char c = s_[i_];
      if (c == '"') {
        advance();
        return out;
      }
      if (static_cast<unsigned char>(c) < 0x20)
        fail("invalid control character in string (newlines must be written as \\n)");
      if (c == '\\') {
        Pos escape_pos = here();
        advance();
        if (i_ >= s_.size()) fail_at("unterminated string", start);
        char e = s_[i_];
        advance();
        switch (e) {
          case '"': out += '"'; break;
          case '\\': out += '\\'; break;
          case '/': out += '/'; break;
          case 'b': out += '\b'; break;
          case 'f': out += '\f'; break;
          case 'n': out += '\n'; break;
          case 'r': out += '\r'; break;
          case 't': out += '\t'; break;
          case 'u': {
            uint32_t cp = hex4();
            if (cp >= 0xD800 && cp <= 0xDBFF && s_.substr(i_, 2) == "\\u") {
              advance();
              advance();
              uint32_t lo = hex4();
              if (lo >= 0xDC00 && lo <= 0xDFFF) {
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
              } else {
                util::append_utf8(out, 0xFFFD);
                cp = lo;
              }
            }
            // A lone surrogate is not a character: U+FFFD, as Go (and so Packer) does.
            if (cp >= 0xD800 && cp <= 0xDFFF) cp = 0xFFFD;
            util::append_utf8(out, cp);
            break;
          }
          default: fail_at(std::string("invalid escape '\\") + e + "' in string", escape_pos);
        }
        continue;
      }
      out += c;
      advance();
    }
  }

  void array(Value& v, int depth) {
    v.kind = Value::Kind::Array;
    advance();
    skip_ws();
    if (i_ < s_.size() && s_[i_] == ']') {
      advance();
      return;
    }
    while (true) {
      v.items.push_back(value(depth + 1));
      skip_ws();
      if (i_ >= s_.size()) fail("unexpected end of input, expected ',' or ']'");
      if (s_[i_] == ',') {
        advance();
        skip_ws();
        if (i_ < s_.size() && s_[i_] == ']') fail("unexpected ']' after ',' (trailing commas are not JSON)");
        continue;
      }
      if (s_[i_] == ']') {
        advance();
        return;
      }
      fail("unexpected " + describe_here() + " in array, expected ',' or ']'");
    }
  }

  void object(Value& v, int depth) {
    v.kind = Value::Kind::Object;
    advance();
    skip_ws();
    if (i_ < s_.size() && s_[i_] == '}') {
      advance();
      return;
    }
    std::unordered_set<std::string> seen;
    while (true) {
      skip_ws();
      if (i_ >= s_.size()) fail("unexpected end of input, expected a key");
      if (s_[i_] == '}') fail("unexpected '}' after ',' (trailing commas are not JSON)");
      if (s_[i_] != '"') fail("unexpected " + describe_here() + ", expected a quoted key");
      Member m;
      m.key_pos = here();
      m.key = string_literal();
      if (!seen.insert(m.key).second) fail_at("duplicate key \"" + m.key + "\"", m.key_pos);
      skip_ws();
      if (i_ >= s_.size() || s_[i_] != ':') fail("unexpected " + describe_here() + ", expected ':' after key");
      advance();
      m.value = value(depth + 1);
      v.members.push_back(std::move(m));
      skip_ws();
      if (i_ >= s_.size()) fail("unexpected end of input, expected ',' or '}'");
      if (s_[i_] == ',') {
        advance();
        continue;
      }
      if (s_[i_] == '}') {
        advance();
        return;
      }
      fail("unexpected " + describe_here() + " in object, expected ',' or '}'");
    }
  }
};

void serialize_into(std::string& out, const Value& v, int indent, int level) {
  auto newline = [&](int lvl) {
    out += '\n';
    out.append(static_cast<size_t>(indent) * static_cast<size_t>(lvl), ' ');
  };
  switch (v.kind) {
    case Value::Kind::Null: out += "null"; break;
    case Value::Kind::Bool: out += v.boolean ? "true" : "false"; break;
    case Value::Kind::Number: out += v.text; break;
    case Value::Kind::String: out += quote(v.text); break;
    case Value::Kind::Array:
      if (v.items.empty()) {
        out += "[]";
        break;
      }
      out += '[';
      for (size_t n = 0; n < v.items.size(); ++n) {
        if (n) out += ',';
        newline(level + 1);
        serialize_into(out, v.items[n], indent, level + 1);
      }
      newline(level);
      out += ']';
      break;
    case Value::Kind::Object:
      if (v.members.empty()) {
        out += "{}";
        break;
      }
      out += '{';
      for (size_t n = 0; n < v.members.size(); ++n) {
        if (n) out += ',';
        newline(level + 1);
        out += quote(v.members[n].key);
        out += ": ";
        serialize_into(out, v.members[n].value, indent, level + 1);
      }
      newline(level);
      out += '}';
      break;
  }
}

}  // namespace

Value parse(std::string_view text) {
  // A UTF-8 byte order mark is tolerated (editors on Windows write one).
  if (text.substr(0, 3) == "\xEF\xBB\xBF") {
    Parser p(text.substr(3));
    return p.document();
  }
  Parser p(text);
  return p.document();
}

Pos source_pos(std::string_view source, Pos quote_pos, size_t offset) {
  Pos estimate = quote_pos;
  if (quote_pos.line > 0) estimate.col += 1 + static_cast<int>(offset);
  if (source.empty() || quote_pos.line <= 0) return estimate;
  size_t line_start = 0;
  for (int line = 1; line < quote_pos.line; ++line) {
    line_start = source.find('\n', line_start);
    if (line_start == std::string_view::npos) return estimate;
    ++line_start;
  }
  size_t i = line_start + static_cast<size_t>(quote_pos.col - 1);
  if (i >= source.size() || source[i] != '"') return estimate;
  ++i;
  size_t decoded = 0;
  while (decoded < offset && i < source.size() && source[i] != '"') {
    if (source[i] != '\\') {
      ++i;
      ++decoded;
      continue;
    }
    if (i + 1 < source.size() && source[i + 1] == 'u' && i + 6 <= source.size()) {
      uint32_t cp = 0;
      std::from_chars(source.data() + i + 2, source.data() + i + 6, cp, 16);
      i += 6;
      if (cp >= 0xD800 && cp <= 0xDBFF && source.substr(i, 2) == "\\u") {
        i += 6;
        decoded += 4;
      } else {
        decoded += cp < 0x80 ? 1 : cp < 0x800 ? 2 : 3;
      }
    } else {
      i += 2;
      ++decoded;
    }
  }
  return Pos{quote_pos.line, static_cast<int>(i - line_start) + 1};
}

std::string quote(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          static const char* hex = "0123456789abcdef";
          out += "\\u00";
          out += hex[(c >> 4) & 0xF];
          out += hex[c & 0xF];
        } else {
          out += c;
        }
    }
  }
  out += '"';
  return out;
}

std::string serialize(const Value& v, int indent) {
  std::string out;
  serialize_into(out, v, indent, 0);
  out += '\n';
  return out;
}

}  // namespace imgbake::json
