// cty's string functions: format, formatlist, replace, regex_replace, regex, split, trim*,
// chomp, substr, title, strrev, indent.
#include <algorithm>
#include <cctype>
#include <cstdio>
#include <regex>

#include "functions_internal.h"
#include "utf8.h"

namespace imgbake::hcl {

std::vector<std::string> utf8_chars(const std::string& s) {
  std::vector<std::string> out;
  for (size_t i = 0; i < s.size();) {
    size_t len = 1;
    utf8_decode(s, i, len);
    out.push_back(s.substr(i, len));
    i += len;
  }
  return out;
}

namespace {

Function string_fn(std::vector<std::string> params, std::function<Value(const std::vector<Value>&)> impl,
                   Type result = Type::string()) {
  Function fn;
  for (auto& p : params) fn.params.push_back({std::move(p), Type::string()});
  fn.result_type = std::move(result);
  fn.impl = std::move(impl);
  return fn;
}

std::string pad(std::string s, int width, bool minus, bool zero) {
  int len = static_cast<int>(utf8_chars(s).size());
  if (width <= len) return s;
  std::string fill(static_cast<size_t>(width - len), zero && !minus ? '0' : ' ');
  return minus ? s + fill : fill + s;
}

// One verb of cty's format: %[flags][width][.prec]verb, verbs v t b d o x X e E f g G s q.
std::string format_one(const std::string& raw, char verb, const std::string& flags, int width, int prec,
                       const Value& arg, size_t offset) {
  auto fail = [&](const std::string& why) {
    return FunctionError("unsupported value for \"" + raw + "\" at " + std::to_string(offset) + ": " + why);
  };
  bool minus = flags.find('-') != std::string::npos, zero = flags.find('0') != std::string::npos;
  bool sharp = flags.find('#') != std::string::npos;
  if (arg.is_null()) throw fail("null value cannot be formatted");
  std::string why;
  switch (verb) {
    case 'v':
      if (!sharp && arg.type() == Type::string()) return pad(arg.as_string(), width, minus, zero);
      if (!sharp && arg.type() == Type::number()) return pad(arg.as_number().str(), width, minus, zero);
      return pad(json_encode(arg), width, minus, zero);
    case 't': {
      auto b = convert(arg, Type::boolean(), &why);
      if (!b) throw fail(why);
      return b->as_bool() ? "true" : "false";
    }
    case 's':
    case 'q': {
      auto s = convert(arg, Type::string(), &why);
      if (!s) throw fail(why);
      std::string str = s->as_string();
      if (prec > 0) {
        auto chars = utf8_chars(str);
        if (static_cast<int>(chars.size()) > prec) {
          str.clear();
          for (int i = 0; i < prec; ++i) str += chars[static_cast<size_t>(i)];
        }
      }
      return pad(verb == 'q' ? json_encode(Value::string(str)) : str, width, minus, zero);
    }
    default: break;
  }
  auto n = convert(arg, Type::number(), &why);
  if (!n) throw fail(why);
  std::string spec =
      "%" + flags + (width >= 0 ? std::to_string(width) : "") + (prec >= 0 ? "." + std::to_string(prec) : "");
  char buf[512];
  if (std::string("bdoxX").find(verb) != std::string::npos) {
    auto i = n->as_number().is_integer() ? n->as_number().to_int64() : std::nullopt;
    if (!i) throw fail("an integer is required");
    if (verb == 'b') {
      uint64_t u = *i < 0 ? static_cast<uint64_t>(-*i) : static_cast<uint64_t>(*i);
      std::string bits;
      do {
        bits.insert(bits.begin(), static_cast<char>('0' + (u & 1)));
        u >>= 1;
      } while (u);
      return pad((*i < 0 ? "-" : "") + bits, width, minus, zero);
    }
    std::string s = spec + "ll" + (verb == 'd' ? 'd' : verb);
    if (verb != 'd' && *i < 0) {
      std::snprintf(buf, sizeof buf, (spec + "ll" + verb).c_str(), static_cast<long long>(-*i));
      return "-" + std::string(buf);
    }
    std::snprintf(buf, sizeof buf, s.c_str(), static_cast<long long>(*i));
    return buf;
  }
  if (verb == 'f' && prec < 0) spec += ".6";
  std::snprintf(buf, sizeof buf, (spec + verb).c_str(), n->as_number().to_double());
  return buf;
}

std::string format(const std::string& fmt, const std::vector<Value>& args) {
  std::string out;
  size_t next = 0, highest = 0;  // the next argument; the highest one used (1-based)
  for (size_t i = 0; i < fmt.size(); ++i) {
    if (fmt[i] != '%') {
      out += fmt[i];
      continue;
    }
    size_t start = i++;
    if (i < fmt.size() && fmt[i] == '%') {
      out += '%';
      continue;
    }
    std::string flags;
    while (i < fmt.size() && std::string("-+# 0").find(fmt[i]) != std::string::npos) flags += fmt[i++];
    if (i < fmt.size() && fmt[i] == '[') {
      size_t close = fmt.find(']', i);
      if (close == std::string::npos) throw FunctionError("unterminated argument index at offset " + std::to_string(i));
      int index = std::atoi(fmt.substr(i + 1, close - i - 1).c_str());
      if (index < 1) throw FunctionError("invalid argument index at offset " + std::to_string(i));
      next = static_cast<size_t>(index - 1);
      i = close + 1;
    }
    int width = -1, prec = -1;
    if (i < fmt.size() && std::isdigit(static_cast<unsigned char>(fmt[i]))) {
      width = 0;
      while (i < fmt.size() && std::isdigit(static_cast<unsigned char>(fmt[i]))) width = width * 10 + (fmt[i++] - '0');
    }
    if (i < fmt.size() && fmt[i] == '.') {
      prec = 0;
      ++i;
      while (i < fmt.size() && std::isdigit(static_cast<unsigned char>(fmt[i]))) prec = prec * 10 + (fmt[i++] - '0');
    }
    if (i >= fmt.size()) throw FunctionError("unterminated format verb at offset " + std::to_string(start));
    char verb = fmt[i];
    std::string raw = fmt.substr(start, i - start + 1);
    if (std::string("vtbdoxXeEfgGsq").find(verb) == std::string::npos)
      throw FunctionError("unsupported format verb '" + std::string(1, verb) + "' in \"" + raw + "\" at offset " +
                          std::to_string(start));
    if (next >= args.size())
      throw FunctionError("not enough arguments for \"" + raw + "\" at " + std::to_string(start) + ": need index " +
                          std::to_string(next + 1) + " but have " + std::to_string(args.size()) + " total");
    out += format_one(raw, verb, flags, width, prec, args[next], start);
    ++next;
    highest = std::max(highest, next);
  }
  if (highest < args.size())  // the argument index counts the format string
    throw FunctionError(highest == 0 ? std::string("too many arguments; no verbs in format string")
                                     : "too many arguments; only " + std::to_string(highest) + " used by format string",
                        static_cast<int>(highest + 1));
  return out;
}

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  if (from.empty()) return s;
  std::string out;
  size_t pos = 0;
  for (size_t hit; (hit = s.find(from, pos)) != std::string::npos; pos = hit + from.size())
    out += s.substr(pos, hit - pos) + to;
  return out + s.substr(pos);
}

// Go's regexp replacement template ($1, ${1}, $$) in ECMAScript's form.
std::string go_template_to_ecma(const std::string& t) {
  std::string out;
  for (size_t i = 0; i < t.size(); ++i) {
    if (t[i] == '$' && i + 1 < t.size() && t[i + 1] == '{') {
      size_t close = t.find('}', i);
      if (close != std::string::npos) {
        out += "$" + t.substr(i + 2, close - i - 2);
        i = close;
        continue;
      }
    }
    out += t[i];
  }
  return out;
}

std::regex compile(const std::string& pattern) {
  try {
    return std::regex(pattern, std::regex::ECMAScript);
  } catch (const std::regex_error& e) {
    throw FunctionError(std::string("invalid regular expression pattern: ") + e.what(), 1);
  }
}

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

}  // namespace

