// cty's collection and number functions: contains, keys, values, merge, flatten, distinct,
// element, coalesce, coalescelist, lookup, reverse, sort, slice, zipmap, compact, index,
// tolist, toset, tomap, abs, ceil, floor.
#include <algorithm>

#include "functions_internal.h"

namespace imgbake::hcl {

namespace {

bool is_sequence(const Value& v) {
  Type::Kind k = v.type().kind();
  return k == Type::Kind::List || k == Type::Kind::Set || k == Type::Kind::Tuple;
}

bool is_mapping(const Value& v) {
  Type::Kind k = v.type().kind();
  return k == Type::Kind::Map || k == Type::Kind::Object;
}

Function unary(std::string param, Type type, Type result, std::function<Value(const Value&)> f) {
  Function fn;
  fn.params = {{std::move(param), std::move(type)}};
  fn.result_type = std::move(result);
  fn.impl = [f](const std::vector<Value>& a) { return f(a[0]); };
  return fn;
}

Value equal(const Value& a, const Value& b) {
  auto t = unify({a.type(), b.type()});
  if (!t) return Value::boolean(false);
  auto ca = convert(a, *t), cb = convert(b, *t);
  return Value::boolean(ca && cb && raw_equals(*ca, *cb));
}

Function number_fn(Number (*f)(const Number&)) {
  return unary("num", Type::number(), Type::number(), [f](const Value& v) { return Value::number(f(v.as_number())); });
}

}  // namespace

void add_collection_functions(std::map<std::string, Function>& fs) {
  Function contains;
  contains.params = {{"list", Type()}, {"value", Type()}};
  contains.result_type = Type::boolean();
  contains.impl = [](const std::vector<Value>& a) {
    if (!is_sequence(a[0])) throw FunctionError("argument must be list, tuple, or set", 0);
    for (const auto& e : a[0].elements())
      if (equal(e, a[1]).as_bool()) return Value::boolean(true);
    return Value::boolean(false);
  };
  fs["contains"] = contains;

  fs["keys"] = unary("inputMap", Type(), Type(), [](const Value& m) {
    if (!is_mapping(m)) throw FunctionError("must have map or object type", 0);
    std::vector<Value> ks;
    for (const auto& [k, v] : m.attributes()) ks.push_back(Value::string(k));
    return Value::list(std::move(ks), Type::string());
  });
  fs["values"] = unary("mapping", Type(), Type(), [](const Value& m) {
    if (!is_mapping(m)) throw FunctionError("must have map or object type", 0);
    std::vector<Value> vs;
    for (const auto& [k, v] : m.attributes()) vs.push_back(v);
    // As cty: an object's values are a tuple, a map's a list.
    if (m.type().kind() == Type::Kind::Object) return Value::tuple(std::move(vs));
    return Value::list(std::move(vs), m.type().element());
  });

  Function merge;
  merge.variadic = Function::Param{"maps", Type(), true};
  merge.impl = [](const std::vector<Value>& a) {
    std::map<std::string, Value> out;
    for (size_t i = 0; i < a.size(); ++i) {
      if (a[i].is_null()) continue;
      if (!is_mapping(a[i])) throw FunctionError("arguments must be maps or objects", static_cast<int>(i));
      for (const auto& [k, v] : a[i].attributes()) out[k] = v;
    }
    return Value::object(std::move(out));
  };
  fs["merge"] = merge;

  fs["flatten"] = unary("list", Type(), Type(), [](const Value& l) {
    if (!is_sequence(l)) throw FunctionError("can only flatten lists, sets and tuples", 0);
    std::vector<Value> out;
    std::function<void(const Value&)> walk = [&](const Value& v) {
      for (const auto& e : v.elements()) {
        if (is_sequence(e) && !e.is_null())
          walk(e);
        else
          out.push_back(e);
      }
    };
    walk(l);
    return Value::tuple(std::move(out));
  });
  fs["distinct"] = unary("list", Type::list(Type()), Type(), [](const Value& l) {
    std::vector<Value> out;
    for (const auto& e : l.elements())
      if (std::none_of(out.begin(), out.end(), [&](const Value& o) { return raw_equals(o, e); })) out.push_back(e);
    return Value::list(std::move(out), l.type().element());
  });

  Function element;
  element.params = {{"list", Type()}, {"index", Type::number()}};
  element.impl = [](const std::vector<Value>& a) {
    if (!is_sequence(a[0]) || a[0].type().kind() == Type::Kind::Set)
      throw FunctionError("cannot read elements from " + a[0].type().friendly_name(), 0);
    if (a[0].length() == 0) throw FunctionError("cannot use element function with an empty list");
    auto i = a[1].as_number().trunc().to_int64();
    if (!i || *i < 0) throw FunctionError("cannot use element function with a negative index");
    return a[0].elements()[static_cast<size_t>(*i) % a[0].length()];
  };
  fs["element"] = element;

  // Packer's coalesce (Terraform's): the first argument that is neither null nor "".
  Function coalesce;
  coalesce.variadic = Function::Param{"vals", Type(), true, true};
  coalesce.impl = [](const std::vector<Value>& a) {
    auto t = unify(types_of(a));
    if (!t) throw FunctionError("all arguments must have the same type");
    for (const auto& v : a) {
      if (!v.is_known()) return Value::unknown(*t);
      if (v.is_null()) continue;
      auto c = convert(v, *t).value_or(v);
      if (c.type() == Type::string() && c.as_string().empty()) continue;
      return c;
    }
    throw FunctionError("no non-null, non-empty-string arguments");
  };
  fs["coalesce"] = coalesce;
  Function coalescelist;
  coalescelist.variadic = Function::Param{"vals", Type(), true};
  coalescelist.impl = [](const std::vector<Value>& a) {
    for (size_t i = 0; i < a.size(); ++i) {
      if (!a[i].is_null() && !is_sequence(a[i])) throw FunctionError("must be a list or tuple", static_cast<int>(i));
      if (!a[i].is_null() && a[i].length() > 0) return a[i];
    }
    throw FunctionError("no non-null arguments");
  };
  fs["coalescelist"] = coalescelist;

  Function lookup;
  lookup.params = {{"inputMap", Type()}, {"key", Type::string()}};
  lookup.variadic = Function::Param{"default", Type(), true};
  lookup.impl = [](const std::vector<Value>& a) {
    if (a.size() > 3) throw FunctionError("lookup() takes no more than three arguments");
    if (!is_mapping(a[0])) throw FunctionError("the first argument must be a map or an object", 0);
    auto it = a[0].attributes().find(a[1].as_string());
    if (it != a[0].attributes().end()) return it->second;
    if (a.size() == 3) return a[2];
    throw FunctionError("lookup failed to find key \"" + a[1].as_string() + "\"", 1);
  };
  fs["lookup"] = lookup;

  fs["reverse"] = unary("list", Type(), Type(), [](const Value& l) {
    if (!is_sequence(l)) throw FunctionError("can only reverse lists, sets and tuples", 0);
    std::vector<Value> out(l.elements().rbegin(), l.elements().rend());
    return l.type().kind() == Type::Kind::Tuple ? Value::tuple(std::move(out))
                                                : Value::list(std::move(out), l.type().element());
  });
  fs["sort"] = unary("list", Type::list(Type::string()), Type::list(Type::string()), [](const Value& l) {
    std::vector<Value> out = l.elements();
    for (const auto& v : out)
      if (v.is_null()) throw FunctionError("given list element is null; a null can't be sorted", 0);
    std::sort(out.begin(), out.end(), [](const Value& x, const Value& y) { return x.as_string() < y.as_string(); });
    return Value::list(std::move(out), Type::string());
  });

  Function slice;
  slice.params = {{"list", Type()}, {"start_index", Type::number()}, {"end_index", Type::number()}};
  slice.impl = [](const std::vector<Value>& a) {
    if (!is_sequence(a[0]) || a[0].type().kind() == Type::Kind::Set) throw FunctionError("must be a list or tuple", 0);
    auto s = a[1].as_number().to_int64(), e = a[2].as_number().to_int64();
    auto n = static_cast<int64_t>(a[0].length());
    if (!s || *s < 0) throw FunctionError("start_index must be a non-negative whole number", 1);
    if (!e || *e > n) throw FunctionError("end index must not be greater than the length of the list", 2);
    if (*s > *e) throw FunctionError("start index must not be greater than end index", 1);
    std::vector<Value> out(a[0].elements().begin() + *s, a[0].elements().begin() + *e);
    return a[0].type().kind() == Type::Kind::Tuple ? Value::tuple(std::move(out))
                                                   : Value::list(std::move(out), a[0].type().element());
  };
  fs["slice"] = slice;

  Function zipmap;
  zipmap.params = {{"keys", Type::list(Type::string())}, {"values", Type()}};
  zipmap.impl = [](const std::vector<Value>& a) {
    if (!is_sequence(a[1])) throw FunctionError("values must be a list or tuple", 1);
    if (a[0].length() != a[1].length())
      throw FunctionError("number of keys (" + std::to_string(a[0].length()) + ") does not match number of values (" +
                          std::to_string(a[1].length()) + ")");
    std::map<std::string, Value> out;
    for (size_t i = 0; i < a[0].length(); ++i) out[a[0].elements()[i].as_string()] = a[1].elements()[i];
    return Value::object(std::move(out));
  };
  fs["zipmap"] = zipmap;

  fs["compact"] = unary("list", Type::list(Type::string()), Type::list(Type::string()), [](const Value& l) {
    std::vector<Value> out;
    for (const auto& e : l.elements())
      if (!e.is_null() && !e.as_string().empty()) out.push_back(e);
    return Value::list(std::move(out), Type::string());
  });

  Function index;
  index.params = {{"list", Type()}, {"value", Type()}};
  index.result_type = Type::number();
  index.impl = [](const std::vector<Value>& a) {
    if (!is_sequence(a[0]) || a[0].type().kind() == Type::Kind::Set)
      throw FunctionError("argument must be a list or tuple", 0);
    for (size_t i = 0; i < a[0].length(); ++i)
      if (equal(a[0].elements()[i], a[1]).as_bool()) return Value::number(Number(static_cast<int64_t>(i)));
    throw FunctionError("item not found");
  };
  fs["index"] = index;

  auto conversion = [](Type want) {
    Function fn;
    fn.params = {{"v", Type(), true}};
    fn.impl = [want](const std::vector<Value>& a) {
      std::string why;
      auto c = convert(a[0], want, &why);
      if (!c)
        throw FunctionError(
            "cannot convert " + a[0].type().friendly_name() + " to " + want.friendly_name() + ": " + why, 0);
      return *c;
    };
    return fn;
  };
  fs["tolist"] = conversion(Type::list(Type()));
  fs["toset"] = conversion(Type::set(Type()));
  fs["tomap"] = conversion(Type::map(Type()));

  fs["abs"] = number_fn([](const Number& n) { return n.negative() ? -n : n; });
  fs["floor"] = number_fn([](const Number& n) {
    Number t = n.trunc();
    return n.negative() && !(t == n) ? t - Number(1) : t;
  });
  fs["ceil"] = number_fn([](const Number& n) {
    Number t = n.trunc();
    return !n.negative() && !(t == n) ? t + Number(1) : t;
  });
}

}  // namespace imgbake::hcl
