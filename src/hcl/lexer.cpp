#include "lexer.h"

#include "utf8.h"

namespace imgbake::hcl {

namespace {

bool is_ident_start(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c >= 0x80;
}
bool is_ident_char(unsigned char c) { return is_ident_start(c) || (c >= '0' && c <= '9') || c == '-'; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }

class Scanner {
 public:
  explicit Scanner(std::string_view src) : src_(src) {}

  std::vector<Token> run(bool template_mode) {
    frames_.push_back({template_mode ? Frame::Heredoc : Frame::Normal, 0, {}, false});
    line_start_ = template_mode;
    while (true) {
      Frame& f = frames_.back();
      if (f.kind == Frame::Normal) {
        if (!normal()) break;
      } else if (f.kind == Frame::Quoted) {
        if (!quoted()) break;
      } else if (!heredoc()) {
        break;
      }
    }
    emit(Tok::Eof, pos_);
    return std::move(out_);
  }

 private:
  struct Frame {
    enum Kind { Normal, Quoted, Heredoc } kind;
    int depth;                // braces open inside a template sequence
    std::string_view marker;  // a heredoc's
    bool sequence;            // a Normal frame opened by `${` or `%{`
  };

  std::string_view src_;
  Pos pos_;
  std::vector<Frame> frames_;
  std::vector<Token> out_;
  bool line_start_ = false;  // in a heredoc: at the start of a line

  bool at_end() const { return pos_.byte >= static_cast<int>(src_.size()); }
  char peek(int k = 0) const {
    size_t i = static_cast<size_t>(pos_.byte) + static_cast<size_t>(k);
    return i < src_.size() ? src_[i] : '\0';
  }
  bool starts_with(std::string_view s) const { return src_.substr(static_cast<size_t>(pos_.byte)).starts_with(s); }
  void advance() {
    unsigned char c = static_cast<unsigned char>(src_[static_cast<size_t>(pos_.byte)]);
    ++pos_.byte;
    if (c == '\n') {
      ++pos_.line;
      pos_.column = 1;
    } else if ((c & 0xC0) != 0x80) {
      ++pos_.column;  // characters, not bytes: UTF-8 continuation bytes do not move the column
    }
  }
  void advance(int n) {
    for (int i = 0; i < n; ++i) advance();
  }
  // Whether a digit or an exponent starts at peek(k): what may follow a dot in a number.
  bool continues_number(int k) const {
    char d = peek(k);
    if (is_digit(d)) return true;
    if (d != 'e' && d != 'E') return false;
    char n = peek(k + 1);
    return is_digit(n) || ((n == '+' || n == '-') && is_digit(peek(k + 2)));
  }

  // The length of the identifier character at peek(k) (0 if there is none): ASCII letters,
  // digits, '_' and '-', and Unicode's ID_Start/ID_Continue characters (as hclsyntax).
  int ident_char(int k, bool start) const {
    auto c = static_cast<unsigned char>(peek(k));
    if (c < 0x80) return (start ? is_ident_start(c) : is_ident_char(c)) ? 1 : 0;
    size_t len = 0;
    uint32_t cp = utf8_decode(src_, static_cast<size_t>(pos_.byte) + static_cast<size_t>(k), len);
    return utf8_is_identifier(cp, start) ? static_cast<int>(len) : 0;
  }

  // Past one character (all the bytes of a UTF-8 sequence).
  void advance_char() {
    size_t len = 1;
    if (static_cast<unsigned char>(peek()) >= 0x80) utf8_decode(src_, static_cast<size_t>(pos_.byte), len);
    advance(static_cast<int>(len));
  }

  // In template text: whether a template sequence ("${", "%{") or bad UTF-8 ends the literal here.
  bool literal_ends() const {
    char c = peek();
    if ((c == '$' || c == '%') && peek(1) == '{') return true;
    return bad_utf8();
  }

  // Past one character of template text, or past "$${" / "%%{" (escapes, not sequences).
  void advance_literal() {
    char c = peek();
    if ((c == '$' || c == '%') && peek(1) == c && peek(2) == '{')
      advance(3);
    else
      advance_char();
  }

  // Whether the byte here starts no valid UTF-8 sequence.
  bool bad_utf8() const {
    if (static_cast<unsigned char>(peek()) < 0x80) return false;
    size_t len = 0;
    return utf8_decode(src_, static_cast<size_t>(pos_.byte), len) == 0xFFFD && len == 1;
  }

