// HCL native syntax tokens (hclsyntax's scanner): one pass over the file that follows the
// nesting of quoted templates, heredocs and template sequences (`${ … }`, `%{ … }`), so the
// parser sees one token stream with arbitrary lookahead.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "imgbake/hcl_diagnostic.h"

namespace imgbake::hcl {

enum class Tok {
  Ident,
  Number,
  OQuote,
  CQuote,
  QuotedLit,
  OHeredoc,
  CHeredoc,
  StringLit,
  TemplateInterp,
  TemplateControl,
  TemplateSeqEnd,
  OBrace,
  CBrace,
  OBrack,
  CBrack,
  OParen,
  CParen,
  Comma,
  Dot,
  Ellipsis,
  Star,
  Slash,
  Percent,
  Plus,
  Minus,
  Question,
  Colon,
  Equal,
  EqualOp,
  NotEqual,
  Less,
  LessEqual,
  Greater,
  GreaterEqual,
  And,
  Or,
  Bang,
  FatArrow,
  Newline,
  Eof,
  Invalid,
  Unterminated
};

struct Token {
  Tok type = Tok::Eof;
  std::string_view text;  // the bytes; for OHeredoc the marker
  Range range;
  bool strip = false;  // `${~`, `%{~` (strip before) and `~}` (strip after)
  bool flush = false;  // `<<-`
};

// `template_mode`: the whole input is a template's content (as between heredoc markers).
std::vector<Token> scan_tokens(std::string_view src, bool template_mode = false);

}  // namespace imgbake::hcl