void add_string_functions(std::map<std::string, Function>& fs) {
  Function fmt;
  fmt.params = {{"format", Type::string()}};
  fmt.variadic = Function::Param{"args", Type(), true};
  fmt.result_type = Type::string();
  fmt.impl = [](const std::vector<Value>& a) {
    return Value::string(format(a[0].as_string(), std::vector<Value>(a.begin() + 1, a.end())));
  };
  fs["format"] = fmt;

  Function fmtlist = fmt;
  fmtlist.result_type = Type::list(Type::string());
  fmtlist.impl = [](const std::vector<Value>& a) {
    // Lists and tuples are iterated together (all the same length); other values repeat.
    std::optional<size_t> n;
    for (size_t i = 1; i < a.size(); ++i) {
      Type::Kind k = a[i].type().kind();
      if (k != Type::Kind::List && k != Type::Kind::Tuple && k != Type::Kind::Set) continue;
      if (n && *n != a[i].length())
        throw FunctionError("argument " + std::to_string(i) + " has length " + std::to_string(a[i].length()) +
                                ", which is inconsistent with argument 1 of length " + std::to_string(*n),
                            static_cast<int>(i));
      n = a[i].length();
    }
    std::vector<Value> out;
    for (size_t row = 0; row < n.value_or(1); ++row) {
      std::vector<Value> args;
      for (size_t i = 1; i < a.size(); ++i) {
        Type::Kind k = a[i].type().kind();
        bool seq = k == Type::Kind::List || k == Type::Kind::Tuple || k == Type::Kind::Set;
        args.push_back(seq ? a[i].elements()[row] : a[i]);
      }
      out.push_back(Value::string(format(a[0].as_string(), args)));
    }
    return Value::list(std::move(out), Type::string());
  };
  fs["formatlist"] = fmtlist;

  fs["replace"] = string_fn({"str", "substr", "replace"}, [](const std::vector<Value>& a) {
    return Value::string(replace_all(a[0].as_string(), a[1].as_string(), a[2].as_string()));
  });
  fs["regex_replace"] = string_fn({"str", "pattern", "replace"}, [](const std::vector<Value>& a) {
    return Value::string(
        std::regex_replace(a[0].as_string(), compile(a[1].as_string()), go_template_to_ecma(a[2].as_string())));
  });
  fs["regex"] = string_fn(
      {"pattern", "string"},
      [](const std::vector<Value>& a) {
        std::smatch m;
        const std::string& s = a[1].as_string();
        std::regex re = [&] {
          try {
            return std::regex(a[0].as_string());
          } catch (const std::regex_error& e) {
            throw FunctionError(std::string("invalid regular expression pattern: ") + e.what(), 0);
          }
        }();
        if (!std::regex_search(s, m, re)) throw FunctionError("pattern did not match any part of the given string");
        if (m.size() == 1) return Value::string(m.str(0));
        std::vector<Value> groups;
        for (size_t i = 1; i < m.size(); ++i) groups.push_back(Value::string(m.str(i)));
        return Value::list(std::move(groups), Type::string());
      },
      Type());
  fs["split"] = string_fn(
      {"separator", "str"},
      [](const std::vector<Value>& a) {
        const std::string& sep = a[0].as_string();
        const std::string& s = a[1].as_string();
        std::vector<Value> parts;
        if (sep.empty()) {
          for (auto& c : utf8_chars(s)) parts.push_back(Value::string(c));
        } else {
          size_t pos = 0;
          for (size_t hit; (hit = s.find(sep, pos)) != std::string::npos; pos = hit + sep.size())
            parts.push_back(Value::string(s.substr(pos, hit - pos)));
          parts.push_back(Value::string(s.substr(pos)));
        }
        return Value::list(std::move(parts), Type::string());
      },
      Type::list(Type::string()));
  fs["trimspace"] = string_fn({"str"}, [](const std::vector<Value>& a) {
    const std::string& s = a[0].as_string();
    size_t b = 0, e = s.size();
    while (b < e && is_space(s[b])) ++b;
    while (e > b && is_space(s[e - 1])) --e;
    return Value::string(s.substr(b, e - b));
  });
  fs["trim"] = string_fn({"str", "cutset"}, [](const std::vector<Value>& a) {
    const std::string& s = a[0].as_string();
    auto chars = utf8_chars(s);
    auto cut = utf8_chars(a[1].as_string());
    auto in_cut = [&](const std::string& c) { return std::find(cut.begin(), cut.end(), c) != cut.end(); };
    size_t b = 0, e = chars.size();
    while (b < e && in_cut(chars[b])) ++b;
    while (e > b && in_cut(chars[e - 1])) --e;
    std::string out;
    for (size_t i = b; i < e; ++i) out += chars[i];
    return Value::string(out);
  });
  fs["trimprefix"] = string_fn({"str", "prefix"}, [](const std::vector<Value>& a) {
    const std::string &s = a[0].as_string(), &p = a[1].as_string();
    return Value::string(s.rfind(p, 0) == 0 ? s.substr(p.size()) : s);
  });
  fs["trimsuffix"] = string_fn({"str", "suffix"}, [](const std::vector<Value>& a) {
    const std::string &s = a[0].as_string(), &p = a[1].as_string();
    bool has = s.size() >= p.size() && s.compare(s.size() - p.size(), p.size(), p) == 0;
    return Value::string(has ? s.substr(0, s.size() - p.size()) : s);
  });
  fs["chomp"] = string_fn({"str"}, [](const std::vector<Value>& a) {
    std::string s = a[0].as_string();
    while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
    return Value::string(s);
  });
  Function substr;
  substr.params = {{"str", Type::string()}, {"offset", Type::number()}, {"length", Type::number()}};
  substr.result_type = Type::string();
  substr.impl = [](const std::vector<Value>& a) {
    // cty's substr, quirks included: an offset past the end is "", a negative offset counts
    // from the end (and then a length of 0 takes the rest).
    auto chars = utf8_chars(a[0].as_string());
    auto off = a[1].as_number().trunc().to_int64().value_or(0);
    auto len = a[2].as_number().trunc().to_int64().value_or(0);
    auto n = static_cast<int64_t>(chars.size());
    bool from_end = off < 0;
    if (from_end) off = std::max<int64_t>(0, n + off);
    if ((!from_end && len == 0) || off >= n) return Value::string("");
    int64_t end = len < 0 || (from_end && len == 0) ? n : std::min(n, off + len);
    std::string out;
    for (int64_t i = off; i < end; ++i) out += chars[static_cast<size_t>(i)];
    return Value::string(out);
  };
  fs["substr"] = substr;
  fs["title"] = string_fn({"str"}, [](const std::vector<Value>& a) {
    std::string s = a[0].as_string();
    bool start = true;
    for (auto& c : s) {
      // Go's strings.Title: a word starts after anything but a letter, digit or '_' (ASCII).
      if (start && c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
      auto u = static_cast<unsigned char>(c);
      start = u < 0x80 && !std::isalnum(u) && c != '_';
    }
    return Value::string(s);
  });
  fs["strrev"] = string_fn({"str"}, [](const std::vector<Value>& a) {
    auto chars = utf8_chars(a[0].as_string());
    std::string out;
    for (auto it = chars.rbegin(); it != chars.rend(); ++it) out += *it;
    return Value::string(out);
  });
  Function indent;
  indent.params = {{"spaces", Type::number()}, {"str", Type::string()}};
  indent.result_type = Type::string();
  indent.impl = [](const std::vector<Value>& a) {
    std::string pre(static_cast<size_t>(std::max<int64_t>(0, a[0].as_number().to_int64().value_or(0))), ' ');
    return Value::string(replace_all(a[1].as_string(), "\n", "\n" + pre));
  };
  fs["indent"] = indent;
}

}  // namespace imgbake::hcl