  void emit(Tok t, Pos start, bool strip = false) {
    Token tok;
    tok.type = t;
    tok.range = {start, pos_};
    tok.text = src_.substr(static_cast<size_t>(start.byte), static_cast<size_t>(pos_.byte - start.byte));
    tok.strip = strip;
    out_.push_back(tok);
  }

  void open_sequence(Tok t) {
    Pos start = pos_;
    advance(2);
    bool strip = peek() == '~';
    if (strip) advance();
    emit(t, start, strip);
    frames_.push_back({Frame::Normal, 0, {}, true});
  }

  // One token in normal mode; false at the end of the input.
  bool normal() {
    while (!at_end() && (peek() == ' ' || peek() == '\t' || peek() == '\r')) advance();
    if (at_end()) return false;
    Pos start = pos_;
    char c = peek();
    Frame& f = frames_.back();
    if (c == '\n') {
      advance();
      emit(Tok::Newline, start);
    } else if (c == '#' || (c == '/' && peek(1) == '/')) {
      while (!at_end() && peek() != '\n') advance();
      if (!at_end()) {
        Pos nl = pos_;
        advance();
        emit(Tok::Newline, nl);  // a line comment ends its line like a newline
      }
    } else if (c == '/' && peek(1) == '*' &&
               src_.find("*/", static_cast<size_t>(pos_.byte) + 2) != std::string_view::npos) {
      // A comment (an unclosed "/*" is no comment: it scans as "/" and "*", as in hclsyntax).
      advance(2);
      while (!starts_with("*/")) advance();
      advance(2);
    } else if (is_digit(c)) {
      // As hclsyntax's scanner: digits, dots and exponents in any order, not ending in a dot
      // ("1.e3" is a number; "a.0.1" is told apart by the parser).
      int n = 1;
      while (true) {
        char d = peek(n);
        if (is_digit(d)) {
          ++n;
        } else if (d == '.' && continues_number(n + 1)) {
          ++n;
        } else if ((d == 'e' || d == 'E') && is_digit(peek(n + 1))) {
          n += 2;
        } else if ((d == 'e' || d == 'E') && (peek(n + 1) == '+' || peek(n + 1) == '-') && is_digit(peek(n + 2))) {
          n += 3;
        } else {
          break;
        }
      }
      advance(n);
      emit(Tok::Number, start);
    } else if (int n = ident_char(0, true); n > 0) {
      advance(n);
      while (!at_end() && (n = ident_char(0, false)) > 0) advance(n);
      emit(Tok::Ident, start);
    } else if (c == '"') {
      advance();
      emit(Tok::OQuote, start);
      frames_.push_back({Frame::Quoted, 0, {}, false});
    } else if (starts_with("<<") && heredoc_start()) {
      // heredoc_start emitted the token
    } else if ((f.sequence && f.depth == 0 && c == '}') || (c == '~' && peek(1) == '}')) {
      bool strip = c == '~';
      advance(strip ? 2 : 1);
      emit(Tok::TemplateSeqEnd, start, strip);
      if (f.sequence && f.depth == 0) frames_.pop_back();
    } else {
      operator_token(c, start);
    }
    return true;
  }

  void operator_token(char c, Pos start) {
    struct Op {
      std::string_view text;
      Tok tok;
    };
    static const Op ops[] = {
        {"...", Tok::Ellipsis}, {"=>", Tok::FatArrow},     {"==", Tok::EqualOp}, {"!=", Tok::NotEqual},
        {"<=", Tok::LessEqual}, {">=", Tok::GreaterEqual}, {"&&", Tok::And},     {"||", Tok::Or},
        {"{", Tok::OBrace},     {"}", Tok::CBrace},        {"[", Tok::OBrack},   {"]", Tok::CBrack},
        {"(", Tok::OParen},     {")", Tok::CParen},        {",", Tok::Comma},    {".", Tok::Dot},
        {"*", Tok::Star},       {"/", Tok::Slash},         {"%", Tok::Percent},  {"+", Tok::Plus},
        {"-", Tok::Minus},      {"?", Tok::Question},      {":", Tok::Colon},    {"=", Tok::Equal},
        {"<", Tok::Less},       {">", Tok::Greater},       {"!", Tok::Bang},
    };
    for (const auto& op : ops) {
      if (!starts_with(op.text)) continue;
      advance(static_cast<int>(op.text.size()));
      if (op.tok == Tok::OBrace) ++frames_.back().depth;
      if (op.tok == Tok::CBrace && frames_.back().depth > 0) --frames_.back().depth;
      emit(op.tok, start);
      return;
    }
    // Not a token: one character (or "**"), which the parser reports (check_invalid_tokens).
    size_t len = 1;
    if (c == '*' && peek(1) == '*')
      len = 2;
    else if (static_cast<unsigned char>(c) >= 0x80)
      utf8_decode(src_, static_cast<size_t>(pos_.byte), len);
    advance(static_cast<int>(len));
    emit(Tok::Invalid, start);
  }

