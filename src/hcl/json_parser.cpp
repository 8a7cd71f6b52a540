// HCL's JSON syntax: the scanner and parser of hashicorp/hcl's json package (scanner.go,
// parser.go), with its positions (a tab counts two columns, "\r" none) and its errors.
// Strings and numbers are read as Go's encoding/json reads them.
#include <algorithm>
#include <optional>

#include "json_syntax.h"
#include "utf8.h"

namespace imgbake::hcl::json_syntax {

namespace {

enum class T { BraceO, BraceC, BrackO, BrackC, Comma, Colon, Equals, Keyword, String, Number, Eof, Invalid };

struct Tok {
  T type = T::Eof;
  std::string_view bytes;
  Range range;
};

bool alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool number_byte(char c) { return (c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E'; }

std::vector<Tok> scan(std::string_view buf) {
  std::vector<Tok> out;
  Pos p;
  size_t i = 0;
  auto advance = [&](size_t bytes, int columns) {
    i += bytes;
    p.byte += static_cast<int>(bytes);
    p.column += columns;
  };
  while (true) {
    for (; i < buf.size(); ++i) {
      char c = buf[i];
      if (c == ' ') {
        ++p.column;
      } else if (c == '\n') {
        ++p.line;
        p.column = 1;
      } else if (c == '\t') {
        p.column += 2;
      } else if (c != '\r') {
        break;
      }
      ++p.byte;
    }
    if (i >= buf.size()) {
      out.push_back({T::Eof, {}, {p, p}});
      return out;
    }
    Pos start = p;
    size_t from = i;
    char c = buf[i];
    T type = T::Invalid;
    switch (c) {
      case '{': type = T::BraceO; break;
      case '}': type = T::BraceC; break;
      case '[': type = T::BrackO; break;
      case ']': type = T::BrackC; break;
      case ',': type = T::Comma; break;
      case ':': type = T::Colon; break;
      case '=': type = T::Equals; break;
      default: break;
    }
    if (type != T::Invalid) {
      advance(1, 1);
    } else if (c == '"') {
      type = T::String;
      advance(1, 1);
      bool escaping = false;
      while (i < buf.size()) {
        char b = buf[i];
        if (b == '\\') {
          escaping = !escaping;
          advance(1, 1);
        } else if (b == '"') {
          advance(1, 1);
          if (!escaping) break;
          escaping = false;
        } else if (static_cast<unsigned char>(b) < 32) {
          break;
        } else {
          // hcl counts grapheme clusters; imgbake counts characters (the same but for
          // combining sequences).
          size_t len = 1;
          utf8_decode(buf, i, len);
          advance(len, 1);
          escaping = false;
        }
      }
    } else if (number_byte(c)) {
      type = T::Number;
      while (i < buf.size() && number_byte(buf[i])) advance(1, 1);
    } else if (alpha(c)) {
      type = T::Keyword;
      while (i < buf.size() && (alpha(buf[i]) || buf[i] == '_')) advance(1, 1);
    } else {
      // One invalid byte ends the token stream.
      advance(1, 1);
      out.push_back({T::Invalid, buf.substr(from, 1), {start, p}});
      out.push_back({T::Eof, {}, {p, p}});
      return out;
    }
    out.push_back({type, buf.substr(from, i - from), {start, p}});
  }
}

// Go's encoding/json grammar for numbers.
bool valid_json_number(std::string_view s) {
  size_t i = 0;
  auto digits = [&] {
    size_t from = i;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i;
    return i > from;
  };
  if (i < s.size() && s[i] == '-') ++i;
  if (i < s.size() && s[i] == '0')
    ++i;
  else if (!digits())
    return false;
  if (i < s.size() && s[i] == '.') {
    ++i;
    if (!digits()) return false;
  }
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
    if (!digits()) return false;
  }
  return i == s.size();
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// A quoted JSON string decoded as Go's encoding/json does (bad surrogates and bad UTF-8
// become U+FFFD), or the offset Go's json.SyntaxError gives for it (one past the bad byte,
// or the length when it ends early).
struct Decoded {
  std::string value;
  std::optional<size_t> error_offset;
};

Decoded decode_string(std::string_view s) {
  Decoded d;
  size_t i = 1;  // after the opening quote
  while (true) {
    if (i >= s.size()) {
      d.error_offset = s.size();
      return d;
    }
    unsigned char c = s[i];
    if (c == '"') {
      if (i + 1 != s.size()) d.error_offset = i + 2;
      return d;
    }
    if (c < 0x20) {
      d.error_offset = i + 1;
      return d;
    }
    if (c != '\\') {
      size_t len = 1;
      uint32_t cp = utf8_decode(s, i, len);
      d.value += cp == 0xFFFD && len == 1 ? utf8_encode(0xFFFD) : std::string(s.substr(i, len));
      i += len;
      continue;
    }
    if (i + 1 >= s.size()) {
      d.error_offset = s.size();
      return d;
    }
    char e = s[i + 1];
    i += 2;
    switch (e) {
      case '"': d.value += '"'; continue;
      case '\\': d.value += '\\'; continue;
      case '/': d.value += '/'; continue;
      case 'b': d.value += '\b'; continue;
      case 'f': d.value += '\f'; continue;
      case 'n': d.value += '\n'; continue;
      case 'r': d.value += '\r'; continue;
      case 't': d.value += '\t'; continue;
      case 'u': break;
      default: d.error_offset = i; return d;
    }
    auto hex4 = [&](size_t at, uint32_t& out) -> bool {
      out = 0;
      for (size_t k = 0; k < 4; ++k) {
        if (at + k >= s.size()) {
          d.error_offset = s.size();
          return false;
        }
        int h = hex_value(s[at + k]);
        if (h < 0) {
          d.error_offset = at + k + 1;
          return false;
        }
        out = out * 16 + static_cast<uint32_t>(h);
      }
      return true;
    };
    uint32_t cp = 0;
    if (!hex4(i, cp)) return d;
    i += 4;
    if (cp >= 0xD800 && cp < 0xDC00 && i + 1 < s.size() && s[i] == '\\' && s[i + 1] == 'u') {
      uint32_t low = 0;
      Decoded saved = d;
      if (hex4(i + 2, low) && low >= 0xDC00 && low < 0xE000) {
        cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
        i += 6;
      } else {
        d = saved;  // the next escape is read on its own
        cp = 0xFFFD;
      }
    } else if (cp >= 0xD800 && cp < 0xE000) {
      cp = 0xFFFD;
    }
    d.value += utf8_encode(cp);
  }
}

size_t distance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

class JsonParser {
 public:
  JsonParser(std::string_view src, std::string file, Diagnostics& diags)
      : toks_(scan(src)), file_(std::move(file)), diags_(diags) {}

  NodePtr parse_file() {
    size_t before = diags_.items().size();
    NodePtr n = parse_value();
    if (diags_.items().size() == before && peek().type != T::Eof)
      error(peek().range, "Extraneous data after value", "Extra characters appear after the JSON value.");
    return n;
  }

 private:
  std::vector<Tok> toks_;
  size_t next_ = 0;
  std::string file_;
  Diagnostics& diags_;

  const Tok& peek() const { return toks_[std::min(next_, toks_.size() - 1)]; }
  Tok read() {
    Tok t = peek();
    if (next_ < toks_.size() - 1) ++next_;
    return t;
  }
  void error(Range r, std::string summary, std::string detail) {
    diags_.error(file_, r, std::move(summary), std::move(detail));
  }
  static NodePtr invalid(Range r) {
    auto n = std::make_unique<Node>();
    n->range = r;
    return n;
  }
  // Skips to the bracket that closes the one being read (parser.go's recover).
  void recover(Tok t, T open_type, T close_type) {
    int open = 1;
    while (true) {
      if (t.type == open_type) {
        ++open;
      } else if (t.type == close_type) {
        if (--open <= 1) return;
      } else if (t.type == T::Eof) {
        return;
      }
      t = read();
    }
  }

  NodePtr parse_value() {
    Tok t = peek();
    NodePtr n;
    switch (t.type) {
      case T::BraceO: n = parse_object(); break;
      case T::BrackO: n = parse_array(); break;
      case T::Number: n = parse_number(); break;
      case T::String: n = parse_string(); break;
      case T::Keyword: n = parse_keyword(); break;
      case T::BraceC:
        error(t.range, "Missing JSON value",
              "A JSON value must start with a brace, a bracket, a number, a string, or a keyword.");
        break;
      case T::BrackC:
        error(t.range, "Missing array element value",
              "A JSON value must start with a brace, a bracket, a number, a string, or a keyword.");
        break;
      case T::Eof: error(t.range, "Missing value", "The JSON data ends prematurely."); break;
      default:
        error(t.range, "Invalid start of value",
              "A JSON value must start with a brace, a bracket, a number, a string, or a keyword.");
        break;
    }
    return n ? std::move(n) : invalid(t.range);
  }

  NodePtr parse_object() {
    Tok open = read();
    auto obj = std::make_unique<Node>();
    obj->kind = Node::Kind::Object;
    while (peek().type != T::BraceC) {
      NodePtr key = parse_value();
      if (key->kind != Node::Kind::String) {
        error(key->start_range(), "Invalid object property name", "A JSON object property name must be a string");
        return nullptr;
      }
      Tok colon = read();
      if (colon.type != T::Colon) {
        recover(colon, T::BraceO, T::BraceC);
        if (colon.type == T::BraceC || colon.type == T::Comma)
          error(colon.range, "Missing object value",
                "A JSON object attribute must have a value, introduced by a colon.");
        else if (colon.type == T::Equals)
          error(colon.range, "Missing property value colon",
                "JSON uses a colon as its name/value delimiter, not an equals sign.");
        else
          error(colon.range, "Missing property value colon",
                "A colon must appear between an object property's name and its value.");
        return nullptr;
      }
      NodePtr value = parse_value();
      obj->properties.push_back({std::move(key->text), key->range, std::move(value)});
      switch (peek().type) {
        case T::Comma: {
          Tok comma = read();
          if (peek().type == T::BraceC) {
            error(comma.range, "Trailing comma in object",
                  "JSON does not permit a trailing comma after the final property in an object.");
            return nullptr;
          }
          continue;
        }
        case T::Eof:
          error(open.range, "Unclosed object", "No closing brace was found for this JSON object.");
          return nullptr;
        case T::BrackC:
          read();
          error(peek().range, "Mismatched braces", "A JSON object must be closed with a brace, not a bracket.");
          return nullptr;
        case T::BraceC: break;
        default:
          recover(read(), T::BraceO, T::BraceC);
          error(peek().range, "Missing attribute seperator comma",
                "A comma must appear between each property definition in an object.");
          return nullptr;
      }
      break;
    }
    Tok close = read();
    obj->range = range_between(open.range, close.range);
    obj->open_range = open.range;
    obj->close_range = close.range;
    return obj;
  }

  NodePtr parse_array() {
    Tok open = read();
    auto arr = std::make_unique<Node>();
    arr->kind = Node::Kind::Array;
    while (peek().type != T::BrackC) {
      arr->items.push_back(parse_value());
      switch (peek().type) {
        case T::Comma: {
          Tok comma = read();
          if (peek().type == T::BrackC) {
            error(comma.range, "Trailing comma in array",
                  "JSON does not permit a trailing comma after the final value in an array.");
            return nullptr;
          }
          continue;
        }
        case T::Colon:
          recover(read(), T::BrackO, T::BrackC);
          error(peek().range, "Invalid array value", "A colon is not used to introduce values in a JSON array.");
          return nullptr;
        case T::Eof:
          recover(read(), T::BrackO, T::BrackC);
          error(open.range, "Unclosed object", "No closing bracket was found for this JSON array.");
          return nullptr;
        case T::BraceC:
          recover(read(), T::BrackO, T::BrackC);
          error(peek().range, "Mismatched brackets", "A JSON array must be closed with a bracket, not a brace.");
          return nullptr;
        case T::BrackC: break;
        default:
          recover(read(), T::BrackO, T::BrackC);
          error(peek().range, "Missing attribute seperator comma",
                "A comma must appear between each value in an array.");
          return nullptr;
      }
      break;
    }
    Tok close = read();
    arr->range = range_between(open.range, close.range);
    arr->open_range = open.range;
    arr->close_range = close.range;
    return arr;
  }

  NodePtr parse_number() {
    Tok t = read();
    if (!valid_json_number(t.bytes)) {
      error(t.range, "Invalid JSON number", "There is a syntax error in the given JSON number.");
      return nullptr;
    }
    auto n = std::make_unique<Node>();
    n->kind = Node::Kind::Number;
    n->text = std::string(t.bytes);
    n->range = t.range;
    return n;
  }

  NodePtr parse_string() {
    Tok t = read();
    Decoded d = decode_string(t.bytes);
    if (d.error_offset) {
      Range r = t.range;
      auto off = static_cast<int>(*d.error_offset);
      r.start.byte += off;
      r.start.column += off;
      r.end = r.start;
      r.end.byte++;
      r.end.column++;
      error(r, "Invalid JSON string", "There is a syntax error in the given JSON string.");
      return nullptr;
    }
    auto n = std::make_unique<Node>();
    n->kind = Node::Kind::String;
    n->text = std::move(d.value);
    n->range = t.range;
    return n;
  }

  NodePtr parse_keyword() {
    Tok t = read();
    auto n = std::make_unique<Node>();
    n->range = t.range;
    if (t.bytes == "true" || t.bytes == "false") {
      n->kind = Node::Kind::Bool;
      n->boolean = t.bytes == "true";
      return n;
    }
    if (t.bytes == "null") {
      n->kind = Node::Kind::Null;
      return n;
    }
    std::string s(t.bytes);
    if (s == "undefined" || s == "NaN" || s == "Infinity") {
      error(t.range, "Invalid JSON keyword", "The JavaScript identifier \"" + s + "\" cannot be used in JSON.");
      return nullptr;
    }
    std::string dym;
    for (const char* k : {"false", "true", "null"})
      if (distance(s, k) < 3) {
        dym = std::string(" Did you mean \"") + k + "\"?";
        break;
      }
    error(t.range, "Invalid JSON keyword", "\"" + s + "\" is not a valid JSON keyword." + dym);
    return nullptr;
  }
};

}  // namespace

NodePtr parse(std::string_view src, const std::string& file, Diagnostics& diags) {
  return JsonParser(src, file, diags).parse_file();
}

}  // namespace imgbake::hcl::json_syntax
