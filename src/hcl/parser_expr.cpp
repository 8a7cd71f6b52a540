// Expressions (hclsyntax parser.go: ParseExpression down to parseExpressionTerm).
#include <array>

#include "parser.h"

namespace imgbake::hcl {

namespace {

struct BinaryOp {
  Tok tok;
  Operator op;
};

// HCL's binary operators by precedence, lowest first; each level is left-associative.
const std::array<std::vector<BinaryOp>, 6>& binary_levels() {
  static const std::array<std::vector<BinaryOp>, 6> levels = {{
      {{Tok::Or, Operator::Or}},
      {{Tok::And, Operator::And}},
      {{Tok::EqualOp, Operator::Equal}, {Tok::NotEqual, Operator::NotEqual}},
      {{Tok::Greater, Operator::Greater},
       {Tok::GreaterEqual, Operator::GreaterEqual},
       {Tok::Less, Operator::Less},
       {Tok::LessEqual, Operator::LessEqual}},
      {{Tok::Plus, Operator::Add}, {Tok::Minus, Operator::Subtract}},
      {{Tok::Star, Operator::Multiply}, {Tok::Slash, Operator::Divide}, {Tok::Percent, Operator::Modulo}},
  }};
  return levels;
}

bool is_keyword(const Token& t, std::string_view word) { return t.type == Tok::Ident && t.text == word; }

ExprPtr placeholder(Range r) {
  auto e = make_expr(Expr::Kind::Literal, r);
  e->value = Value::unknown();
  return e;
}

// Appends a step to a traversal expression, or wraps `from` in a relative traversal.
ExprPtr add_step(ExprPtr from, Traverser step) {
  Range r = step.range;
  if (from->kind == Expr::Kind::ScopeTraversal || from->kind == Expr::Kind::RelativeTraversal) {
    from->traversal.push_back(std::move(step));
    from->range = range_between(from->range, r);
    return from;
  }
  auto t = make_expr(Expr::Kind::RelativeTraversal, range_between(from->range, r));
  t->a = std::move(from);
  t->traversal.push_back(std::move(step));
  return t;
}

}  // namespace

bool Parser::enter(const Range& at) {
  if (++depth_ <= kMaxDepth) return true;
  if (!recovery_)
    error(at, "Nesting too deep",
          "Expressions and blocks may be nested at most " + std::to_string(kMaxDepth) + " deep.");
  recovery_ = true;
  return false;
}

ExprPtr Parser::parse_expression() {
  Range at = peek().range;
  ExprPtr e = enter(at) ? parse_conditional() : placeholder(at);
  --depth_;
  return e;
}

ExprPtr Parser::parse_conditional() {
  Range start = peek().range;
  size_t before = diags_.items().size();
  ExprPtr cond = parse_binary(0);
  if (recovery_ && diags_.items().size() > before) return cond;
  if (peek().type != Tok::Question) return cond;
  read();
  ExprPtr t = parse_expression();
  if (recovery_ && diags_.has_errors()) return cond;
  const Token& colon = peek();
  if (colon.type != Tok::Colon) {
    error(colon.range, "Missing false expression in conditional",
          "The conditional operator (...?...:...) requires a false expression, delimited by a colon.");
    return cond;
  }
  read();
  ExprPtr f = parse_expression();
  auto e = make_expr(Expr::Kind::Conditional, range_between(start, f->range));
  e->a = std::move(cond);
  e->b = std::move(t);
  e->c = std::move(f);
  return e;
}

ExprPtr Parser::parse_binary(size_t level) {
  if (level == binary_levels().size()) return parse_with_traversals();
  ExprPtr lhs = parse_binary(level + 1);
  while (true) {
    const Token& next = peek();
    const BinaryOp* found = nullptr;
    for (const auto& op : binary_levels()[level])
      if (op.tok == next.type) found = &op;
    if (!found) return lhs;
    read();
    ExprPtr rhs = parse_binary(level + 1);
    auto e = make_expr(Expr::Kind::Binary, range_between(lhs->range, rhs->range));
    e->op = found->op;
    e->a = std::move(lhs);
    e->b = std::move(rhs);
    lhs = std::move(e);
  }
}

ExprPtr Parser::parse_with_traversals() { return parse_traversals(parse_term()); }

Value Parser::number_value(const Token& t) {
  auto n = Number::parse(t.text);
  if (!n) {
    error(t.range, "Invalid number literal", "Failed to recognize the value of this number literal.");
    return Value::unknown(Type::number());
  }
  return Value::number(*n);
}

ExprPtr Parser::parse_traversals(ExprPtr from) {
  ExprPtr ret = std::move(from);
  Range from_range = ret->range;
  while (true) {
    const Token& next = peek();
    if (next.type == Tok::Dot) {
      Token dot = read();
      const Token& attr = peek();
      if (attr.type == Tok::Ident) {
        Token a = read();
        ret = add_step(std::move(ret),
                       {Traverser::Kind::Attr, std::string(a.text), {}, range_between(dot.range, a.range)});
      } else if (attr.type == Tok::Number) {
        Token n = read();  // the legacy index syntax: a.0
        if (n.text.find('.') != std::string_view::npos)
          error(n.range, "Invalid legacy index syntax",
                "When using the legacy index syntax, chaining two indexes together is not permitted. Use the proper "
                "index syntax instead, like [0][1].");
        ret =
            add_step(std::move(ret), {Traverser::Kind::Index, {}, number_value(n), range_between(dot.range, n.range)});
      } else if (attr.type == Tok::Star) {
        // The attribute-only splat: a.*.b.c applies .b.c to each element.
        Token star = read();
        Traversal trav;
        Range first = peek().range;
        Range last = star.range;
        while (peek().type == Tok::Dot) {
          Token d = read();
          if (peek().type == Tok::Number) {
            Token n = read();
            trav.push_back({Traverser::Kind::Index, {}, number_value(n), range_between(d.range, n.range)});
            last = n.range;
            continue;
          }
          if (peek().type != Tok::Ident) {
            if (!recovery_) {
              if (peek().type == Tok::Star)
                error(peek().range, "Nested splat expression not allowed",
                      "A splat expression (*) cannot be used inside another attribute-only splat expression.");
              else
                error(peek().range, "Invalid attribute name", "An attribute name is required after a dot.");
            }
            recovery_ = true;
            break;
          }
          Token a = read();
          trav.push_back({Traverser::Kind::Attr, std::string(a.text), {}, range_between(d.range, a.range)});
          last = a.range;
        }
        auto splat = make_expr(Expr::Kind::Splat, range_between(from_range, last));
        Range marker = range_between(dot.range, star.range);
        if (trav.empty()) {
          splat->b = make_expr(Expr::Kind::AnonSymbol, marker);
        } else {
          splat->b = make_expr(Expr::Kind::RelativeTraversal, range_between(first, last));
          splat->b->a = make_expr(Expr::Kind::AnonSymbol, marker);
          splat->b->traversal = std::move(trav);
        }
        splat->a = std::move(ret);
        ret = std::move(splat);
      } else {
        error(attr.range, "Invalid attribute name", "An attribute name is required after a dot.");
        recovery_ = true;
      }
      continue;
    }
    if (next.type == Tok::OBrack) {
      Token open = read();
      if (peek().type == Tok::Star) {
        read();
        Token close = read();
        if (close.type != Tok::CBrack && !recovery_) {
          error(close.range, "Missing close bracket on splat index",
                "The star for a full splat operator must be immediately followed by a closing bracket (\"]\").");
          close = recover(Tok::CBrack);
        }
        ExprPtr each = parse_traversals(make_expr(Expr::Kind::AnonSymbol, range_between(open.range, close.range)));
        auto splat = make_expr(Expr::Kind::Splat, range_between(from_range, each->range));
        splat->a = std::move(ret);
        splat->b = std::move(each);
        ret = std::move(splat);
        continue;
      }
      push_newlines(false);
      size_t before = diags_.items().size();
      ExprPtr key = parse_expression();
      Token close;
      if (recovery_ && diags_.items().size() > before) {
        close = recover(Tok::CBrack);
      } else {
        close = read();
        if (close.type != Tok::CBrack && !recovery_) {
          error(close.range, "Missing close bracket on index",
                "The index operator must end with a closing bracket (\"]\").");
          close = recover(Tok::CBrack);
        }
      }
      pop_newlines();
      Range r = range_between(open.range, close.range);
      bool literal_key =
          key->kind == Expr::Kind::Literal || (key->kind == Expr::Kind::Template && key->items.size() <= 1 &&
                                               (key->items.empty() || key->items[0]->kind == Expr::Kind::Literal));
      if (literal_key) {
        Value k = key->kind == Expr::Kind::Literal ? key->value
                                                   : (key->items.empty() ? Value::string("") : key->items[0]->value);
        ret = add_step(std::move(ret), {Traverser::Kind::Index, {}, k, r});
      } else {
        auto idx = make_expr(Expr::Kind::Index, range_between(from_range, r));
        idx->a = std::move(ret);
        idx->key = std::move(key);
        idx->open_range = open.range;
        ret = std::move(idx);
      }
      continue;
    }
    return ret;
  }
}

ExprPtr Parser::parse_term() {
  const Token& start = peek();
  switch (start.type) {
    case Tok::OParen: {
      Token open = read();
      push_newlines(false);
      size_t before = diags_.items().size();
      ExprPtr inner = parse_expression();
      if (diags_.items().size() > before) {
        recover(Tok::CParen);
        pop_newlines();
        return inner;
      }
      const Token& close = peek();
      if (close.type != Tok::CParen) {
        error(close.range, "Unbalanced parentheses", "Expected a closing parenthesis to terminate the expression.");
        recovery_ = true;
      }
      Token c = read();
      pop_newlines();
      auto e = make_expr(Expr::Kind::Parens, range_between(open.range, c.range));
      e->a = std::move(inner);
      return e;
    }
    case Tok::Number: {
      Token t = read();
      auto e = make_expr(Expr::Kind::Literal, t.range);
      e->value = number_value(t);
      return e;
    }
    case Tok::Ident: {
      Token t = read();
      if (peek().type == Tok::OParen) return finish_call(t);
      auto e = make_expr(Expr::Kind::Literal, t.range);
      if (t.text == "true" || t.text == "false") {
        e->value = Value::boolean(t.text == "true");
      } else if (t.text == "null") {
        e->value = Value::null();
      } else {
        e->kind = Expr::Kind::ScopeTraversal;
        e->traversal.push_back({Traverser::Kind::Root, std::string(t.text), {}, t.range});
      }
      return e;
    }
    case Tok::OQuote:
    case Tok::OHeredoc: return parse_template(read());
    case Tok::Minus:
    case Tok::Bang: {
      Token t = read();
      bool ok = enter(t.range);
      ExprPtr operand = ok ? parse_with_traversals() : placeholder(t.range);
      --depth_;
      auto e = make_expr(Expr::Kind::Unary, range_between(t.range, operand->range));
      e->op = t.type == Tok::Minus ? Operator::Negate : Operator::Not;
      e->a = std::move(operand);
      return e;
    }
    case Tok::OBrack: return parse_tuple();
    case Tok::OBrace: return parse_object();
    default: {
      if (!recovery_) {
        if (start.type == Tok::Eof)
          error(start.range, "Missing expression",
                "Expected the start of an expression, but found the end of the file.");
        else
          error(start.range, "Invalid expression",
                "Expected the start of an expression, but found an invalid expression token.");
      }
      recovery_ = true;
      return placeholder(start.range);
    }
  }
}

ExprPtr Parser::finish_call(const Token& name) {
  Token open = read();
  auto call = make_expr(Expr::Kind::FunctionCall, name.range);
  call->name = std::string(name.text);
  call->open_range = open.range;
  push_newlines(false);
  Token close = open;
  while (true) {
    if (peek().type == Tok::CParen) {
      close = read();
      break;
    }
    size_t before = diags_.items().size();
    call->items.push_back(parse_expression());
    if (recovery_ && diags_.items().size() > before) {
      close = recover(Tok::CParen);
      break;
    }
    Token sep = read();
    if (sep.type == Tok::CParen) {
      close = sep;
      break;
    }
    if (sep.type == Tok::Ellipsis) {
      call->expand_final = true;
      if (peek().type != Tok::CParen) {
        if (!recovery_)
          error(sep.range, "Missing closing parenthesis",
                "An expanded function argument (with ...) must be immediately followed by closing parentheses.");
        close = recover(Tok::CParen);
      } else {
        close = read();
      }
      break;
    }
    if (sep.type != Tok::Comma) {
      if (sep.type == Tok::Eof)
        error(range_between(name.range, open.range), "Unterminated function call",
              "There is no closing parenthesis for this function call before the end of the file. This may be "
              "caused by incorrect parenthesis nesting elsewhere in this file.");
      else
        error(sep.range, "Missing argument separator",
              "A comma is required to separate each function argument from the next.");
      close = recover(Tok::CParen);
      break;
    }
    if (peek().type == Tok::CParen) {
      close = read();
      break;
    }
  }
  pop_newlines();
  call->range = range_between(name.range, close.range);
  return call;
}

ExprPtr Parser::parse_tuple() {
  Token open = read();
  push_newlines(false);
  if (is_keyword(peek(), "for")) {
    ExprPtr f = finish_for(open);
    pop_newlines();
    return f;
  }
  auto tuple = make_expr(Expr::Kind::Tuple, open.range);
  Token close = open;
  while (true) {
    if (peek().type == Tok::CBrack) {
      close = read();
      break;
    }
    size_t before = diags_.items().size();
    tuple->items.push_back(parse_expression());
    if (recovery_ && diags_.items().size() > before) {
      close = recover(Tok::CBrack);
      break;
    }
    const Token& next = peek();
    if (next.type == Tok::CBrack) {
      close = read();
      break;
    }
    if (next.type != Tok::Comma) {
      if (!recovery_ && next.type == Tok::Eof)
        error(open.range, "Unterminated tuple constructor expression",
              "There is no corresponding closing bracket before the end of the file. This may be caused by incorrect "
              "bracket nesting elsewhere in this file.");
      else if (!recovery_)
        error(next.range, "Missing item separator", "Expected a comma to mark the beginning of the next item.");
      close = recover(Tok::CBrack);
      break;
    }
    read();
  }
  pop_newlines();
  tuple->range = range_between(open.range, close.range);
  return tuple;
}

ExprPtr Parser::parse_object() {
  Token open = read();
  push_newlines(false);
  bool is_for = is_keyword(peek(), "for");
  pop_newlines();
  if (is_for) {
    push_newlines(false);
    ExprPtr f = finish_for(open);
    pop_newlines();
    return f;
  }
  push_newlines(true);
  auto obj = make_expr(Expr::Kind::Object, open.range);
  Token close = open;
  const std::string unterminated =
      "There is no corresponding closing brace before the end of the file. This may be caused by incorrect brace "
      "nesting elsewhere in this file.";
  while (true) {
    const Token& next = peek();
    if (next.type == Tok::Newline) {
      read();
      continue;
    }
    if (next.type == Tok::CBrace) {
      close = read();
      break;
    }
    bool force_non_literal = next.type == Tok::OParen;
    size_t before = diags_.items().size();
    ExprPtr key_inner = parse_expression();
    if (recovery_ && diags_.items().size() > before) {
      close = recover(Tok::CBrace);
      break;
    }
    auto key = make_expr(Expr::Kind::ObjectKey, key_inner->range);
    key->a = std::move(key_inner);
    key->group = force_non_literal;
    const Token& sep = peek();
    if (sep.type != Tok::Equal && sep.type != Tok::Colon) {
      if (!recovery_) {
        if (sep.type == Tok::Newline || sep.type == Tok::Comma)
          error(sep.range, "Missing attribute value",
                "Expected an attribute value, introduced by an equals sign (\"=\").");
        else if (sep.type == Tok::Eof)
          error(open.range, "Unterminated object constructor expression", unterminated);
        else
          error(sep.range, "Missing key/value separator",
                "Expected an equals sign (\"=\") to mark the beginning of the attribute value.");
      }
      close = recover(Tok::CBrace);
      break;
    }
    read();
    before = diags_.items().size();
    ExprPtr value = parse_expression();
    if (recovery_ && diags_.items().size() > before) {
      close = recover(Tok::CBrace);
      break;
    }
    obj->keys.push_back(std::move(key));
    obj->items.push_back(std::move(value));
    const Token& after = peek();
    if (after.type == Tok::CBrace) {
      close = read();
      break;
    }
    if (after.type != Tok::Comma && after.type != Tok::Newline) {
      if (!recovery_) {
        if (after.type == Tok::Eof)
          error(open.range, "Unterminated object constructor expression", unterminated);
        else
          error(after.range, "Missing attribute separator",
                "Expected a newline or comma to mark the beginning of the next attribute.");
      }
      close = recover(Tok::CBrace);
      break;
    }
    read();
  }
  pop_newlines();
  obj->range = range_between(open.range, close.range);
  return obj;
}

ExprPtr Parser::finish_for(const Token& open) {
  read();  // "for"
  bool object = open.type == Tok::OBrace;
  Tok close_type = object ? Tok::CBrace : Tok::CBrack;
  auto fail = [&](const std::string& detail) {
    if (!recovery_) error(peek().range, "Invalid 'for' expression", detail);
    Token close = recover(close_type);
    return placeholder(range_between(open.range, close.range));
  };
  auto f = make_expr(Expr::Kind::For, open.range);
  f->object_result = object;
  f->open_range = open.range;
  if (peek().type != Tok::Ident) return fail("For expression requires variable name after 'for'.");
  f->value_var = std::string(read().text);
  if (peek().type == Tok::Comma) {
    read();
    f->key_var = f->value_var;
    if (peek().type != Tok::Ident) return fail("For expression requires value variable name after comma.");
    f->value_var = std::string(read().text);
  }
  if (!is_keyword(peek(), "in")) return fail("For expression requires the 'in' keyword after its name declarations.");
  read();
  size_t before = diags_.items().size();
  f->a = parse_expression();
  if (recovery_ && diags_.items().size() > before) return fail("");
  if (peek().type != Tok::Colon) return fail("For expression requires a colon after the collection expression.");
  read();
  f->b = parse_expression();
  if (peek().type == Tok::FatArrow) {
    read();
    f->key = std::move(f->b);
    f->b = parse_expression();
  }
  if (recovery_ && diags_.items().size() > before) return fail("");
  Range ellipsis;
  if (peek().type == Tok::Ellipsis) {
    ellipsis = read().range;
    f->group = true;
  }
  if (is_keyword(peek(), "if")) {
    read();
    f->c = parse_expression();
    if (recovery_ && diags_.items().size() > before) return fail("");
  }
  Token close;
  if (peek().type == close_type) {
    close = read();
  } else {
    if (!recovery_)
      error(peek().range, "Invalid 'for' expression", "Extra characters after the end of the 'for' expression.");
    close = recover(close_type);
  }
  if (!object) {
    if (f->key) error(f->key->range, "Invalid 'for' expression", "Key expression is not valid when building a tuple.");
    if (f->group)
      error(ellipsis, "Invalid 'for' expression", "Grouping ellipsis (...) cannot be used when building a tuple.");
  } else if (!f->key) {
    error(f->b->range, "Invalid 'for' expression", "Key expression is required when building an object.");
  }
  f->range = range_between(open.range, close.range);
  return f;
}

}  // namespace imgbake::hcl
