// Operators (hclsyntax expression_ops.go, cty's stdlib operator functions).
#include "eval_internal.h"

namespace imgbake::hcl {

Value values_equal(const Value& a, const Value& b) {
  if (!a.is_known() || !b.is_known()) return Value::unknown(Type::boolean());
  if (a.is_null() || b.is_null()) return Value::boolean(a.is_null() && b.is_null());
  if (a.type() != b.type()) return Value::boolean(false);
  const Type::Kind k = a.type().kind();
  if (a.type().is_primitive()) return Value::boolean(raw_equals(a, b));
  bool unknown = false;
  if (k == Type::Kind::Map || k == Type::Kind::Object) {
    if (a.attributes().size() != b.attributes().size()) return Value::boolean(false);
    for (const auto& [key, v] : a.attributes()) {
      auto it = b.attributes().find(key);
      if (it == b.attributes().end()) return Value::boolean(false);
      Value eq = values_equal(v, it->second);
      if (!eq.is_known())
        unknown = true;
      else if (!eq.as_bool())
        return Value::boolean(false);
    }
  } else {
    if (a.elements().size() != b.elements().size()) return Value::boolean(false);
    for (size_t i = 0; i < a.elements().size(); ++i) {
      Value eq = values_equal(a.elements()[i], b.elements()[i]);
      if (!eq.is_known())
        unknown = true;
      else if (!eq.as_bool())
        return Value::boolean(false);
    }
  }
  return unknown ? Value::unknown(Type::boolean()) : Value::boolean(true);
}

Value Evaluator::binary(const Expr& e, const EvalContext& ctx) {
  Value lhs = eval(*e.a, ctx);
  Value rhs = eval(*e.b, ctx);
  Operator op = e.op;
  if (op == Operator::Equal || op == Operator::NotEqual) {
    Value eq = values_equal(lhs, rhs);
    if (!eq.is_known() || op == Operator::Equal) return eq;
    return Value::boolean(!eq.as_bool());
  }
  bool logical = op == Operator::And || op == Operator::Or;
  Type want = logical ? Type::boolean() : Type::number();
  bool comparison =
      op == Operator::Less || op == Operator::LessEqual || op == Operator::Greater || op == Operator::GreaterEqual;
  Type result = logical || comparison ? Type::boolean() : Type::number();
  auto operand = [&](const Value& v, const Expr& x, const char* side) -> std::optional<Value> {
    std::string why;
    auto c = convert(v, want, &why);
    if (c && c->is_null()) why = want.kind() == Type::Kind::Bool ? "a bool is required" : "a number is required";
    if (!c || c->is_null()) {
      fail(x.range, "Invalid operand", std::string("Unsuitable value for ") + side + " operand: " + why + ".");
      return std::nullopt;
    }
    return c;
  };
  auto l = operand(lhs, *e.a, "left");
  auto r = operand(rhs, *e.b, "right");
  if (!l || !r) return Value::unknown(result);
  if (!l->is_known() || !r->is_known()) return Value::unknown(result);
  if (logical) return Value::boolean(op == Operator::And ? l->as_bool() && r->as_bool() : l->as_bool() || r->as_bool());
  const Number& a = l->as_number();
  const Number& b = r->as_number();
  switch (op) {
    case Operator::Less: return Value::boolean(compare(a, b) < 0);
    case Operator::LessEqual: return Value::boolean(compare(a, b) <= 0);
    case Operator::Greater: return Value::boolean(compare(a, b) > 0);
    case Operator::GreaterEqual: return Value::boolean(compare(a, b) >= 0);
    case Operator::Add: return Value::number(a + b);
    case Operator::Subtract: return Value::number(a - b);
    case Operator::Multiply: return Value::number(a * b);
    case Operator::Divide:
      if ((a.is_zero() && b.is_zero()) || (a.is_infinite() && b.is_infinite()))
        return fail(e.range, "Operation failed",
                    "Error during operation: can't divide zero by zero or infinity by infinity.");
      return Value::number(a / b);
    case Operator::Modulo: return Value::number(a % b);
    default: break;
  }
  return Value::unknown(result);
}

Value Evaluator::unary(const Expr& e, const EvalContext& ctx) {
  Value v = eval(*e.a, ctx);
  bool negate = e.op == Operator::Negate;
  Type want = negate ? Type::number() : Type::boolean();
  std::string why;
  auto c = convert(v, want, &why);
  if (c && c->is_null()) why = negate ? "a number is required" : "a bool is required";
  if (!c || c->is_null())
    return fail(e.a->range, "Invalid operand", "Unsuitable value for unary operand: " + why + ".");
  if (!c->is_known()) return Value::unknown(want);
  return negate ? Value::number(-c->as_number()) : Value::boolean(!c->as_bool());
}

}  // namespace imgbake::hcl
