#include "imgbake/interpolate.h"

#include <filesystem>
#include <functional>
#include <optional>
#include <vector>

#include "gotime.h"
#include "imgbake/util.h"
#include "imgbake/version.h"

namespace imgbake::interp {

namespace {

// Raised inside an action when it needs a value that is not known yet and the
// context allows deferring: the caller then keeps the action text as it was.
struct Deferred {};

enum class TokKind { Ident, Field, String, Number, Bool, Pipe, LParen, RParen, End };

struct Token {
  TokKind kind;
  std::string text;
};

class Lexer {
 public:
  Lexer(std::string_view s, size_t base) : s_(s), base_(base) {}

  Token next() {
    while (i_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[i_]))) ++i_;
    if (i_ >= s_.size()) return {TokKind::End, ""};
    char c = s_[i_];
    if (c == '|') {
      ++i_;
      return {TokKind::Pipe, "|"};
    }
    if (c == '(') {
      ++i_;
      return {TokKind::LParen, "("};
    }
    if (c == ')') {
      ++i_;
      return {TokKind::RParen, ")"};
    }
    if (c == '`') {
      size_t end = s_.find('`', i_ + 1);
      if (end == std::string_view::npos) throw Error("unterminated raw string in template action", base_);
      std::string v(s_.substr(i_ + 1, end - i_ - 1));
      i_ = end + 1;
      return {TokKind::String, v};
    }
    if (c == '"') return quoted();
    if (c == '.') {
      size_t start = ++i_;
      while (i_ < s_.size() && (std::isalnum(static_cast<unsigned char>(s_[i_])) || s_[i_] == '_')) ++i_;
      return {TokKind::Field, std::string(s_.substr(start, i_ - start))};
    }
    if (c == '-' || c == '+' || std::isdigit(static_cast<unsigned char>(c))) {
      size_t start = i_++;
      while (i_ < s_.size() && (std::isalnum(static_cast<unsigned char>(s_[i_])) || s_[i_] == '.')) ++i_;
      return {TokKind::Number, std::string(s_.substr(start, i_ - start))};
    }
    if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
      size_t start = i_;
      while (i_ < s_.size() && (std::isalnum(static_cast<unsigned char>(s_[i_])) || s_[i_] == '_')) ++i_;
      std::string w(s_.substr(start, i_ - start));
      if (w == "true" || w == "false") return {TokKind::Bool, w};
      return {TokKind::Ident, w};
    }
    throw Error(std::string("unexpected '") + c + "' in template action", base_);
  }

 private:
  Token quoted() {
    std::string v;
    ++i_;
    while (i_ < s_.size() && s_[i_] != '"') {
      if (s_[i_] == '\\' && i_ + 1 < s_.size()) {
        char e = s_[++i_];
        switch (e) {
          case 'n': v += '\n'; break;
          case 't': v += '\t'; break;
          case 'r': v += '\r'; break;
          case '\\': v += '\\'; break;
          case '"': v += '"'; break;
          default: v += '\\'; v += e;
        }
        ++i_;
        continue;
      }
      v += s_[i_++];
    }
    if (i_ >= s_.size()) throw Error("unterminated string in template action", base_);
    ++i_;
    return {TokKind::String, v};
  }

  std::string_view s_;
  size_t base_;
  size_t i_ = 0;
};

using Args = std::vector<std::string>;

// Go's text/template allows 10000 levels; Packer templates use two or three.
constexpr int kMaxParenDepth = 100;

class Evaluator {
 public:
  Evaluator(const Context& ctx, std::string_view action, size_t base) : ctx_(ctx), lex_(action, base), base_(base) {
    tok_ = lex_.next();
  }

  std::string run() {
    std::string v = pipeline();
    if (tok_.kind != TokKind::End) fail("unexpected '" + tok_.text + "' in template action");
    return v;
  }

 private:
  [[noreturn]] void fail(const std::string& msg) const { throw Error(msg, base_); }

