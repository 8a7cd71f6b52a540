// cty's conversion rules (go-cty/cty/convert): primitives convert through their string forms,
// collections element by element, structural types attribute by attribute; unknown and null
// values convert to unknown and null values of the wanted type.
#include "imgbake/hcl_value.h"

namespace imgbake::hcl {

namespace {

using Kind = Type::Kind;

bool fail(std::string* error, const std::string& message) {
  if (error) *error = message;
  return false;
}

std::string required(const Type& want) {
  switch (want.kind()) {
    case Kind::String: return "string required";
    case Kind::Number: return "number required";
    case Kind::Bool: return "bool required";
    case Kind::List: return "list of " + want.element().friendly_name() + " required";
    case Kind::Set: return "set of " + want.element().friendly_name() + " required";
    case Kind::Map: return "map of " + want.element().friendly_name() + " required";
    case Kind::Tuple: return "tuple required";
    case Kind::Object: return "object required";
    case Kind::Dynamic: break;
  }
  return "value required";
}

bool convert_primitive(const Value& v, const Type& want, Value& out, std::string* error) {
  Kind from = v.type().kind();
  switch (want.kind()) {
    case Kind::String:
      if (from == Kind::Number) return out = Value::string(v.as_number().str()), true;
      if (from == Kind::Bool) return out = Value::string(v.as_bool() ? "true" : "false"), true;
      break;
    case Kind::Number:
      if (from == Kind::String) {
        auto n = Number::parse(v.as_string());
        if (!n || n->is_infinite()) return fail(error, "a number is required");
        return out = Value::number(*n), true;
      }
      break;
    case Kind::Bool:
      if (from == Kind::String) {
        if (v.as_string() == "true") return out = Value::boolean(true), true;
        if (v.as_string() == "false") return out = Value::boolean(false), true;
        return fail(error, "a bool is required");
      }
      break;
    default: break;
  }
  return fail(error, required(want));
}

// Converts each element to `elem` (or to the unification of their types when `elem` is dynamic).
bool convert_elements(const std::vector<Value>& in, Type elem, std::vector<Value>& out, std::string* error) {
  if (elem.has_dynamic() && !in.empty()) {
    auto u = unify(types_of(in));
    if (!u) return fail(error, "all elements must have the same type");
    elem = *u;
  }
  for (size_t i = 0; i < in.size(); ++i) {
    std::string why;
    auto c = convert(in[i], elem, &why);
    if (!c) return fail(error, "element " + std::to_string(i) + ": " + why);
    out.push_back(std::move(*c));
  }
  return true;
}

Type element_type_of(const std::vector<Value>& elems, const Type& want) {
  return want.has_dynamic() && !elems.empty() ? elems.front().type() : want;
}

bool convert_collection(const Value& v, const Type& want, Value& out, std::string* error) {
  Kind from = v.type().kind();
  const Type& elem = want.element();
  if (want.kind() == Kind::Map) {
    if (from != Kind::Map && from != Kind::Object) return fail(error, required(want));
    std::vector<Value> in;
    std::vector<std::string> keys;
    for (const auto& [k, e] : v.attributes()) {
      keys.push_back(k);
      in.push_back(e);
    }
    std::vector<Value> conv;
    if (!convert_elements(in, elem, conv, error)) return false;
    std::map<std::string, Value> m;
    for (size_t i = 0; i < keys.size(); ++i) m.emplace(keys[i], conv[i]);
    return out = Value::map(std::move(m), element_type_of(conv, elem)), true;
  }
  if (from != Kind::List && from != Kind::Set && from != Kind::Tuple) return fail(error, required(want));
  std::vector<Value> conv;
  if (!convert_elements(v.elements(), elem, conv, error)) return false;
  Type et = element_type_of(conv, elem);
  out = want.kind() == Kind::List ? Value::list(std::move(conv), et) : Value::set(std::move(conv), et);
  return true;
}

bool convert_structural(const Value& v, const Type& want, Value& out, std::string* error) {
  Kind from = v.type().kind();
  if (want.kind() == Kind::Tuple) {
    if (from != Kind::Tuple && from != Kind::List && from != Kind::Set) return fail(error, required(want));
    if (v.elements().size() != want.elements().size())
      return fail(error, "tuple required with " + std::to_string(want.elements().size()) + " elements");
    std::vector<Value> conv;
    for (size_t i = 0; i < want.elements().size(); ++i) {
      std::string why;
      auto c = convert(v.elements()[i], want.elements()[i], &why);
      if (!c) return fail(error, "element " + std::to_string(i) + ": " + why);
      conv.push_back(std::move(*c));
    }
    return out = Value::tuple(std::move(conv)), true;
  }
  if (from != Kind::Object && from != Kind::Map) return fail(error, required(want));
  std::map<std::string, Value> attrs;
  std::map<std::string, Type> types;
  for (const auto& [name, t] : want.attributes()) {
    auto it = v.attributes().find(name);
    if (it == v.attributes().end()) {
      if (!want.optional().count(name)) return fail(error, "attribute \"" + name + "\" is required");
      attrs.emplace(name, Value::null(t));
      types.emplace(name, t);
      continue;
    }
    std::string why;
    auto c = convert(it->second, t, &why);
    if (!c) return fail(error, "attribute \"" + name + "\": " + why);
    types.emplace(name, c->type());
    attrs.emplace(name, std::move(*c));
  }
  // Attributes the wanted type does not name are dropped, as cty does.
  return out = Value::object(std::move(attrs), Type::object(std::move(types))), true;
}

// The type a null or unknown value of type `from` takes when converted to `want`.
Type concrete(const Type& want, const Type& from) { return want.is_dynamic() ? from : want; }

}  // namespace

std::optional<Value> convert(const Value& v, const Type& want, std::string* error) {
  if (want.is_dynamic() || v.type() == want) return v;
  if (!v.is_known()) return Value::unknown(concrete(want, v.type()));
  if (v.is_null()) return Value::null(concrete(want, v.type()));
  if (v.type().is_dynamic()) return Value::null(want);
  Value out;
  bool ok = false;
  if (want.is_primitive())
    ok = v.type().is_primitive() ? convert_primitive(v, want, out, error) : fail(error, required(want));
  else if (want.is_collection())
    ok = convert_collection(v, want, out, error);
  else
    ok = convert_structural(v, want, out, error);
  if (!ok) return std::nullopt;
  return out;
}

std::optional<Type> unify(const std::vector<Type>& types) {
  if (types.empty()) return Type();
  bool all_equal = true;
  bool any_dynamic = false;
  for (const auto& t : types) {
    all_equal = all_equal && t == types.front();
    any_dynamic = any_dynamic || t.is_dynamic();
  }
  if (all_equal) return types.front();
  if (any_dynamic) return Type();
  bool all_primitive = true;
  bool any_string = false;
  for (const auto& t : types) {
    all_primitive = all_primitive && t.is_primitive();
    any_string = any_string || t.kind() == Kind::String;
  }
  if (all_primitive) {
    if (any_string) return Type::string();  // numbers and bools both convert to strings
    return std::nullopt;
  }
  Kind k = types.front().kind();
  bool same_kind = true;
  for (const auto& t : types) same_kind = same_kind && t.kind() == k;
  if (same_kind && (k == Kind::List || k == Kind::Set || k == Kind::Map)) {
    std::vector<Type> elems;
    elems.reserve(types.size());
    for (const auto& t : types) elems.push_back(t.element());
    auto e = unify(elems);
    if (!e) return std::nullopt;
    return k == Kind::List ? Type::list(*e) : (k == Kind::Set ? Type::set(*e) : Type::map(*e));
  }
  bool all_objects = true;
  for (const auto& t : types) all_objects = all_objects && (t.kind() == Kind::Object || t.kind() == Kind::Map);
  if (all_objects) {
    // Objects with the same attribute names unify attribute by attribute; otherwise (as cty
    // does) into a map of their attributes' common type.
    bool same_keys = same_kind;
    for (const auto& t : types)
      if (same_keys && t.attributes().size() != types.front().attributes().size()) same_keys = false;
    if (same_keys) {
      std::map<std::string, Type> attrs;
      for (const auto& [name, _] : types.front().attributes()) {
        std::vector<Type> ts;
        for (const auto& t : types) {
          auto it = t.attributes().find(name);
          if (it == t.attributes().end()) return std::nullopt;
          ts.push_back(it->second);
        }
        auto u = unify(ts);
        if (!u) return std::nullopt;
        attrs.emplace(name, *u);
      }
      return Type::object(std::move(attrs));
    }
    std::vector<Type> all;
    for (const auto& t : types) {
      if (t.kind() == Kind::Map) all.push_back(t.element());
      for (const auto& [_, a] : t.attributes()) all.push_back(a);
    }
    auto e = unify(all);
    if (!e) return std::nullopt;
    return Type::map(*e);
  }
  bool all_sequences = true;
  for (const auto& t : types)
    all_sequences = all_sequences && (t.kind() == Kind::Tuple || t.kind() == Kind::List || t.kind() == Kind::Set);
  if (all_sequences) {
    std::vector<Type> all;
    for (const auto& t : types) {
      if (t.kind() == Kind::Tuple)
        all.insert(all.end(), t.elements().begin(), t.elements().end());
      else
        all.push_back(t.element());
    }
    auto e = unify(all);
    if (!e) return std::nullopt;
    return Type::list(*e);
  }
  return std::nullopt;
}

}  // namespace imgbake::hcl
