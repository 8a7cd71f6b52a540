// Expression evaluation (hclsyntax expression.go, expression_ops.go, expression_template.go).
#include "imgbake/hcl_eval.h"

#include "eval_internal.h"

namespace imgbake::hcl {

const Value* EvalContext::variable(const std::string& name) const {
  for (const EvalContext* c = this; c; c = c->parent) {
    auto it = c->variables.find(name);
    if (it != c->variables.end()) return &it->second;
  }
  return nullptr;
}

const Function* EvalContext::function(const std::string& name) const {
  for (const EvalContext* c = this; c; c = c->parent) {
    auto it = c->functions.find(name);
    if (it != c->functions.end()) return &it->second;
  }
  return nullptr;
}

Value Evaluator::fail(const Range& r, std::string summary, std::string detail) {
  diags_.error(file_, r, std::move(summary), std::move(detail));
  return Value::unknown();
}

std::optional<Value> Evaluator::eval_as(const Expr& e, const EvalContext& ctx, const Type& want, const char* summary,
                                        const char* null_detail, const char* type_detail) {
  Value v = eval(e, ctx);
  auto c = v.is_null() ? std::nullopt : convert(v, want);
  if (!c) fail(e.range, summary, v.is_null() ? null_detail : type_detail);
  return c;
}

Value Evaluator::apply(Value v, const Traversal& t, size_t from) {
  for (size_t i = from; i < t.size(); ++i) {
    std::string summary;
    std::string error;
    auto next = traverse(v, t[i], summary, error);
    if (!next) return fail(t[i].range, summary, error);
    v = std::move(*next);
  }
  return v;
}

Value Evaluator::eval(const Expr& e, const EvalContext& ctx) {
  using K = Expr::Kind;
  if (!e.deferred.empty()) {
    for (const auto& d : e.deferred) diags_.add(d);
    return Value::unknown();
  }
  switch (e.kind) {
    case K::Literal: return e.value;
    case K::Parens:
    case K::TemplateWrap: return eval(*e.a, ctx);
    case K::ScopeTraversal: {
      const std::string& root = e.traversal.front().name;
      const Value* v = ctx.variable(root);
      if (!v)
        return fail(e.traversal.front().range, "Unknown variable", "There is no variable named \"" + root + "\".");
      return apply(*v, e.traversal, 1);
    }
    case K::RelativeTraversal: return apply(eval(*e.a, ctx), e.traversal, 0);
    case K::AnonSymbol: return splat_items_.empty() ? Value::unknown() : splat_items_.back();
    case K::Index: {
      Value coll = eval(*e.a, ctx);
      Value key = eval(*e.key, ctx);
      Traverser step{Traverser::Kind::Index, {}, key, e.key->range};
      std::string summary;
      std::string error;
      auto v = traverse(coll, step, summary, error);
      if (!v) return fail(Range{e.open_range.start, e.range.end}, summary, error);
      return *v;
    }
    case K::Splat: return splat(e, ctx);
    case K::FunctionCall: return call(e, ctx);
    case K::Conditional: return conditional(e, ctx);
    case K::Binary: return binary(e, ctx);
    case K::Unary: return unary(e, ctx);
    case K::Tuple: {
      std::vector<Value> items;
      for (const auto& i : e.items) items.push_back(eval(*i, ctx));
      return Value::tuple(std::move(items));
    }
    case K::Object: return object(e, ctx);
    case K::ObjectKey: return eval(*e.a, ctx);
    case K::For: return for_expr(e, ctx);
    case K::Template:
    case K::TemplateIf:
    case K::TemplateFor: return template_expr(e, ctx);
  }
  return Value::unknown();
}

Value Evaluator::splat(const Expr& e, const EvalContext& ctx) {
  Value source = eval(*e.a, ctx);
  if (source.is_null()) return Value::tuple({});  // a null source is an empty tuple
  if (!source.is_known()) return Value::unknown();
  const Type::Kind k = source.type().kind();
  bool sequence = k == Type::Kind::List || k == Type::Kind::Set || k == Type::Kind::Tuple;
  // A single value is treated as a one-element tuple (HCL's splat on a non-sequence).
  std::vector<Value> in = sequence ? source.elements() : std::vector<Value>{source};
  std::vector<Value> out;
  for (const auto& item : in) {
    splat_items_.push_back(item);
    out.push_back(eval(*e.b, ctx));
    splat_items_.pop_back();
  }
  if (k == Type::Kind::List || k == Type::Kind::Set) {
    auto u = unify(types_of(out));
    if (u) {
      std::vector<Value> conv;
      conv.reserve(out.size());
      for (const auto& v : out) conv.push_back(convert(v, *u).value_or(v));
      return Value::list(std::move(conv), out.empty() ? Type() : *u);
    }
  }
  return Value::tuple(std::move(out));
}

Value Evaluator::call(const Expr& e, const EvalContext& ctx) {
  const Function* f = ctx.function(e.name);
  if (!f) {
    std::string detail = "There is no function named \"" + e.name + "\".";
    return fail(e.range, "Call to unknown function", detail);
  }
  if (f->lazy != Function::Lazy::None) return lazy_call(e, ctx, f->lazy);
  std::vector<Value> args;
  std::vector<Range> ranges;
  for (size_t i = 0; i < e.items.size(); ++i) {
    Value v = eval(*e.items[i], ctx);
    if (e.expand_final && i + 1 == e.items.size()) {
      const Type::Kind k = v.type().kind();
      if (!v.is_known()) return Value::unknown(f->result_type);
      if (v.is_null() || (k != Type::Kind::List && k != Type::Kind::Set && k != Type::Kind::Tuple))
        return fail(e.items[i]->range, "Invalid expanding argument value",
                    "The expanding argument (indicated by ...) must be of a tuple, list, or set type.");
      for (const auto& el : v.elements()) {
        args.push_back(el);
        ranges.push_back(start_range(*e.items[i]));
      }
      continue;
    }
    args.push_back(std::move(v));
    ranges.push_back(start_range(*e.items[i]));
  }
  if (args.size() < f->params.size()) {
    const auto& missing = f->params[args.size()];
    return fail(e.range, "Not enough function arguments",
                "Function \"" + e.name + "\" expects " + std::to_string(f->params.size()) +
                    " argument(s). Missing value for \"" + missing.name + "\".");
  }
  if (args.size() > f->params.size() && !f->variadic)
    return fail(ranges[f->params.size()], "Too many function arguments",
                "Function \"" + e.name + "\" expects only " + std::to_string(f->params.size()) + " argument(s).");
  bool any_unknown = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const Function::Param& p = i < f->params.size() ? f->params[i] : *f->variadic;
    if (args[i].is_null() && !p.allow_null)
      return fail(ranges[i], "Invalid function argument",
                  "Invalid value for \"" + p.name + "\" parameter: argument must not be null.");
    std::string why;
    auto c = convert(args[i], p.type, &why);
    if (!c)
      return fail(ranges[i], "Invalid function argument",
                  "Invalid value for \"" + p.name + "\" parameter: " + why + ".");
    if (!c->is_wholly_known() && !p.allow_unknown) any_unknown = true;
    args[i] = std::move(*c);
  }
  if (any_unknown) return Value::unknown(f->result_type);
  try {
    return f->impl(args);
  } catch (const FunctionError& err) {
    if (err.argument >= 0 && static_cast<size_t>(err.argument) < ranges.size()) {
      const Function::Param& p = static_cast<size_t>(err.argument) < f->params.size()
                                     ? f->params[static_cast<size_t>(err.argument)]
                                     : *f->variadic;
      return fail(ranges[static_cast<size_t>(err.argument)], "Invalid function argument",
                  "Invalid value for \"" + p.name + "\" parameter: " + err.what() + ".");
    }
    return fail(e.range, "Error in function call", "Call to function \"" + e.name + "\" failed: " + err.what() + ".");
  }
}