  void advance() { tok_ = lex_.next(); }

  std::string pipeline() {
    std::optional<std::string> piped;
    while (true) {
      piped = command(piped);
      if (tok_.kind != TokKind::Pipe) break;
      advance();
    }
    return *piped;
  }

  std::string operand() {
    switch (tok_.kind) {
      case TokKind::String:
      case TokKind::Number:
      case TokKind::Bool: {
        std::string v = tok_.text;
        advance();
        return v;
      }
      case TokKind::Field: {
        std::string key = tok_.text;
        advance();
        return field(key);
      }
      case TokKind::LParen: {
        // Each level is a recursion: a bound keeps a deep nest from overflowing the stack.
        if (++paren_depth_ > kMaxParenDepth) {
          fail("parentheses nested deeper than " + std::to_string(kMaxParenDepth) + " in template action");
        }
        advance();
        std::string v = pipeline();
        if (tok_.kind != TokKind::RParen) fail("missing ')' in template action");
        advance();
        --paren_depth_;
        return v;
      }
      case TokKind::Ident: {
        // A function used as an argument without parentheses is called with no arguments.
        std::string name = tok_.text;
        advance();
        return call(name, {});
      }
      default: fail("expected a value in template action");
    }
  }

  std::string command(const std::optional<std::string>& piped) {
    if (tok_.kind == TokKind::Ident) {
      std::string name = tok_.text;
      advance();
      Args args;
      while (tok_.kind != TokKind::End && tok_.kind != TokKind::Pipe && tok_.kind != TokKind::RParen)
        args.push_back(operand());
      if (piped) args.push_back(*piped);
      return call(name, args);
    }
    if (piped) fail("can't give the result of a pipe to a value; only to a function");
    std::string v = operand();
    if (tok_.kind != TokKind::End && tok_.kind != TokKind::Pipe && tok_.kind != TokKind::RParen)
      fail("a value can't be called with arguments");
    return v;
  }

  std::string field(const std::string& key) {
    if (key.empty()) fail("'.' alone is not supported; name a value like {{ .Name }}");
    auto it = ctx_.data.find(key);
    if (it != ctx_.data.end()) return it->second;
    if (ctx_.defer_unknown) throw Deferred{};
    std::vector<std::string> known;
    for (const auto& [k, v] : ctx_.data) known.push_back(k);
    fail("'." + key + "' is not available here" + util::did_you_mean(key, known));
  }

  std::string undefined_user(const std::string& var) const {
    if (ctx_.undefined_users) ctx_.undefined_users->push_back({var, base_});
    return "";
  }

  void arity(const std::string& name, const Args& a, size_t n) const {
    if (a.size() != n)
      fail("function '" + name + "' takes " + std::to_string(n) + " argument" + (n == 1 ? "" : "s") + ", got " +
           std::to_string(a.size()));
  }

  long long integer(const std::string& name, const std::string& v) const {
    try {
      size_t used = 0;
      long long n = std::stoll(v, &used);
      if (used == v.size()) return n;
    } catch (...) {
    }
    fail("function '" + name + "': '" + v + "' is not an integer");
  }