  // `<<EOF` or `<<-EOF` and the newline after it.
  bool heredoc_start() {
    int k = 2;
    bool flush = peek(k) == '-';
    if (flush) ++k;
    if (!is_ident_start(static_cast<unsigned char>(peek(k)))) return false;
    int m = k;
    while (is_ident_char(static_cast<unsigned char>(peek(m)))) ++m;
    int nl = m;
    if (peek(nl) == '\r') ++nl;
    if (peek(nl) != '\n') return false;
    Pos start = pos_;
    std::string_view marker =
        src_.substr(static_cast<size_t>(pos_.byte) + static_cast<size_t>(k), static_cast<size_t>(m - k));
    advance(nl + 1);
    emit(Tok::OHeredoc, start);
    out_.back().text = marker;
    out_.back().flush = flush;
    frames_.push_back({Frame::Heredoc, 0, marker, false});
    line_start_ = true;
    return true;
  }

  // Literal text of a quoted string up to `"`, `${`, `%{` or the end of the line.
  bool quoted() {
    Pos start = pos_;
    while (!at_end()) {
      char c = peek();
      if (c == '"' || c == '\n') break;
      if (c == '\\' && pos_.byte + 1 < static_cast<int>(src_.size()) && peek(1) != '\n') {
        advance();
        if (!bad_utf8()) advance_char();
        continue;
      }
      if (literal_ends()) break;
      advance_literal();
    }
    if (pos_.byte > start.byte) emit(Tok::QuotedLit, start);
    if (at_end()) return false;  // the parser reports the missing quote at the end of the file
    if (bad_utf8()) {
      Pos b = pos_;
      advance();
      emit(Tok::Invalid, b);
      return true;
    }
    if (peek() == '\n') {
      // A quoted string may not span lines: the newline is a token of its own that the parser
      // reports, and the string goes on (as in hclsyntax, so recovery ends where HCL's does).
      Pos here = pos_;
      advance();
      emit(Tok::Unterminated, here);
      return true;
    }
    if (peek() == '"') {
      Pos q = pos_;
      advance();
      emit(Tok::CQuote, q);
      frames_.pop_back();
      return true;
    }
    open_sequence(peek() == '$' ? Tok::TemplateInterp : Tok::TemplateControl);
    return true;
  }

  bool heredoc() {
    Frame f = frames_.back();
    if (at_end()) {
      if (!f.marker.empty()) emit(Tok::Unterminated, pos_);
      return false;
    }
    if (line_start_ && !f.marker.empty()) {
      // The closing marker: alone on its line, after optional indentation.
      int k = 0;
      while (peek(k) == ' ' || peek(k) == '\t') ++k;
      if (src_.substr(static_cast<size_t>(pos_.byte) + static_cast<size_t>(k)).starts_with(f.marker)) {
        int e = k + static_cast<int>(f.marker.size());
        char after = peek(e);
        // As hashicorp/hcl, the marker's line must end with a newline (not the end of the file).
        if (after == '\n' || after == '\r') {
          Pos start = pos_;
          advance(e);
          emit(Tok::CHeredoc, start);
          frames_.pop_back();
          line_start_ = false;
          return true;
        }
      }
    }
    Pos start = pos_;
    line_start_ = false;
    while (!at_end()) {
      char c = peek();
      if (literal_ends()) break;
      advance_literal();
      if (c == '\n') {
        line_start_ = true;
        break;
      }
    }
    if (pos_.byte > start.byte) emit(Tok::StringLit, start);
    if (!line_start_ && !at_end() && bad_utf8()) {
      Pos b = pos_;
      advance();
      emit(Tok::Invalid, b);
      return true;
    }
    if (!line_start_ && !at_end()) open_sequence(peek() == '$' ? Tok::TemplateInterp : Tok::TemplateControl);
    return true;
  }
};

}  // namespace

std::vector<Token> scan_tokens(std::string_view src, bool template_mode) { return Scanner(src).run(template_mode); }

}  // namespace imgbake::hcl
