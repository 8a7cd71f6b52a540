#include "imgbake/hcl_typeexpr.h"

namespace imgbake::hcl {

namespace {

std::optional<Type> type_of(const Expr& e, Diagnostics& diags, const std::string& file, bool in_object);

std::optional<Type> invalid(const Expr& e, Diagnostics& diags, const std::string& file, const std::string& detail) {
  diags.error(file, e.range, "Invalid type specification", detail);
  return std::nullopt;
}

std::optional<Type> type_of(const Expr& e, Diagnostics& diags, const std::string& file, bool in_object) {
  const Expr* x = &e;
  while (x->kind == Expr::Kind::Parens) x = x->a.get();
  if (x->kind == Expr::Kind::ScopeTraversal && x->traversal.size() == 1) {
    const std::string& n = x->traversal[0].name;
    if (n == "string") return Type::string();
    if (n == "number") return Type::number();
    if (n == "bool") return Type::boolean();
    if (n == "any") return Type::dynamic();
    if (n == "list" || n == "map" || n == "set")
      return invalid(*x, diags, file,
                     "The " + n + " type constructor requires one argument specifying the element type.");
    if (n == "object" || n == "tuple")
      return invalid(*x, diags, file,
                     "The " + n + " type constructor requires one argument specifying the element types.");
    return invalid(*x, diags, file, "The keyword \"" + n + "\" is not a valid type specification.");
  }
  if (x->kind != Expr::Kind::FunctionCall)
    return invalid(*x, diags, file,
                   "A type specification is either a primitive type keyword (bool, number, string) or "
                   "a complex type constructor call, like list(string).");
  const std::string& n = x->name;
  if (x->items.size() != 1)
    return invalid(*x, diags, file, "The " + n + " type constructor requires exactly one argument.");
  const Expr& arg = *x->items[0];
  if (n == "list" || n == "set" || n == "map") {
    auto el = type_of(arg, diags, file, false);
    if (!el) return std::nullopt;
    return n == "list" ? Type::list(*el) : (n == "set" ? Type::set(*el) : Type::map(*el));
  }
  if (n == "optional") {
    if (!in_object)
      return invalid(*x, diags, file, "Keyword \"optional\" is valid only as a modifier for object type attributes.");
    return type_of(arg, diags, file, false);
  }
  if (n == "tuple") {
    if (arg.kind != Expr::Kind::Tuple)
      return invalid(arg, diags, file, "The tuple type constructor requires a list of element types.");
    std::vector<Type> ts;
    for (const auto& item : arg.items) {
      auto t = type_of(*item, diags, file, false);
      if (!t) return std::nullopt;
      ts.push_back(*t);
    }
    return Type::tuple(std::move(ts));
  }
  if (n == "object") {
    if (arg.kind != Expr::Kind::Object)
      return invalid(arg, diags, file, "The object type constructor requires an object of attribute names and types.");
    std::map<std::string, Type> attrs;
    std::set<std::string> optional;
    for (size_t i = 0; i < arg.items.size(); ++i) {
      const Expr& key = *arg.keys[i]->a;
      std::string name;
      if (key.kind == Expr::Kind::ScopeTraversal && key.traversal.size() == 1)
        name = key.traversal[0].name;
      else if (key.kind == Expr::Kind::Template && key.items.size() == 1 && key.items[0]->kind == Expr::Kind::Literal)
        name = key.items[0]->value.as_string();
      else
        return invalid(key, diags, file, "Object constructor map keys must be attribute names.");
      const Expr& v = *arg.items[i];
      if (v.kind == Expr::Kind::FunctionCall && v.name == "optional") optional.insert(name);
      auto t = type_of(v, diags, file, true);
      if (!t) return std::nullopt;
      attrs.emplace(name, *t);
    }
    return Type::object(std::move(attrs), std::move(optional));
  }
  return invalid(*x, diags, file, "Keyword \"" + n + "\" is not a valid type constructor.");
}

}  // namespace

std::optional<Type> type_expression(const Expr& e, Diagnostics& diags, const std::string& file) {
  return type_of(e, diags, file, false);
}

}  // namespace imgbake::hcl
