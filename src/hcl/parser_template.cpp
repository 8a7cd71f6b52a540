// Quoted strings, heredocs and template directives (hclsyntax parser_template.go): the
// template's tokens become parts (literals, interpolations, directive markers), strip
// markers and flush-heredoc indentation are applied, then the parts nest into a tree.
#include <climits>

#include "parser.h"
#include "quote.h"
#include "utf8.h"

namespace imgbake::hcl {

struct Parser::TemplatePart {
  enum class Kind { Literal, Interp, If, Else, EndIf, For, EndFor, End };
  Kind kind = Kind::Literal;
  std::string text;
  Range range;
  ExprPtr expr;
  std::string key_var, value_var;
};

std::string Parser::decode_literal(const Token& t, bool quoted) {
  std::string out;
  std::string_view s = t.text;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if ((c == '$' || c == '%') && i + 2 < s.size() && s[i + 1] == c && s[i + 2] == '{') {
      out += c;
      out += '{';
      i += 2;
      continue;
    }
    if (c != '\\' || !quoted) {
      out += c;
      continue;
    }
    char e = i + 1 < s.size() ? s[i + 1] : '\0';
    auto bad = [&](const std::string& detail) {
      // The escape's own position: quoted literals hold no newlines, so count characters.
      Pos p = t.range.start;
      for (size_t k = 0; k < i; ++k) {
        ++p.byte;
        if ((static_cast<unsigned char>(s[k]) & 0xC0) != 0x80) ++p.column;
      }
      Pos end = p;
      end.byte += 2;
      end.column += 2;
      error(Range{p, end}, "Invalid escape sequence", detail);
    };
    switch (e) {
      case 'n':
        out += '\n';
        ++i;
        break;
      case 'r':
        out += '\r';
        ++i;
        break;
      case 't':
        out += '\t';
        ++i;
        break;
      case '"':
        out += '"';
        ++i;
        break;
      case '\\':
        out += '\\';
        ++i;
        break;
      case 'u':
      case 'U': {
        size_t n = e == 'u' ? 4 : 8;
        uint32_t cp = 0;
        bool ok = i + 2 + n <= s.size();
        for (size_t k = 0; ok && k < n; ++k) {
          char h = s[i + 2 + k];
          int v = (h >= '0' && h <= '9')   ? h - '0'
                  : (h >= 'a' && h <= 'f') ? h - 'a' + 10
                  : (h >= 'A' && h <= 'F') ? h - 'A' + 10
                                           : -1;
          if (v < 0) ok = false;
          cp = cp * 16 + static_cast<uint32_t>(v < 0 ? 0 : v);
        }
        if (!ok || cp > 0x10FFFF) {
          bad("The \\" + std::string(1, e) + " escape sequence must be followed by " + std::to_string(n) +
              " hexadecimal digits naming a Unicode character.");
          i += 1;
          break;
        }
        out += utf8_encode(cp);
        i += 1 + n;
        break;
      }
      default:
        bad("The symbol \"" + std::string(1, e) + "\" is not a valid escape sequence selector.");
        ++i;
        break;
    }
  }
  return out;
}

namespace {

std::string trim_left_space(const std::string& s) {
  size_t i = 0;
  while (i < s.size()) {
    size_t n = 0;
    if (!utf8_is_space(s, i, n)) break;
    i += n;
  }
  return s.substr(i);
}

std::string trim_right_space(const std::string& s) {
  size_t end = s.size();
  while (end > 0) {
    size_t start = end - 1;
    while (start > 0 && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) --start;
    size_t n = 0;
    if (!utf8_is_space(s, start, n) || start + n != end) break;
    end = start;
  }
  return s.substr(0, end);
}

// Counts leading whitespace characters (not bytes) and their byte length.
size_t leading_space_chars(const std::string& s, size_t& bytes) {
  size_t chars = 0;
  bytes = 0;
  size_t n = 0;
  while (bytes < s.size() && utf8_is_space(s, bytes, n)) {
    bytes += n;
    ++chars;
  }
  return chars;
}

}  // namespace

