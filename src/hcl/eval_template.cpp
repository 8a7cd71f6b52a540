// Templates, template directives and for expressions (hclsyntax expression_template.go and
// ForExpr).
#include "eval_internal.h"

namespace imgbake::hcl {

Value evaluate(const Expr& e, const EvalContext& ctx, Diagnostics& diags, const std::string& file) {
  Evaluator ev(file, diags);
  return ev.eval(e, ctx);
}

bool Evaluator::template_append(const Expr& part, const EvalContext& ctx, std::string& out, bool& unknown) {
  if (part.kind == Expr::Kind::TemplateIf) {
    auto b = eval_as(*part.a, ctx, Type::boolean(), "Invalid template if condition",
                     "The result of the condition expression must not be null.",
                     "The condition expression must be of type bool.");
    if (!b) {
      unknown = true;
      return false;
    }
    if (!b->is_known()) {
      unknown = true;
      return true;
    }
    const ExprPtr& branch = b->as_bool() ? part.b : part.c;
    if (!branch) return true;
    for (const auto& p : branch->items)
      if (!template_append(*p, ctx, out, unknown)) return false;
    return true;
  }
  if (part.kind == Expr::Kind::TemplateFor) {
    Value coll = eval(*part.a, ctx);
    if (!coll.is_known()) {
      unknown = true;
      return true;
    }
    return for_each(part, coll, ctx, [&](const EvalContext& child, const Value&) {
      for (const auto& p : part.b->items)
        if (!template_append(*p, child, out, unknown)) return false;
      return true;
    });
  }
  Value v = eval(part, ctx);
  if (v.is_null()) {
    fail(part.range, "Invalid template interpolation value",
         "The expression result is null. Cannot include a null value in a string template.");
    unknown = true;
    return false;
  }
  if (!v.is_known()) {
    unknown = true;
    return true;
  }
  std::string why;
  auto s = convert(v, Type::string(), &why);
  if (!s) {
    fail(part.range, "Invalid template interpolation value",
         "Cannot include the given value in a string template: string required.");
    unknown = true;
    return false;
  }
  out += s->as_string();
  return true;
}

Value Evaluator::template_expr(const Expr& e, const EvalContext& ctx) {
  std::string out;
  bool unknown = false;
  if (e.kind == Expr::Kind::Template) {
    for (const auto& p : e.items) template_append(*p, ctx, out, unknown);
  } else {
    template_append(e, ctx, out, unknown);
  }
  if (unknown) return Value::unknown(Type::string());
  return Value::string(std::move(out));
}

bool Evaluator::for_each(const Expr& e, const Value& coll, const EvalContext& ctx,
                         const std::function<bool(const EvalContext&, const Value& key)>& body) {
  if (coll.is_null()) {
    fail(e.a->range, "Iteration over null value",
         "A null value cannot be used as the collection in a 'for' expression.");
    return false;
  }
  const Type::Kind k = coll.type().kind();
  EvalContext child;
  child.parent = &ctx;
  if (k == Type::Kind::Map || k == Type::Kind::Object) {
    for (const auto& [key, v] : coll.attributes()) {
      if (!e.key_var.empty()) child.variables[e.key_var] = Value::string(key);
      child.variables[e.value_var] = v;
      if (!body(child, Value::string(key))) return false;
    }
    return true;
  }
  if (k == Type::Kind::List || k == Type::Kind::Tuple || k == Type::Kind::Set) {
    for (size_t i = 0; i < coll.elements().size(); ++i) {
      const Value& v = coll.elements()[i];
      Value key = k == Type::Kind::Set ? v : Value::number(Number(static_cast<int64_t>(i)));
      if (!e.key_var.empty()) child.variables[e.key_var] = key;
      child.variables[e.value_var] = v;
      if (!body(child, key)) return false;
    }
    return true;
  }
  fail(e.a->range, "Iteration over non-iterable value",
       "A value of type " + coll.type().friendly_name() + " cannot be used as the collection in a 'for' expression.");
  return false;
}

Value Evaluator::for_expr(const Expr& e, const EvalContext& ctx) {
  Value coll = eval(*e.a, ctx);
  if (!coll.is_known()) return Value::unknown();
  std::vector<Value> items;
  std::map<std::string, Value> attrs;
  std::map<std::string, std::vector<Value>> groups;
  bool unknown = false;
  bool ok = for_each(e, coll, ctx, [&](const EvalContext& child, const Value&) {
    if (e.c) {
      auto b = eval_as(*e.c, child, Type::boolean(), "Invalid 'for' condition",
                       "The value of the 'if' clause must not be null.",
                       "The 'if' clause value is invalid: a bool is required.");
      if (!b) return false;
      if (!b->is_known()) {
        unknown = true;
        return true;
      }
      if (!b->as_bool()) return true;
    }
    Value v = eval(*e.b, child);
    if (!e.object_result) {
      items.push_back(std::move(v));
      return true;
    }
    if (!e.key) return false;  // the parser reported it
    auto ks = eval_as(*e.key, child, Type::string(), "Invalid object key",
                      "Key expression in 'for' expression must not produce a null value.",
                      "The key expression produced an invalid result: string required.");
    if (!ks) return false;
    if (!ks->is_known()) {
      unknown = true;
      return true;
    }
    const std::string& key = ks->as_string();
    if (e.group) {
      groups[key].push_back(std::move(v));
      return true;
    }
    if (attrs.count(key)) {
      fail(e.key->range, "Duplicate object key",
           "Two different items produced the key \"" + key +
               "\" in this 'for' expression. If duplicates are expected, use the ellipsis (...) after the value "
               "expression to enable grouping by key.");
      return false;
    }
    attrs.emplace(key, std::move(v));
    return true;
  });
  if (!ok || unknown) return Value::unknown();
  if (!e.object_result) return Value::tuple(std::move(items));
  if (e.group)
    for (auto& [key, vals] : groups) attrs.emplace(key, Value::tuple(std::move(vals)));
  return Value::object(std::move(attrs));
}

}  // namespace imgbake::hcl
