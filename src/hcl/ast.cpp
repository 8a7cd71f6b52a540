#include "imgbake/hcl_ast.h"

namespace imgbake::hcl {

ExprPtr make_expr(Expr::Kind kind, Range range) {
  auto e = std::make_unique<Expr>();
  e->kind = kind;
  e->range = range;
  return e;
}

const char* operator_symbol(Operator op) {
  switch (op) {
    case Operator::Or: return "||";
    case Operator::And: return "&&";
    case Operator::Not: return "!";
    case Operator::Equal: return "==";
    case Operator::NotEqual: return "!=";
    case Operator::Less: return "<";
    case Operator::LessEqual: return "<=";
    case Operator::Greater: return ">";
    case Operator::GreaterEqual: return ">=";
    case Operator::Add: return "+";
    case Operator::Subtract: return "-";
    case Operator::Multiply: return "*";
    case Operator::Divide: return "/";
    case Operator::Modulo: return "%";
    case Operator::Negate: return "-";
  }
  return "?";
}

const Attribute* Body::attribute(const std::string& name) const {
  for (const auto& a : attributes)
    if (a.name == name) return &a;
  return nullptr;
}

Range start_range(const Expr& e) {
  using K = Expr::Kind;
  auto first_char = [](const Range& r) {
    Range out{r.start, r.start};
    ++out.end.column;
    ++out.end.byte;
    return out;
  };
  switch (e.kind) {
    case K::FunctionCall: return Range{e.range.start, e.open_range.end};
    case K::Conditional:
    case K::Binary:
    case K::ObjectKey: return start_range(*e.a);
    case K::Index: return e.open_range;
    case K::Tuple:
    case K::Object:
    case K::For:
    case K::Unary: return first_char(e.range);
    case K::Template: return e.items.empty() ? e.range : start_range(*e.items.front());
    default: return e.range;
  }
}

namespace {
void collect(const Expr& e, std::vector<std::string>& bound, std::vector<Traversal>& out) {
  auto visit = [&](const ExprPtr& child) {
    if (child) collect(*child, bound, out);
  };
  if (e.kind == Expr::Kind::ScopeTraversal) {
    const std::string& root = e.traversal.front().name;
    for (const auto& b : bound)
      if (b == root) return;
    out.push_back(e.traversal);
    return;
  }
  if (e.kind == Expr::Kind::For || e.kind == Expr::Kind::TemplateFor) {
    visit(e.a);  // the collection is outside the loop's scope
    size_t mark = bound.size();
    if (!e.key_var.empty()) bound.push_back(e.key_var);
    bound.push_back(e.value_var);
    visit(e.key);
    visit(e.b);
    visit(e.c);
    bound.resize(mark);
    return;
  }
  visit(e.a);
  visit(e.key);
  visit(e.b);
  visit(e.c);
  for (size_t i = 0; i < e.items.size(); ++i) {
    if (i < e.keys.size()) visit(e.keys[i]);
    visit(e.items[i]);
  }
}
}  // namespace

std::vector<Traversal> variables(const Expr& e) {
  std::vector<std::string> bound;
  std::vector<Traversal> out;
  collect(e, bound, out);
  return out;
}

}  // namespace imgbake::hcl
