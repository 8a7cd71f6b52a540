// A first few of HCL's standard functions (cty's function/stdlib), enough to exercise calls,
// argument conversion and `...` expansion. Packer's full set lands with the Packer schema.
#include <algorithm>
#include <cctype>

#include "functions_internal.h"
#include "imgbake/hcl_eval.h"

namespace imgbake::hcl {

namespace {

Function unary_string(std::string param, std::string (*f)(std::string)) {
  Function fn;
  fn.params = {{std::move(param), Type::string()}};
  fn.result_type = Type::string();
  fn.impl = [f](const std::vector<Value>& a) { return Value::string(f(a[0].as_string())); };
  return fn;
}

std::string ascii_case(std::string s, int (*conv)(int)) {
  for (auto& c : s) c = static_cast<char>(conv(static_cast<unsigned char>(c)));
  return s;
}

Function extremum(bool want_max) {
  Function fn;
  fn.variadic = Function::Param{"numbers", Type::number()};
  fn.result_type = Type::number();
  fn.impl = [want_max](const std::vector<Value>& a) {
    if (a.empty()) throw FunctionError("must pass at least one number");
    Number best = a[0].as_number();
    for (const auto& v : a)
      if (want_max ? best < v.as_number() : v.as_number() < best) best = v.as_number();
    return Value::number(best);
  };
  return fn;
}

Function conversion(Type t) {
  Function fn;
  fn.params = {{"v", Type(), true}};
  fn.result_type = t;
  fn.impl = [t](const std::vector<Value>& a) {
    std::string why;
    auto c = convert(a[0], t, &why);
    if (!c)
      throw FunctionError("cannot convert " + a[0].type().friendly_name() + " to " + t.friendly_name() + ": " + why, 0);
    return *c;
  };
  return fn;
}

}  // namespace

std::map<std::string, Function> standard_functions() {
  std::map<std::string, Function> fs;
  fs["upper"] = unary_string("str", [](std::string s) { return ascii_case(std::move(s), ::toupper); });
  fs["lower"] = unary_string("str", [](std::string s) { return ascii_case(std::move(s), ::tolower); });

  Function length;
  length.params = {{"value", Type(), false, false}};
  length.result_type = Type::number();
  length.impl = [](const std::vector<Value>& a) {
    const Value& v = a[0];
    const Type::Kind k = v.type().kind();
    if (k == Type::Kind::String) {
      int64_t chars = 0;
      for (char c : v.as_string()) chars += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
      return Value::number(Number(chars));
    }
    if (v.type().is_primitive())
      throw FunctionError("argument must be a string, a collection type, or a structural type", 0);
    return Value::number(Number(static_cast<int64_t>(v.length())));
  };
  fs["length"] = length;

  Function join;
  join.params = {{"separator", Type::string()}};
  join.variadic = Function::Param{"lists", Type::list(Type::string())};
  join.result_type = Type::string();
  join.impl = [](const std::vector<Value>& a) {
    std::string out;
    bool first = true;
    for (size_t i = 1; i < a.size(); ++i)
      for (const auto& e : a[i].elements()) {
        if (e.is_null()) throw FunctionError("element must not be null", static_cast<int>(i));
        out += (first ? "" : a[0].as_string()) + e.as_string();
        first = false;
      }
    return Value::string(out);
  };
  fs["join"] = join;

  Function concat;
  concat.variadic = Function::Param{"seqs", Type()};
  concat.impl = [](const std::vector<Value>& a) {
    // Lists of one element type stay a list of it (as cty's concat); anything else is a tuple.
    bool lists = !a.empty();
    for (const auto& v : a) lists = lists && v.type().kind() == Type::Kind::List && v.type() == a[0].type();
    std::vector<Value> all;
    for (size_t i = 0; i < a.size(); ++i) {
      const Type::Kind k = a[i].type().kind();
      if (k != Type::Kind::List && k != Type::Kind::Set && k != Type::Kind::Tuple)
        throw FunctionError("all arguments must be lists or tuples; got " + a[i].type().friendly_name(),
                            static_cast<int>(i));
      all.insert(all.end(), a[i].elements().begin(), a[i].elements().end());
    }
    if (lists) return Value::list(std::move(all), a[0].type().element());
    return Value::tuple(std::move(all));
  };
  fs["concat"] = concat;

  fs["max"] = extremum(true);
  fs["min"] = extremum(false);
  fs["tostring"] = conversion(Type::string());
  fs["tonumber"] = conversion(Type::number());
  fs["tobool"] = conversion(Type::boolean());
  add_string_functions(fs);
  add_collection_functions(fs);
  add_encoding_functions(fs);
  add_datetime_functions(fs);
  add_set_functions(fs);
  Function lazy;
  lazy.lazy = Function::Lazy::Try;
  fs["try"] = lazy;
  lazy.lazy = Function::Lazy::Can;
  lazy.result_type = Type::boolean();
  fs["can"] = lazy;
  return fs;
}

}  // namespace imgbake::hcl
