// A small JSON reader that keeps the line:column of every value and key, keeps
// object key order, and rejects duplicate keys. nlohmann::json (used everywhere
// else) has no positions in 3.11, and template errors must name file:line:col.
#pragma once

#include <nlohmann/json.hpp>

#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace imgbake::json {

struct Pos {
  int line = 0;  // 1-based; 0 = unknown
  int col = 0;   // 1-based, in bytes
};

struct Member;

class Value {
 public:
  enum class Kind { Null, Bool, Number, String, Array, Object };

  Kind kind = Kind::Null;
  Pos pos;
  bool boolean = false;
  std::string text;  // the string's value, or a number's literal text as written
  std::vector<Value> items;
  std::vector<Member> members;

  bool is_null() const { return kind == Kind::Null; }
  bool is_string() const { return kind == Kind::String; }
  bool is_object() const { return kind == Kind::Object; }
  bool is_array() const { return kind == Kind::Array; }
  bool is_number() const { return kind == Kind::Number; }
  bool is_bool() const { return kind == Kind::Bool; }

  // Object lookup; nullptr when absent or when this is not an object.
  const Value* find(std::string_view key) const;
  Value* find(std::string_view key);
  const Member* find_member(std::string_view key) const;
  // Removes a key from an object; returns whether it was there.
  bool erase(std::string_view key);

  // "string", "number", "boolean", "array", "object", "null" (for error messages).
  std::string_view type_name() const;

  nlohmann::ordered_json to_json() const;
  static Value from_json(const nlohmann::ordered_json& j);
  static Value make_string(std::string s, Pos p = {});
};

struct Member {
  std::string key;
  Pos key_pos;
  Value value;
};

class ParseError : public std::runtime_error {
 public:
  ParseError(const std::string& message, Pos p) : std::runtime_error(message), pos(p) {}
  Pos pos;
};

// Parses a whole JSON document. Throws ParseError (with position) on invalid
// JSON, trailing content, or a duplicate key in any object.
Value parse(std::string_view text);

// Serializes with 2-space indentation, keys in their original order, numbers as
// written, strings re-escaped minimally (UTF-8 kept; "<", ">" and "&" kept).
std::string serialize(const Value& v, int indent = 2);

// Where, in the source text, the byte at `offset` of a decoded string value lies, given
// the position of the string's opening quote (escapes like \t or \u00e9 take more source
// columns than decoded bytes). Falls back to an estimate when `source` is empty.
Pos source_pos(std::string_view source, Pos quote_pos, size_t offset);

// Escapes a string as a JSON string literal (with quotes).
std::string quote(std::string_view s);

}  // namespace imgbake::json
