// HCL's values and types, after cty (go-cty): string, number, bool; list, set and map of one
// element type; tuple and object of per-element types; the dynamic type (`any`); and null
// and unknown values of any type. Values are immutable and cheap to copy.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "imgbake/hcl_number.h"

namespace imgbake::hcl {

class Type {
 public:
  enum class Kind { Dynamic, String, Number, Bool, List, Set, Map, Tuple, Object };

  Type();  // dynamic
  static Type dynamic() { return {}; }
  static Type string();
  static Type number();
  static Type boolean();
  static Type list(Type element);
  static Type set(Type element);
  static Type map(Type element);
  static Type tuple(std::vector<Type> elements);
  // `optional` names attributes that a conversion may leave out (they become null).
  static Type object(std::map<std::string, Type> attributes, std::set<std::string> optional = {});

  Kind kind() const;
  bool is_dynamic() const { return kind() == Kind::Dynamic; }
  bool is_primitive() const;
  bool is_collection() const;                             // list, set, map
  const Type& element() const;                            // of a list, set or map
  const std::vector<Type>& elements() const;              // of a tuple
  const std::map<std::string, Type>& attributes() const;  // of an object
  const std::set<std::string>& optional() const;
  // Whether the type mentions `dynamic` anywhere.
  bool has_dynamic() const;

  // As an HCL type expression: "list(string)", "object({a=number})".
  std::string str() const;
  // As cty names types in messages: "list of string", "object", "tuple".
  std::string friendly_name() const;

  friend bool operator==(const Type& a, const Type& b);
  friend bool operator!=(const Type& a, const Type& b) { return !(a == b); }

  struct Impl;  // opaque: defined in value.cpp

 private:
  explicit Type(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<const Impl> impl_;
};

class Value {
 public:
  Value();  // null of the dynamic type
  static Value null(Type t = Type::dynamic());
  static Value unknown(Type t = Type::dynamic());
  static Value string(std::string s);
  static Value number(Number n);
  static Value boolean(bool b);
  static Value list(std::vector<Value> elements, Type element_type);
  static Value set(std::vector<Value> elements, Type element_type);  // deduplicated, ordered
  static Value map(std::map<std::string, Value> elements, Type element_type);
  static Value tuple(std::vector<Value> elements);
  static Value object(std::map<std::string, Value> attributes);
  static Value object(std::map<std::string, Value> attributes, Type object_type);
  // A list, set or map of the values' common type (their types must be equal).
  static Value list_of(std::vector<Value> elements);
  static Value map_of(std::map<std::string, Value> elements);

  const Type& type() const { return type_; }
  bool is_null() const { return state_ == State::Null; }
  bool is_known() const { return state_ != State::Unknown; }
  // Known, and so is everything inside it.
  bool is_wholly_known() const;

  const std::string& as_string() const { return str_; }
  const Number& as_number() const { return num_; }
  bool as_bool() const { return bool_; }
  // The elements of a list, set or tuple; the attributes of a map or object.
  const std::vector<Value>& elements() const;
  const std::map<std::string, Value>& attributes() const;
  size_t length() const;

  // HCL literal syntax, for messages and tests: "hello" → "\"hello\"", [1, 2], {a = 1}.
  std::string str() const;

  // Same type and same value (two nulls or two unknowns of a type are equal).
  friend bool raw_equals(const Value& a, const Value& b);

 private:
  enum class State { Null, Unknown, Known };
  Type type_;
  State state_ = State::Null;
  std::string str_;
  Number num_;
  bool bool_ = false;
  std::shared_ptr<const std::vector<Value>> elems_;
  std::shared_ptr<const std::map<std::string, Value>> attrs_;
};

// The types of `values`, in order.
std::vector<Type> types_of(const std::vector<Value>& values);

// Orders values of the same type (sets keep their elements in this order).
bool value_less(const Value& a, const Value& b);

// HCL's type conversions (cty's convert package): `error` gets a sentence such as
// "a number is required" and nullopt comes back when the value cannot be converted.
std::optional<Value> convert(const Value& v, const Type& want, std::string* error = nullptr);
// The one type all of `types` convert to (cty's unification), or nullopt.
std::optional<Type> unify(const std::vector<Type>& types);

}  // namespace imgbake::hcl