std::vector<Parser::TemplatePart> Parser::template_parts(Tok closer, bool flush) {
  using K = TemplatePart::Kind;
  std::vector<TemplatePart> parts;
  bool ltrim_next = false;
  bool next_can_trim_prev = false;
  while (true) {
    Token next = read();
    if (next.type == closer || next.type == Tok::Eof || next.type == Tok::Unterminated) {
      if (next.type != closer && !recovery_) {
        if (closer == Tok::CHeredoc)
          error(next.range, "Unterminated template string", "No closing marker was found for the heredoc.");
        else
          error(next.range, "Unterminated template string", "No closing marker was found for the string.");
      }
      // The rest of the string (after a newline in it) is skipped up to its closing quote.
      if (next.type == Tok::Unterminated) next = recover(closer);
      TemplatePart end;
      end.kind = K::End;
      end.range = next.range;
      parts.push_back(std::move(end));
      break;
    }
    bool ltrim = ltrim_next;
    ltrim_next = false;
    bool can_trim_prev = next_can_trim_prev;
    next_can_trim_prev = false;
    if (next.type == Tok::QuotedLit || next.type == Tok::StringLit) {
      TemplatePart lit;
      lit.text = decode_literal(next, next.type == Tok::QuotedLit);
      if (ltrim) lit.text = trim_left_space(lit.text);
      lit.range = next.range;
      parts.push_back(std::move(lit));
      next_can_trim_prev = true;
      continue;
    }
    if (next.type != Tok::TemplateInterp && next.type != Tok::TemplateControl) {
      // Something that cannot be in a template (bad UTF-8): the rest of it is skipped.
      if (!recovery_) error(next.range, "Unterminated template string", "No closing marker was found for the string.");
      next = recover(closer);
      TemplatePart end;
      end.kind = K::End;
      end.range = next.range;
      parts.push_back(std::move(end));
      break;
    }
    if (next.strip && can_trim_prev && !parts.empty() && parts.back().kind == K::Literal)
      parts.back().text = trim_right_space(parts.back().text);
    push_newlines(false);
    TemplatePart part;
    std::string keyword;  // of a directive
    if (next.type == Tok::TemplateInterp) {
      part.kind = K::Interp;
      part.expr = parse_expression();
    } else {
      const Token& kw = peek();
      std::string word = kw.type == Tok::Ident ? std::string(kw.text) : std::string();
      keyword = word;
      if (word == "if") {
        read();
        part.kind = K::If;
        part.expr = parse_expression();
      } else if (word == "else" || word == "endif" || word == "endfor") {
        read();
        part.kind = word == "else" ? K::Else : (word == "endif" ? K::EndIf : K::EndFor);
      } else if (word == "for") {
        read();
        part.kind = K::For;
        bool ok = peek().type == Tok::Ident;
        if (ok) part.value_var = std::string(read().text);
        if (ok && peek().type == Tok::Comma) {
          read();
          part.key_var = part.value_var;
          ok = peek().type == Tok::Ident;
          if (ok) part.value_var = std::string(read().text);
        }
        ok = ok && peek().type == Tok::Ident && peek().text == "in";
        if (!ok) {
          if (!recovery_)
            error(peek().range, "Invalid 'for' directive",
                  "A for directive is written %{for NAME in COLLECTION} or %{for KEY, VALUE in COLLECTION}.");
          recover(Tok::TemplateSeqEnd);
          pop_newlines();
          continue;
        }
        read();
        part.expr = parse_expression();
      } else {
        if (!recovery_)
          error(kw.range, word.empty() ? "Invalid template directive" : "Invalid template control keyword",
                word.empty() ? "A template directive keyword (\"if\", \"for\", etc) is expected at the beginning of a "
                               "%{ sequence."
                             : "\"" + word + "\" is not a valid template control keyword.");
        recover(Tok::TemplateSeqEnd);
        pop_newlines();
        continue;
      }
    }
    const Token& close = peek();
    if (close.type != Tok::TemplateSeqEnd) {
      if (!recovery_) {
        if (close.type == Tok::Eof)
          error(next.range, "Unclosed template interpolation sequence",
                "There is no closing brace for this interpolation sequence before the end of the file.");
        else if (next.type == Tok::TemplateControl)
          error(close.range, "Extra characters in " + keyword + " marker",
                "Expected a closing brace to end the sequence, but found extra characters.");
        else
          error(close.range, "Extra characters after interpolation expression",
                "Expected a closing brace to end the interpolation expression, but found extra characters. If this "
                "is an embedded sequence for another language, escape it by starting with \"$${\" instead of just "
                "\"${\".");
      }
      recover(Tok::TemplateSeqEnd);
    } else {
      Token c = read();
      ltrim_next = c.strip;
    }
    pop_newlines();
    part.range = range_between(next.range, prev_range());
    parts.push_back(std::move(part));
  }
  if (flush) {
    // A flush heredoc (<<-) loses the indentation common to its lines: whitespace characters
    // at the start of each line's first literal; blank lines do not count.
    size_t min_spaces = SIZE_MAX;
    bool newline = true;
    std::vector<size_t> adjust;
    for (size_t i = 0; i < parts.size(); ++i) {
      auto& p = parts[i];
      if (newline) {
        newline = false;
        size_t spaces = SIZE_MAX;
        if (p.kind == K::Literal) {
          size_t bytes = 0;
          size_t chars = leading_space_chars(p.text, bytes);
          if (!(bytes == p.text.size() && !p.text.empty() && p.text.back() == '\n')) {
            spaces = chars;
            adjust.push_back(i);
          }
        } else if (p.kind == K::End) {
          break;
        } else {
          spaces = 0;
        }
        min_spaces = std::min(min_spaces, spaces);
      }
      if (p.kind == K::Literal && !p.text.empty() && p.text.back() == '\n') newline = true;
    }
    for (size_t i : adjust) {
      std::string& t = parts[i].text;
      size_t at = 0;
      size_t n = 0;
      for (size_t k = 0; k < min_spaces && at < t.size() && utf8_is_space(t, at, n); ++k) at += n;
      t.erase(0, at);
    }
  }
  return parts;
}