// try(a, b, ...): the first argument that evaluates without an error; can(a): whether `a` does.
// An unknown argument makes the result unknown (it might fail later), as in hcl's tryfunc.
Value Evaluator::lazy_call(const Expr& e, const EvalContext& ctx, Function::Lazy kind) {
  bool is_try = kind == Function::Lazy::Try;
  if (e.items.empty())
    return fail(e.range, "Not enough function arguments", "Function \"" + e.name + "\" expects at least one argument.");
  if (!is_try && e.items.size() > 1)
    return fail(start_range(*e.items[1]), "Too many function arguments",
                "Function \"can\" expects only 1 argument(s).");
  if (e.expand_final)
    return fail(e.range, "Invalid expanding argument value", "try and can do not take an expanded (...) argument.");
  std::string first_error;
  for (const auto& item : e.items) {
    Diagnostics local;
    Evaluator sub(file_, local);
    Value v = sub.eval(*item, ctx);
    if (!local.has_errors()) {
      if (!v.is_wholly_known()) return Value::unknown(is_try ? Type() : Type::boolean());
      return is_try ? v : Value::boolean(true);
    }
    if (first_error.empty())
      for (const auto& d : local.items())
        if (d.severity == Diagnostic::Severity::Error) {
          first_error = d.summary + (d.detail.empty() ? "" : ": " + d.detail);
          break;
        }
  }
  if (!is_try) return Value::boolean(false);
  return fail(e.range, "Error in function call",
              "Call to function \"try\" failed: no expression succeeded; the first one said: " + first_error);
}

