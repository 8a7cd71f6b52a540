// The recursive-descent parser of HCL's native syntax, after hclsyntax's parser.go: the same
// grammar, the same error recovery, and diagnostics at the same source ranges (HCL's
// specification tests check them).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "imgbake/hcl_ast.h"
#include "lexer.h"

namespace imgbake::hcl {

class Parser {
 public:
  Parser(std::string_view src, std::string file, Diagnostics& diags, bool template_mode = false);

  // A body up to `end` (Tok::Eof for a file, Tok::CBrace inside a block).
  Body parse_body(Tok end);
  ExprPtr parse_expression();
  // The whole input as a template (as a heredoc's content, without the markers).
  ExprPtr parse_template_file();
  bool at_eof() { return peek().type == Tok::Eof; }
  const Token& peek();
  void push_newlines(bool include) { newlines_.push_back(include); }

 private:
  std::string_view src_;
  std::string file_;
  Diagnostics& diags_;
  std::vector<Token> toks_;
  size_t next_ = 0;
  std::vector<bool> newlines_{true};
  bool recovery_ = false;
  int depth_ = 0;  // nested expressions and blocks: deep enough for any template, short of the stack's end
  static constexpr int kMaxDepth = 400;
  // Counts one level of nesting; false (after a diagnostic) when it is one too many.
  bool enter(const Range& at);

  size_t next_index();
  Token read();
  Range prev_range() const;
  void pop_newlines() { newlines_.pop_back(); }
  void error(Range subject, std::string summary, std::string detail);
  void check_invalid_tokens();
  Token recover(Tok end);
  void recover_after_body_item();

  // parser_body.cpp
  bool parse_body_item(Body& body);
  Body parse_single_attr_body();
  Attribute finish_attribute(const Token& ident, bool single_line);
  void finish_block(const Token& ident, Body& parent);
  std::string parse_quoted_label(Range& range);

  // parser_expr.cpp
  ExprPtr parse_conditional();
  ExprPtr parse_binary(size_t level);
  ExprPtr parse_with_traversals();
  ExprPtr parse_traversals(ExprPtr from);
  ExprPtr parse_term();
  ExprPtr finish_call(const Token& name);
  ExprPtr parse_tuple();
  ExprPtr parse_object();
  ExprPtr finish_for(const Token& open);
  Value number_value(const Token& t);

  // parser_template.cpp
  struct TemplatePart;
  ExprPtr parse_template(const Token& open);
  std::vector<TemplatePart> template_parts(Tok closer, bool flush);
  ExprPtr finish_template(std::vector<TemplatePart>& parts, const Range& whole);
  ExprPtr build_template(std::vector<TemplatePart>& parts, size_t& i, const Range& whole, bool inner);
  std::string decode_literal(const Token& t, bool quoted);
};

}  // namespace imgbake::hcl