ExprPtr Parser::build_template(std::vector<TemplatePart>& parts, size_t& i, const Range& whole, bool inner) {
  using K = TemplatePart::Kind;
  auto tmpl = make_expr(Expr::Kind::Template, whole);
  while (i < parts.size()) {
    TemplatePart& p = parts[i];
    if (p.kind == K::End) {
      if (inner) return tmpl;  // the caller reports the missing end directive
      break;
    }
    if (p.kind == K::Else || p.kind == K::EndIf || p.kind == K::EndFor) {
      if (inner) return tmpl;
      error(p.range,
            std::string("Unexpected ") + (p.kind == K::Else ? "else" : (p.kind == K::EndIf ? "endif" : "endfor")) +
                " directive",
            "The control directives within this template are unbalanced.");
      ++i;
      continue;
    }
    ++i;
    if (p.kind == K::Literal) {
      auto lit = make_expr(Expr::Kind::Literal, p.range);
      lit->value = Value::string(std::move(p.text));
      tmpl->items.push_back(std::move(lit));
    } else if (p.kind == K::Interp) {
      tmpl->items.push_back(std::move(p.expr));
    } else {
      bool is_if = p.kind == K::If;
      auto directive = make_expr(is_if ? Expr::Kind::TemplateIf : Expr::Kind::TemplateFor, p.range);
      directive->a = std::move(p.expr);
      directive->key_var = p.key_var;
      directive->value_var = p.value_var;
      directive->b = build_template(parts, i, p.range, true);
      if (is_if && i < parts.size() && parts[i].kind == K::Else) {
        ++i;
        directive->c = build_template(parts, i, p.range, true);
      }
      K want = is_if ? K::EndIf : K::EndFor;
      if (i < parts.size() && parts[i].kind == want) {
        directive->range = range_between(p.range, parts[i].range);
        ++i;
      } else {
        Range at = i < parts.size() ? parts[i].range : whole;
        std::string name = is_if ? "if" : "for";
        if (i < parts.size() && parts[i].kind != K::End) {
          error(at, "Unexpected directive",
                "Expecting an end" + name + " directive for the " + name + " started at " + file_ + ":" +
                    std::to_string(p.range.start.line) + "," + std::to_string(p.range.start.column) + ".");
          ++i;
        } else {
          error(at, "Unexpected end of template",
                "The " + name + " directive at " + file_ + ":" + std::to_string(p.range.start.line) + "," +
                    std::to_string(p.range.start.column) + " is missing its corresponding end" + name + " directive.");
        }
      }
      tmpl->items.push_back(std::move(directive));
    }
  }
  return tmpl;
}

ExprPtr Parser::finish_template(std::vector<TemplatePart>& parts, const Range& whole) {
  // "${x}" alone (parts: the interpolation and the end) is x itself, not converted to a string.
  if (parts.size() == 2 && parts[0].kind == TemplatePart::Kind::Interp) {
    auto wrap = make_expr(Expr::Kind::TemplateWrap, whole);
    wrap->a = std::move(parts[0].expr);
    return wrap;
  }
  size_t i = 0;
  return build_template(parts, i, whole, false);
}

ExprPtr Parser::parse_template(const Token& open) {
  Tok closer = open.type == Tok::OQuote ? Tok::CQuote : Tok::CHeredoc;
  auto parts = template_parts(closer, open.flush);
  return finish_template(parts, range_between(open.range, prev_range()));
}

ExprPtr Parser::parse_template_file() {
  auto parts = template_parts(Tok::Eof, false);
  return finish_template(parts, Range{Pos{}, toks_.back().range.end});
}

std::string quote_string(std::string_view s) {
  std::string out = "\"";
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '$':
      case '%':
        out += c;
        if (i + 1 < s.size() && s[i + 1] == '{') out += c;
        break;
      default: out += c;
    }
  }
  return out + "\"";
}

}  // namespace imgbake::hcl