  std::string call(const std::string& name, const Args& a) {
    if (name == "user") {
      arity(name, a, 1);
      if (ctx_.failed_user_vars && ctx_.failed_user_vars->count(a[0])) throw Poisoned(a[0]);
      if (!ctx_.user_vars) {
        if (ctx_.defer_unknown) throw Deferred{};
        if (ctx_.allow_env) fail("variable '" + a[0] + "' is not defined (the template has no variables)");
        return undefined_user(a[0]);
      }
      auto it = ctx_.user_vars->find(a[0]);
      if (it == ctx_.user_vars->end()) {
        // Packer's funcGenUser: an error only while the variables themselves are interpolated.
        if (!ctx_.allow_env) return undefined_user(a[0]);
        std::vector<std::string> names;
        for (const auto& [k, v] : *ctx_.user_vars) names.push_back(k);
        fail("variable '" + a[0] + "' is not defined" + util::did_you_mean(a[0], names));
      }
      return it->second;
    }
    if (name == "env") {
      arity(name, a, 1);
      if (!ctx_.allow_env) fail("{{env}} can only be used in variable defaults (as in Packer); define a variable");
      const char* v = std::getenv(a[0].c_str());
      return v ? v : "";
    }
    if (name == "timestamp") {
      arity(name, a, 0);
      return std::to_string(std::chrono::duration_cast<std::chrono::seconds>(ctx_.now.time_since_epoch()).count());
    }
    if (name == "isotime") {
      if (a.size() > 1) arity(name, a, 1);
      return gotime::format(a.empty() ? "2006-01-02T15:04:05Z07:00" : a[0], ctx_.now);
    }
    if (name == "uuid") {
      arity(name, a, 0);
      return util::uuid_v4();
    }
    if (name == "template_dir") {
      arity(name, a, 0);
      return ctx_.template_dir;
    }
    if (name == "pwd") {
      arity(name, a, 0);
      return std::filesystem::current_path().string();
    }
    if (name == "build_name" || name == "build_type") {
      arity(name, a, 0);
      const std::string& v = name == "build_name" ? ctx_.build_name : ctx_.build_type;
      if (v.empty()) {
        if (ctx_.defer_unknown) throw Deferred{};
        fail("{{" + name + "}} is only known inside a build");
      }
      return v;
    }
    if (name == "packer_version") {
      arity(name, a, 0);
      return kVersion;
    }
    if (name == "lower" || name == "upper") {
      arity(name, a, 1);
      std::string s = a[0];
      for (auto& c : s)
        c = static_cast<char>(name == "lower" ? std::tolower(static_cast<unsigned char>(c))
                                              : std::toupper(static_cast<unsigned char>(c)));
      return s;
    }
    if (name == "replace") {
      // Go: strings.Replace(src, old, new, n) with Packer's argument order (old, new, n, src).
      arity(name, a, 4);
      return replace(a[3], a[0], a[1], integer(name, a[2]));
    }
    if (name == "replace_all") {
      arity(name, a, 3);
      return replace(a[2], a[0], a[1], -1);
    }
    if (name == "split") {
      // Packer: split(src, sep, index) returns the index-th part.
      arity(name, a, 3);
      auto parts = go_split(a[0], a[1]);
      long long i = integer(name, a[2]);
      if (i < 0 || static_cast<size_t>(i) >= parts.size())
        fail("function 'split': index " + a[2] + " out of range (" + std::to_string(parts.size()) + " parts)");
      return parts[static_cast<size_t>(i)];
    }
    if (name == "clean_resource_name") {
      arity(name, a, 1);
      return gotime::clean_resource_name(a[0]);
    }
    if (name == "clean_ami_name") {
      arity(name, a, 1);
      return gotime::clean_ami_name(a[0]);
    }
    fail("unknown template function '" + name + "'" + util::did_you_mean(name, function_names()));
  }

  static std::string replace(const std::string& src, const std::string& from, const std::string& to, long long n) {
    if (n == 0 || from == to) return src;
    std::string out;
    size_t pos = 0;
    long long done = 0;
    if (from.empty()) {
      // Go inserts `to` before each rune and at the end; byte-wise is close enough for ASCII.
      for (char c : src) {
        if (n < 0 || done < n) {
          out += to;
          ++done;
        }
        out += c;
      }
      if (n < 0 || done < n) out += to;
      return out;
    }
    while (n < 0 || done < n) {
      size_t p = src.find(from, pos);
      if (p == std::string::npos) break;
      out.append(src, pos, p - pos);
      out += to;
      pos = p + from.size();
      ++done;
    }
    out.append(src, pos, std::string::npos);
    return out;
  }

