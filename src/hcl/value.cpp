#include <algorithm>
#include <stdexcept>

#include "imgbake/hcl_value.h"
#include "nfc.h"
#include "quote.h"

namespace imgbake::hcl {

struct Type::Impl {
  Kind kind = Kind::Dynamic;
  std::vector<Type> elements;  // the element type of a collection, the types of a tuple
  std::map<std::string, Type> attributes;
  std::set<std::string> optional;
};

namespace {
const std::shared_ptr<const Type::Impl>& primitive(Type::Kind k) {
  static const std::shared_ptr<const Type::Impl> impls[] = {
      std::make_shared<Type::Impl>(Type::Impl{Type::Kind::Dynamic, {}, {}, {}}),
      std::make_shared<Type::Impl>(Type::Impl{Type::Kind::String, {}, {}, {}}),
      std::make_shared<Type::Impl>(Type::Impl{Type::Kind::Number, {}, {}, {}}),
      std::make_shared<Type::Impl>(Type::Impl{Type::Kind::Bool, {}, {}, {}}),
  };
  return impls[static_cast<int>(k)];
}
}  // namespace

Type::Type() : impl_(primitive(Kind::Dynamic)) {}
Type Type::string() { return Type(primitive(Kind::String)); }
Type Type::number() { return Type(primitive(Kind::Number)); }
Type Type::boolean() { return Type(primitive(Kind::Bool)); }
Type Type::list(Type element) { return Type(std::make_shared<Impl>(Impl{Kind::List, {std::move(element)}, {}, {}})); }
Type Type::set(Type element) { return Type(std::make_shared<Impl>(Impl{Kind::Set, {std::move(element)}, {}, {}})); }
Type Type::map(Type element) { return Type(std::make_shared<Impl>(Impl{Kind::Map, {std::move(element)}, {}, {}})); }
Type Type::tuple(std::vector<Type> elements) {
  return Type(std::make_shared<Impl>(Impl{Kind::Tuple, std::move(elements), {}, {}}));
}
Type Type::object(std::map<std::string, Type> attributes, std::set<std::string> optional) {
  return Type(std::make_shared<Impl>(Impl{Kind::Object, {}, std::move(attributes), std::move(optional)}));
}

Type::Kind Type::kind() const { return impl_->kind; }
bool Type::is_primitive() const { return kind() == Kind::String || kind() == Kind::Number || kind() == Kind::Bool; }
bool Type::is_collection() const { return kind() == Kind::List || kind() == Kind::Set || kind() == Kind::Map; }
const Type& Type::element() const {
  if (!is_collection()) throw std::logic_error("Type::element of " + str());
  return impl_->elements[0];
}
const std::vector<Type>& Type::elements() const { return impl_->elements; }
const std::map<std::string, Type>& Type::attributes() const { return impl_->attributes; }
const std::set<std::string>& Type::optional() const { return impl_->optional; }

bool Type::has_dynamic() const {
  if (is_dynamic()) return true;
  for (const auto& e : impl_->elements)
    if (e.has_dynamic()) return true;
  for (const auto& [_, t] : impl_->attributes)
    if (t.has_dynamic()) return true;
  return false;
}

std::string Type::str() const {
  switch (kind()) {
    case Kind::Dynamic: return "any";
    case Kind::String: return "string";
    case Kind::Number: return "number";
    case Kind::Bool: return "bool";
    case Kind::List: return "list(" + element().str() + ")";
    case Kind::Set: return "set(" + element().str() + ")";
    case Kind::Map: return "map(" + element().str() + ")";
    case Kind::Tuple: {
      std::string out = "tuple([";
      for (size_t i = 0; i < elements().size(); ++i) out += (i ? ", " : "") + elements()[i].str();
      return out + "])";
    }
    case Kind::Object: {
      std::string out = "object({";
      bool first = true;
      for (const auto& [k, t] : attributes()) {
        out += (first ? "" : ", ") + k + "=" + (optional().count(k) ? "optional(" + t.str() + ")" : t.str());
        first = false;
      }
      return out + "})";
    }
  }
  return "?";
}

std::string Type::friendly_name() const {
  switch (kind()) {
    case Kind::Dynamic: return "dynamic";
    case Kind::Bool: return "bool";
    case Kind::List: return "list of " + element().friendly_name();
    case Kind::Set: return "set of " + element().friendly_name();
    case Kind::Map: return "map of " + element().friendly_name();
    case Kind::Tuple: return "tuple";
    case Kind::Object: return "object";
    default: return str();
  }
}

bool operator==(const Type& a, const Type& b) {
  if (a.impl_ == b.impl_) return true;
  return a.kind() == b.kind() && a.impl_->elements == b.impl_->elements && a.impl_->attributes == b.impl_->attributes &&
         a.impl_->optional == b.impl_->optional;
}

Value::Value() = default;

Value Value::null(Type t) {
  Value v;
  v.type_ = std::move(t);
  return v;
}

Value Value::unknown(Type t) {
  Value v;
  v.type_ = std::move(t);
  v.state_ = State::Unknown;
  return v;
}

Value Value::string(std::string s) {
  Value v;
  v.type_ = Type::string();
  v.state_ = State::Known;
  v.str_ = to_nfc(std::move(s));
  return v;
}

Value Value::number(Number n) {
  Value v;
  v.type_ = Type::number();
  v.state_ = State::Known;
  v.num_ = std::move(n);
  return v;
}

Value Value::boolean(bool b) {
  Value v;
  v.type_ = Type::boolean();
  v.state_ = State::Known;
  v.bool_ = b;
  return v;
}

Value Value::list(std::vector<Value> elements, Type element_type) {
  Value v;
  v.type_ = Type::list(std::move(element_type));
  v.state_ = State::Known;
  v.elems_ = std::make_shared<const std::vector<Value>>(std::move(elements));
  return v;
}

Value Value::set(std::vector<Value> elements, Type element_type) {
  std::vector<Value> unique;
  for (auto& e : elements) {
    bool dup = false;
    for (const auto& u : unique) dup = dup || raw_equals(u, e);
    if (!dup) unique.push_back(std::move(e));
  }
  std::stable_sort(unique.begin(), unique.end(), value_less);
  Value v = list(std::move(unique), element_type);
  v.type_ = Type::set(std::move(element_type));
  return v;
}

Value Value::map(std::map<std::string, Value> elements, Type element_type) {
  Value v;
  v.type_ = Type::map(std::move(element_type));
  v.state_ = State::Known;
  v.attrs_ = std::make_shared<const std::map<std::string, Value>>(std::move(elements));
  return v;
}

std::vector<Type> types_of(const std::vector<Value>& values) {
  std::vector<Type> types;
  types.reserve(values.size());
  for (const auto& v : values) types.push_back(v.type());
  return types;
}

Value Value::tuple(std::vector<Value> elements) {
  std::vector<Type> types = types_of(elements);
  Value v = list(std::move(elements), Type());
  v.type_ = Type::tuple(std::move(types));
  return v;
}

Value Value::object(std::map<std::string, Value> attributes) {
  std::map<std::string, Type> types;
  for (const auto& [k, e] : attributes) types.emplace(k, e.type());
  return object(std::move(attributes), Type::object(std::move(types)));
}

Value Value::object(std::map<std::string, Value> attributes, Type object_type) {
  Value v = map(std::move(attributes), Type());
  v.type_ = std::move(object_type);
  return v;
}

Value Value::list_of(std::vector<Value> elements) {
  Type t = elements.empty() ? Type() : elements.front().type();
  return list(std::move(elements), t);
}

Value Value::map_of(std::map<std::string, Value> elements) {
  Type t = elements.empty() ? Type() : elements.begin()->second.type();
  return map(std::move(elements), t);
}

bool Value::is_wholly_known() const {
  if (!is_known()) return false;
  if (elems_)
    for (const auto& e : *elems_)
      if (!e.is_wholly_known()) return false;
  if (attrs_)
    for (const auto& [_, e] : *attrs_)
      if (!e.is_wholly_known()) return false;
  return true;
}

const std::vector<Value>& Value::elements() const {
  static const std::vector<Value> none;
  return elems_ ? *elems_ : none;
}

const std::map<std::string, Value>& Value::attributes() const {
  static const std::map<std::string, Value> none;
  return attrs_ ? *attrs_ : none;
}

size_t Value::length() const {
  if (type_.kind() == Type::Kind::String) return str_.size();
  return elems_ ? elems_->size() : (attrs_ ? attrs_->size() : 0);
}

std::string Value::str() const {
  if (state_ == State::Unknown) return "(unknown " + type_.str() + ")";
  if (state_ == State::Null) return "null";
  switch (type_.kind()) {
    case Type::Kind::String: return quote_string(str_);
    case Type::Kind::Number: return num_.str();
    case Type::Kind::Bool: return bool_ ? "true" : "false";
    case Type::Kind::List:
    case Type::Kind::Set:
    case Type::Kind::Tuple: {
      std::string out = "[";
      for (size_t i = 0; i < elements().size(); ++i) out += (i ? ", " : "") + elements()[i].str();
      return out + "]";
    }
    case Type::Kind::Map:
    case Type::Kind::Object: {
      std::string out = "{";
      bool first = true;
      for (const auto& [k, e] : attributes()) {
        out += (first ? "" : ", ") + quote_string(k) + " = " + e.str();
        first = false;
      }
      return out + "}";
    }
    case Type::Kind::Dynamic: break;
  }
  return "?";
}

bool raw_equals(const Value& a, const Value& b) {
  if (a.type_ != b.type_ || a.state_ != b.state_) return false;
  if (a.state_ != Value::State::Known) return true;
  switch (a.type_.kind()) {
    case Type::Kind::String: return a.str_ == b.str_;
    case Type::Kind::Number: return a.num_ == b.num_;
    case Type::Kind::Bool: return a.bool_ == b.bool_;
    case Type::Kind::Map:
    case Type::Kind::Object: {
      if (a.attributes().size() != b.attributes().size()) return false;
      for (const auto& [k, e] : a.attributes()) {
        auto it = b.attributes().find(k);
        if (it == b.attributes().end() || !raw_equals(e, it->second)) return false;
      }
      return true;
    }
    default: {
      if (a.elements().size() != b.elements().size()) return false;
      for (size_t i = 0; i < a.elements().size(); ++i)
        if (!raw_equals(a.elements()[i], b.elements()[i])) return false;
      return true;
    }
  }
}

bool value_less(const Value& a, const Value& b) {
  if (a.is_known() != b.is_known()) return a.is_known();
  if (a.is_null() != b.is_null()) return !a.is_null();
  if (!a.is_known() || a.is_null()) return false;
  if (a.type().kind() == Type::Kind::Number && b.type().kind() == Type::Kind::Number)
    return a.as_number() < b.as_number();
  if (a.type().kind() == Type::Kind::String && b.type().kind() == Type::Kind::String)
    return a.as_string() < b.as_string();
  if (a.type().kind() == Type::Kind::Bool && b.type().kind() == Type::Kind::Bool) return !a.as_bool() && b.as_bool();
  return a.str() < b.str();
}

}  // namespace imgbake::hcl
