// Bodies, attributes and blocks (hclsyntax parser.go: ParseBody and what it calls).
#include "parser.h"

namespace imgbake::hcl {

Parser::Parser(std::string_view src, std::string file, Diagnostics& diags, bool template_mode)
    : src_(src), file_(std::move(file)), diags_(diags), toks_(scan_tokens(src, template_mode)) {
  check_invalid_tokens();
}

// Characters that are no token, reported before any parse error (hclsyntax's
// checkInvalidTokens), at most a few times each.
void Parser::check_invalid_tokens() {
  int bitwise = 0;
  int exponent = 0;
  int backtick = 0;
  int apostrophe = 0;
  int semicolon = 0;
  int bad_utf8 = 0;
  for (const Token& t : toks_) {
    if (t.type == Tok::Unterminated && t.range.end.line > t.range.start.line)
      error(t.range, "Invalid multi-line string",
            "Quoted strings may not be split over multiple lines. To produce a multi-line string, either use the \\n "
            "escape to represent a newline character or use the \"heredoc\" multi-line template syntax.");
    if (t.type != Tok::Invalid) continue;
    std::string_view c = t.text;
    if (c == "&" || c == "|" || c == "^" || c == "~") {
      if (bitwise++ < 4) {
        std::string suggestion = c == "&"   ? " Did you mean boolean AND (\"&&\")?"
                                 : c == "|" ? " Did you mean boolean OR (\"||\")?"
                                 : c == "~" ? " Did you mean boolean NOT (\"!\")?"
                                            : "";
        error(t.range, "Unsupported operator", "Bitwise operators are not supported." + suggestion);
      }
    } else if (c == "**") {
      if (exponent++ < 1)
        error(t.range, "Unsupported operator",
              "\"**\" is not a supported operator. Exponentiation is not supported as an operator.");
    } else if (c == "`") {
      if (backtick % 2 == 0)
        error(t.range, "Invalid character",
              "The \"`\" character is not valid. To create a multi-line string, use the \"heredoc\" syntax, like "
              "\"<<EOT\".");
      if (backtick <= 2) ++backtick;
    } else if (c == "'") {
      if (apostrophe % 2 == 0)
        error(t.range, "Invalid character", "Single quotes are not valid. Use double quotes (\") to enclose strings.");
      if (apostrophe <= 2) ++apostrophe;
    } else if (c == ";") {
      if (semicolon++ < 1)
        error(t.range, "Invalid character",
              "The \";\" character is not valid. Use newlines to separate arguments and blocks, and commas to "
              "separate items in collection values.");
    } else if (c.size() == 1 && static_cast<unsigned char>(c[0]) >= 0x80) {
      if (bad_utf8++ < 1)
        error(t.range, "Invalid character encoding",
              "All input files must be UTF-8 encoded. Ensure that UTF-8 encoding is selected in your editor.");
    } else if (c == "\u201C" || c == "\u201D") {
      error(t.range, "Invalid character",
            "\"Curly quotes\" are not valid here. These can sometimes be inadvertently introduced when sharing code "
            "via documents or discussion forums. It might help to replace the character with a \"straight quote\".");
    } else {
      error(t.range, "Invalid character", "This character is not used within the language.");
    }
  }
}

size_t Parser::next_index() {
  size_t i = next_;
  while (i + 1 < toks_.size() && toks_[i].type == Tok::Newline && !newlines_.back()) ++i;
  return i;
}

const Token& Parser::peek() { return toks_[next_index()]; }

Token Parser::read() {
  size_t i = next_index();
  if (i + 1 < toks_.size())
    next_ = i + 1;
  else
    next_ = i;
  return toks_[i];
}

Range Parser::prev_range() const {
  if (next_ == 0) return toks_[0].range;
  return toks_[next_ - 1].range;
}

void Parser::error(Range subject, std::string summary, std::string detail) {
  diags_.error(file_, subject, std::move(summary), std::move(detail));
}

namespace {
Tok opposite(Tok t) {
  switch (t) {
    case Tok::OBrace: return Tok::CBrace;
    case Tok::OBrack: return Tok::CBrack;
    case Tok::OParen: return Tok::CParen;
    case Tok::OQuote: return Tok::CQuote;
    case Tok::OHeredoc: return Tok::CHeredoc;
    case Tok::CBrace: return Tok::OBrace;
    case Tok::CBrack: return Tok::OBrack;
    case Tok::CParen: return Tok::OParen;
    case Tok::CQuote: return Tok::OQuote;
    case Tok::CHeredoc: return Tok::OHeredoc;
    case Tok::TemplateInterp:
    case Tok::TemplateControl: return Tok::TemplateSeqEnd;
    case Tok::TemplateSeqEnd: return Tok::TemplateInterp;
    default: return Tok::Invalid;
  }
}
}  // namespace

Token Parser::recover(Tok end) {
  Tok start = opposite(end);
  recovery_ = true;
  int nest = 0;
  while (true) {
    Token t = read();
    Tok ty = t.type;
    if (end == Tok::TemplateSeqEnd && ty == Tok::TemplateControl) ty = Tok::TemplateInterp;
    if (ty == start) {
      ++nest;
    } else if (ty == end) {
      if (nest < 1) return t;
      --nest;
    } else if (ty == Tok::Eof) {
      return t;
    }
  }
}

void Parser::recover_after_body_item() {
  recovery_ = true;
  std::vector<Tok> open;
  while (true) {
    Token t = read();
    switch (t.type) {
      case Tok::Newline:
        if (open.empty()) return;
        break;
      case Tok::Eof: return;
      case Tok::OBrace:
      case Tok::OBrack:
      case Tok::OParen:
      case Tok::OQuote:
      case Tok::OHeredoc:
      case Tok::TemplateInterp:
      case Tok::TemplateControl: open.push_back(t.type); break;
      case Tok::CBrace:
      case Tok::CBrack:
      case Tok::CParen:
      case Tok::CQuote:
      case Tok::CHeredoc: {
        Tok opener = opposite(t.type);
        while (!open.empty() && open.back() != opener) open.pop_back();
        if (!open.empty()) open.pop_back();
        break;
      }
      case Tok::TemplateSeqEnd:
        while (!open.empty() && open.back() != Tok::TemplateInterp && open.back() != Tok::TemplateControl)
          open.pop_back();
        if (!open.empty()) open.pop_back();
        break;
      default: break;
    }
  }
}

Body Parser::parse_body(Tok end) {
  Body body;
  if (!enter(prev_range())) {
    --depth_;
    body.range = prev_range();
    recover(end);
    return body;
  }
  struct Leave {
    int& depth;
    ~Leave() { --depth; }
  } leave{depth_};
  Range start = prev_range();
  Range end_range = start;
  while (true) {
    const Token& next = peek();
    if (next.type == end) {
      end_range = read().range;
      break;
    }
    if (next.type == Tok::Newline) {
      read();
      continue;
    }
    if (next.type == Tok::Ident) {
      parse_body_item(body);
      continue;
    }
    Token bad = read();
    if (!recovery_) {
      if (bad.type == Tok::OQuote)
        error(bad.range, "Invalid argument name", "Argument names must not be quoted.");
      else if (bad.type == Tok::Eof && end == Tok::CBrace)
        error(start, "Unclosed configuration block",
              "There is no closing brace for this block before the end of the file. This may be caused by "
              "incorrect brace nesting elsewhere in this file.");
      else if (bad.type == Tok::Eof)
        error(start, "Unclosed configuration body", "Found end of file before the end of this configuration body.");
      else
        error(bad.range, "Argument or block definition required", "An argument or block definition is required here.");
    }
    end_range = prev_range();
    recover(end);
    break;
  }
  body.range = range_between(start, end_range);
  return body;
}

bool Parser::parse_body_item(Body& body) {
  Token ident = read();
  const Token& next = peek();
  if (next.type == Tok::Equal) {
    Attribute attr = finish_attribute(ident, false);
    if (const Attribute* existing = body.attribute(attr.name)) {
      error(attr.name_range, "Attribute redefined",
            "The argument \"" + attr.name + "\" was already set at " + file_ + ":" +
                std::to_string(existing->name_range.start.line) + "," +
                std::to_string(existing->name_range.start.column) + ". Each argument may be set only once.");
    } else {
      body.attributes.push_back(std::move(attr));
    }
    return true;
  }
  if (next.type == Tok::OQuote || next.type == Tok::OBrace || next.type == Tok::Ident) {
    finish_block(ident, body);
    return true;
  }
  recover_after_body_item();
  error(ident.range, "Argument or block definition required",
        "An argument or block definition is required here. To set an argument, use the equals sign \"=\" to "
        "introduce the argument value.");
  return false;
}

Attribute Parser::finish_attribute(const Token& ident, bool single_line) {
  read();  // "="
  Attribute attr;
  attr.name = std::string(ident.text);
  attr.name_range = ident.range;
  size_t before = diags_.items().size();
  attr.expr = parse_expression();
  bool failed = diags_.items().size() > before;
  Range end_range = prev_range();
  if (recovery_ && failed) {
    recover_after_body_item();
  } else if (!single_line) {
    const Token& end = peek();
    if (end.type != Tok::Newline && end.type != Tok::Eof) {
      if (!recovery_) {
        if (end.type == Tok::Comma)
          error(end.range, "Unexpected comma after argument",
                "Argument definitions must be separated by newlines, not commas. An argument definition must end "
                "with a newline.");
        else
          error(end.range, "Missing newline after argument", "An argument definition must end with a newline.");
      }
      end_range = prev_range();
      recover_after_body_item();
    } else {
      read();
    }
  }
  attr.range = range_between(ident.range, end_range);
  return attr;
}

Body Parser::parse_single_attr_body() {
  Token ident = read();
  Body body;
  if (ident.type != Tok::Ident) {
    recover_after_body_item();
    error(ident.range, "Argument or block definition required", "An argument or block definition is required here.");
    return body;
  }
  const Token& next = peek();
  if (next.type == Tok::Equal) {
    body.attributes.push_back(finish_attribute(ident, true));
    body.range = body.attributes.back().range;
    return body;
  }
  Range r = range_between(ident.range, next.range);
  recover_after_body_item();
  if (next.type == Tok::OQuote || next.type == Tok::OBrace || next.type == Tok::Ident)
    error(r, "Argument definition required",
          "A single-line block definition can contain only a single argument. If you meant to define argument \"" +
              std::string(ident.text) +
              "\", use an equals sign to assign it a value. To define a nested block, place it on a line of its own "
              "within its parent block.");
  else
    error(ident.range, "Argument or block definition required",
          "An argument or block definition is required here. To set an argument, use the equals sign \"=\" to "
          "introduce the argument value.");
  return body;
}

std::string Parser::parse_quoted_label(Range& range) {
  Token open = read();
  std::string out;
  Range end = open.range;
  while (true) {
    const Token& t = peek();
    if (t.type == Tok::QuotedLit) {
      out += decode_literal(read(), true);
      end = t.range;
      continue;
    }
    if (t.type == Tok::CQuote) {
      end = read().range;
      break;
    }
    if (t.type == Tok::TemplateInterp || t.type == Tok::TemplateControl) {
      error(t.range, "Invalid string literal",
            "Template sequences are not allowed in this string. To include a literal \"$\" or \"%\", double it "
            "(as \"$$\" or \"%%\") to escape it.");
      read();
      recover(Tok::TemplateSeqEnd);
      continue;
    }
    if (t.type == Tok::Eof) {
      error(t.range, "Unterminated string literal",
            "Unable to find the closing quote mark before the end of the file.");
      end = t.range;
    } else {
      error(t.range, "Invalid string literal", "This item is not valid in a string literal.");
      end = recover(Tok::CQuote).range;
    }
    break;
  }
  range = range_between(open.range, end);
  return out;
}

void Parser::finish_block(const Token& ident, Body& parent) {
  Block block;
  block.type = std::string(ident.text);
  block.type_range = ident.range;
  Token obrace;
  while (true) {
    const Token& t = peek();
    if (t.type == Tok::OBrace) {
      obrace = read();
      break;
    }
    if (t.type == Tok::OQuote) {
      Range r;
      block.labels.push_back(parse_quoted_label(r));
      block.label_ranges.push_back(r);
      continue;
    }
    if (t.type == Tok::Ident) {
      Token l = read();
      block.labels.emplace_back(l.text);
      block.label_ranges.push_back(l.range);
      continue;
    }
    if (t.type == Tok::Equal)
      error(t.range, "Invalid block definition",
            "The equals sign \"=\" indicates an argument definition, and must not be used when defining a block.");
    else if (t.type == Tok::Newline)
      error(t.range, "Invalid block definition",
            "A block definition must have block content delimited by \"{\" and \"}\", starting on the same line as "
            "the block header.");
    else if (!recovery_)
      error(t.range, "Invalid block definition",
            "Either a quoted string block label or an opening brace (\"{\") is expected here.");
    recover_after_body_item();
    // The block is kept (empty), as hashicorp/hcl keeps it, so later checks still see it.
    block.body = std::make_unique<Body>();
    block.body->range = ident.range;
    parent.blocks.push_back(std::move(block));
    return;
  }
  block.open_brace_range = obrace.range;
  Body body;
  Tok nt = peek().type;
  if (nt == Tok::Newline || nt == Tok::Eof || nt == Tok::CBrace) {
    body = parse_body(Tok::CBrace);
  } else {
    body = parse_single_attr_body();
    const Token& after = peek();
    if (after.type == Tok::CBrace) {
      read();
    } else if (after.type == Tok::Comma) {
      error(after.range, "Invalid single-argument block definition",
            "Single-line block syntax can include only one argument definition. To define multiple arguments, use "
            "the multi-line block syntax with one argument definition per line.");
      recover(Tok::CBrace);
    } else if (after.type == Tok::Newline) {
      error(after.range, "Invalid single-argument block definition",
            "An argument definition on the same line as its containing block creates a single-line block "
            "definition, which must also be closed on the same line. Place the block's closing brace immediately "
            "after the argument definition.");
      recover(Tok::CBrace);
    } else {
      if (!recovery_) {
        if (after.type == Tok::Eof)
          error(obrace.range, "Unclosed configuration block",
                "There is no closing brace for this block before the end of the file. This may be caused by "
                "incorrect brace nesting elsewhere in this file.");
        else
          error(after.range, "Invalid single-argument block definition",
                "A single-line block definition must end with a closing brace immediately after its single "
                "argument definition.");
      }
      recover(Tok::CBrace);
    }
  }
  block.close_brace_range = prev_range();
  const Token& eol = peek();
  if (eol.type == Tok::Newline || eol.type == Tok::Eof) {
    read();
  } else {
    if (!recovery_)
      error(eol.range, "Missing newline after block definition", "A block definition must end with a newline.");
    recover_after_body_item();
  }
  block.body = std::make_unique<Body>(std::move(body));
  parent.blocks.push_back(std::move(block));
}

}  // namespace imgbake::hcl
