// One step of a traversal (hcl's traversal.go and cty's index/attribute access).
#include "imgbake/hcl_eval.h"

namespace imgbake::hcl {

namespace {
using Kind = Type::Kind;

std::optional<Value> index(const Value& v, const Value& key, std::string& summary, std::string& error) {
  const Kind k = v.type().kind();
  if (v.is_null()) {
    summary = "Attempt to index null value";
    error = "This value is null, so it does not have any indices.";
    return std::nullopt;
  }
  if (k == Kind::Set) {
    summary = "Invalid index";
    error =
        "Elements of a set are identified only by their value and don't have any separate index or key to select "
        "with, so it's only possible to perform operations across all elements of the set.";
    return std::nullopt;
  }
  bool sequence = k == Kind::List || k == Kind::Tuple;
  bool mapping = k == Kind::Map || k == Kind::Object;
  if (!sequence && !mapping && !v.type().is_dynamic()) {
    summary = "Invalid index";
    error = "This value does not have any indices.";
    return std::nullopt;
  }
  if (!v.is_known() || !key.is_known()) {
    if (k == Kind::List || k == Kind::Map) return Value::unknown(v.type().element());
    return Value::unknown();
  }
  if (key.is_null()) {
    summary = "Invalid index";
    error = "Can't use a null value as an indexing key.";
    return std::nullopt;
  }
  summary = "Invalid index";
  std::string why;
  if (sequence) {
    auto n = convert(key, Type::number(), &why);
    if (!n) {
      error = "The given key does not identify an element in this collection value: a number is required.";
      return std::nullopt;
    }
    auto i = n->as_number().to_int64();
    if (!i) {
      error =
          "The given key does not identify an element in this collection value: indexing with a fractional "
          "number is not allowed.";
      return std::nullopt;
    }
    if (*i < 0 || static_cast<size_t>(*i) >= v.elements().size()) {
      error = "The given key does not identify an element in this collection value: the collection has " +
              std::to_string(v.elements().size()) + " elements.";
      return std::nullopt;
    }
    return v.elements()[static_cast<size_t>(*i)];
  }
  auto s = convert(key, Type::string(), &why);
  if (!s) {
    error = "The given key does not identify an element in this collection value: a string is required.";
    return std::nullopt;
  }
  auto it = v.attributes().find(s->as_string());
  if (it == v.attributes().end()) {
    error = "The given key does not identify an element in this collection value.";
    return std::nullopt;
  }
  return it->second;
}
}  // namespace

std::optional<Value> traverse(const Value& v, const Traverser& step, std::string& summary, std::string& error) {
  if (step.kind == Traverser::Kind::Index) return index(v, step.key, summary, error);
  const Kind k = v.type().kind();
  if (v.is_null()) {
    summary = "Attempt to get attribute from null value";
    error = "This value is null, so it does not have any attributes.";
    return std::nullopt;
  }
  if (k == Kind::Object) {
    auto it = v.type().attributes().find(step.name);
    if (it == v.type().attributes().end()) {
      summary = "Unsupported attribute";
      error = "This object does not have an attribute named \"" + step.name + "\".";
      return std::nullopt;
    }
    if (!v.is_known()) return Value::unknown(it->second);
    return v.attributes().at(step.name);
  }
  if (k == Kind::Map) {
    if (!v.is_known()) return Value::unknown(v.type().element());
    auto it = v.attributes().find(step.name);
    if (it == v.attributes().end()) {
      summary = "Missing map element";
      error = "This map does not have an element with the key \"" + step.name + "\".";
      return std::nullopt;
    }
    return it->second;
  }
  if (k == Kind::Dynamic) return Value::unknown();
  summary = "Unsupported attribute";
  if (k == Kind::List || k == Kind::Set || k == Kind::Tuple)
    error = "Can't access attributes on a " + v.type().friendly_name() +
            ". Did you mean to access an attribute for a specific element of the list, or across all elements of "
            "the list (with a splat, [*])?";
  else
    error = "Can't access attributes on a primitive-typed value (" + v.type().friendly_name() + ").";
  return std::nullopt;
}

}  // namespace imgbake::hcl