Value Evaluator::conditional(const Expr& e, const EvalContext& ctx) {
  Value cond = eval(*e.a, ctx);
  Value t = eval(*e.b, ctx);
  Value f = eval(*e.c, ctx);
  auto result_type = unify({t.type(), f.type()});
  if (!result_type)
    return fail(range_between(e.b->range, e.c->range), "Inconsistent conditional result types",
                "The true and false result expressions must have consistent types. The 'true' value is " +
                    t.type().friendly_name() + ", but the 'false' value is " + f.type().friendly_name() + ".");
  if (cond.is_null())
    return fail(e.a->range, "Null condition", "The condition value is null. Conditions must either be true or false.");
  std::string why;
  auto b = convert(cond, Type::boolean(), &why);
  if (!b) return fail(e.a->range, "Incorrect condition type", "The condition expression must be of type bool.");
  if (!b->is_known()) return Value::unknown(*result_type);
  Value chosen = b->as_bool() ? t : f;
  auto c = convert(chosen, *result_type, &why);
  return c ? *c : chosen;
}

Value Evaluator::object(const Expr& e, const EvalContext& ctx) {
  std::map<std::string, Value> attrs;
  bool unknown = false;
  for (size_t i = 0; i < e.items.size(); ++i) {
    const Expr& key = *e.keys[i];
    Value k;
    // A bare name (not in parentheses) is the attribute's name, not a variable.
    bool bare = !key.group && key.a->kind == Expr::Kind::ScopeTraversal;
    if (bare && key.a->traversal.size() > 1) {
      fail(key.range, "Ambiguous attribute key",
           "If this expression is intended to be a reference, wrap it in parentheses. If it's instead intended as a "
           "literal name containing periods, wrap it in quotes to create a string literal.");
      continue;
    }
    if (bare)
      k = Value::string(key.a->traversal[0].name);
    else
      k = eval(*key.a, ctx);
    Value v = eval(*e.items[i], ctx);
    // HCL's JSON syntax words these errors its own way (json/structure.go).
    if (k.is_null()) {
      if (e.json)
        fail(key.range, "Invalid object key expression", "Cannot use null value as an object key.");
      else
        fail(key.range, "Null value as key", "Can't use a null value as a key.");
      continue;
    }
    std::string why;
    auto ks = convert(k, Type::string(), &why);
    if (!ks) {
      if (e.json)
        fail(key.range, "Invalid object key expression", "Cannot use this expression as an object key: " + why + ".");
      else
        fail(key.range, "Incorrect key type", "Can't use this value as a key: " + why + ".");
      continue;
    }
    if (!ks->is_known()) {
      unknown = true;
      continue;
    }
    if (e.json && attrs.count(ks->as_string())) {
      fail(key.range, "Duplicate object attribute",
           "An attribute named \"" + ks->as_string() + "\" was already defined.");
      continue;
    }
    attrs[ks->as_string()] = std::move(v);
  }
  if (unknown) return Value::unknown();
  return Value::object(std::move(attrs));
}

}  // namespace imgbake::hcl