  static std::vector<std::string> go_split(const std::string& s, const std::string& sep) {
    std::vector<std::string> out;
    if (sep.empty()) {
      for (char c : s) out.emplace_back(1, c);
      return out;
    }
    size_t start = 0;
    while (true) {
      size_t p = s.find(sep, start);
      if (p == std::string::npos) {
        out.push_back(s.substr(start));
        return out;
      }
      out.push_back(s.substr(start, p - start));
      start = p + sep.size();
    }
  }

  const Context& ctx_;
  Lexer lex_;
  size_t base_;
  Token tok_{TokKind::End, ""};
  int paren_depth_ = 0;  // open parentheses around the current operand
};

// Finds the "}}" closing an action that starts at `from`, skipping string literals.
size_t find_close(std::string_view text, size_t from) {
  size_t i = from;
  while (i + 1 < text.size()) {
    char c = text[i];
    if (c == '"' || c == '`') {
      size_t j = i + 1;
      while (j < text.size() && text[j] != c) {
        if (c == '"' && text[j] == '\\') ++j;
        ++j;
      }
      i = j + 1;
      continue;
    }
    if (c == '}' && text[i + 1] == '}') return i;
    ++i;
  }
  return std::string_view::npos;
}

}  // namespace

const std::vector<std::string>& function_names() {
  static const std::vector<std::string> names = {"user",          "env",
                                                 "timestamp",     "isotime",
                                                 "uuid",          "template_dir",
                                                 "pwd",           "build_name",
                                                 "build_type",    "packer_version",
                                                 "lower",         "upper",
                                                 "replace",       "replace_all",
                                                 "split",         "clean_resource_name",
                                                 "clean_ami_name"};
  return names;
}

std::chrono::system_clock::time_point run_start_time() {
  static const auto start = std::chrono::system_clock::now();
  return start;
}

bool has_actions(std::string_view text) { return text.find("{{") != std::string_view::npos; }

std::string render(std::string_view text, const Context& ctx) {
  std::string out;
  size_t i = 0;
  while (i < text.size()) {
    size_t open = text.find("{{", i);
    if (open == std::string_view::npos) {
      out.append(text.substr(i));
      break;
    }
    size_t literal_start = out.size();  // "{{-" trims template text only, never an action's output
    out.append(text.substr(i, open - i));
    size_t inner = open + 2;
    bool trim_left = false, trim_right = false;
    if (inner + 1 < text.size() && text[inner] == '-' && std::isspace(static_cast<unsigned char>(text[inner + 1]))) {
      trim_left = true;
      ++inner;
    }
    size_t close = find_close(text, inner);
    if (close == std::string_view::npos) throw Error("unclosed action: '{{' without '}}'", open);
    size_t inner_end = close;
    if (inner_end > inner && text[inner_end - 1] == '-' && inner_end - 1 > inner &&
        std::isspace(static_cast<unsigned char>(text[inner_end - 2]))) {
      trim_right = true;
      --inner_end;
    }
    if (trim_left)
      while (out.size() > literal_start && std::isspace(static_cast<unsigned char>(out.back()))) out.pop_back();
    std::string_view action = text.substr(inner, inner_end - inner);
    std::string trimmed = util::trim(action);
    if (trimmed.starts_with("/*")) {
      // {{/* a comment */}}
    } else if (trimmed.empty()) {
      throw Error("empty template action '{{}}'", open);
    } else {
      try {
        out += Evaluator(ctx, action, open).run();
      } catch (const Deferred&) {
        out.append(text.substr(open, close + 2 - open));
      }
      // Variables that each repeat the previous one grow exponentially: 30 of them in a 1 KB
      // template would render gigabytes.
      if (out.size() > kMaxRenderedSize) throw TooLong("{{" + std::string(action) + "}}", open);
    }
    i = close + 2;
    if (trim_right)
      while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i]))) ++i;
  }
  return out;
}

}  // namespace imgbake::interp
