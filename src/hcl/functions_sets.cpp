// cty's set functions (setunion, setintersection, setsubtract, setproduct), chunklist,
// range, the number functions log, pow, signum and parseint, and csvdecode (cty's
// function/stdlib set.go, collection.go, sequence.go, number.go, csv.go).
#include <charconv>
#include <cmath>

#include "functions_internal.h"

namespace imgbake::hcl {

namespace {

// The element type the sets' elements unify to (an empty set of unknown type left out).
Type set_element_type(const std::vector<Value>& sets) {
  std::vector<Type> types;
  for (const auto& s : sets) {
    const Type& e = s.type().element();
    if (s.is_known() && s.length() == 0 && e.is_dynamic()) continue;
    types.push_back(e);
  }
  if (types.empty()) return Type();
  auto u = unify(types);
  if (!u) throw FunctionError("given sets must all have compatible element types");
  return *u;
}

bool contains_value(const std::vector<Value>& in, const Value& v) {
  for (const auto& e : in)
    if (raw_equals(e, v)) return true;
  return false;
}

// A set operation over every argument, left to right.
Function set_operation(bool variadic,
                       std::function<std::vector<Value>(const std::vector<Value>&, const std::vector<Value>&)> op) {
  Function fn;
  fn.params = {{variadic ? "first_set" : "a", Type::set(Type())}};
  if (variadic)
    fn.variadic = Function::Param{"other_sets", Type::set(Type())};
  else
    fn.params.push_back({"b", Type::set(Type())});
  fn.impl = [op](const std::vector<Value>& a) {
    Type ety = set_element_type(a);
    std::vector<Value> acc;
    for (size_t i = 0; i < a.size(); ++i) {
      std::string why;
      auto c = convert(a[i], Type::set(ety), &why);
      if (!c) throw FunctionError(why, static_cast<int>(i));
      acc = i == 0 ? c->elements() : op(acc, c->elements());
    }
    return Value::set(std::move(acc), ety);
  };
  return fn;
}

// A float64 result as cty makes it (cty.NumberFloatVal): printed as the shortest decimal.
Value float_value(double d) {
  if (std::isinf(d)) return Value::number(Number::infinity(d < 0));
  if (std::isnan(d)) throw FunctionError("the result is not a number");
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, d);
  return Value::number(*Number::parse(std::string_view(buf, r.ptr - buf)));
}

int64_t whole(const Value& v, int arg, const char* what) {
  std::optional<int64_t> n = v.as_number().to_int64();
  if (!n) throw FunctionError(std::string(what) + " must be a whole number", arg);
  return *n;
}

// Go's encoding/csv reader (RFC 4180, as csv.NewReader reads by default): records of
// fields, quoted fields with "" for a quote, blank lines skipped.
std::vector<std::vector<std::string>> read_csv(const std::string& s) {
  std::vector<std::vector<std::string>> records;
  size_t i = 0;
  int line = 1;
  size_t fields = 0;
  auto fail = [&](const std::string& why) -> void {
    throw FunctionError("CSV parse error on line " + std::to_string(line) + ": " + why);
  };
  while (i < s.size()) {
    if (s[i] == '\n' || (s[i] == '\r' && i + 1 < s.size() && s[i + 1] == '\n')) {  // a blank line
      i += s[i] == '\r' ? 2 : 1;
      ++line;
      continue;
    }
    std::vector<std::string> rec;
    int record_line = line;
    while (true) {
      std::string field;
      if (i < s.size() && s[i] == '"') {
        ++i;
        while (true) {
          if (i >= s.size()) {
            line = record_line;
            fail("extraneous or missing \" in quoted-field");
          }
          if (s[i] == '"') {
            if (i + 1 < s.size() && s[i + 1] == '"') {
              field += '"';
              i += 2;
              continue;
            }
            ++i;
            break;
          }
          if (s[i] == '\n') ++line;
          field += s[i++];
        }
        if (i < s.size() && s[i] != ',' && s[i] != '\n' && !(s[i] == '\r' && i + 1 < s.size() && s[i + 1] == '\n'))
          fail("extraneous or missing \" in quoted-field");
      } else {
        while (i < s.size() && s[i] != ',' && s[i] != '\n' && !(s[i] == '\r' && i + 1 < s.size() && s[i + 1] == '\n')) {
          if (s[i] == '"') fail("bare \" in non-quoted-field");
          field += s[i++];
        }
      }
      rec.push_back(std::move(field));
      if (i < s.size() && s[i] == ',') {
        ++i;
        continue;
      }
      if (i < s.size()) {
        i += s[i] == '\r' ? 2 : 1;
      }
      break;
    }
    if (fields == 0) fields = rec.size();
    if (rec.size() != fields) {
      line = record_line;
      fail("wrong number of fields");
    }
    records.push_back(std::move(rec));
    ++line;
  }
  return records;
}

}  // namespace

void add_set_functions(std::map<std::string, Function>& fs) {
  fs["setunion"] = set_operation(true, [](const std::vector<Value>& a, const std::vector<Value>& b) {
    std::vector<Value> out = a;
    for (const auto& v : b)
      if (!contains_value(out, v)) out.push_back(v);
    return out;
  });
  fs["setintersection"] = set_operation(true, [](const std::vector<Value>& a, const std::vector<Value>& b) {
    std::vector<Value> out;
    for (const auto& v : a)
      if (contains_value(b, v)) out.push_back(v);
    return out;
  });
  fs["setsubtract"] = set_operation(false, [](const std::vector<Value>& a, const std::vector<Value>& b) {
    std::vector<Value> out;
    for (const auto& v : a)
      if (!contains_value(b, v)) out.push_back(v);
    return out;
  });

  Function product;
  product.variadic = Function::Param{"sets", Type()};
  product.impl = [](const std::vector<Value>& a) {
    if (a.size() < 2) throw FunctionError("at least two arguments are required");
    std::vector<Type> etys;
    size_t lists = 0;
    for (size_t i = 0; i < a.size(); ++i) {
      const Type& t = a[i].type();
      switch (t.kind()) {
        case Type::Kind::Set: etys.push_back(t.element()); break;
        case Type::Kind::List:
          etys.push_back(t.element());
          ++lists;
          break;
        case Type::Kind::Tuple: {
          ++lists;
          if (t.elements().empty()) {
            etys.emplace_back();
            break;
          }
          auto u = unify(t.elements());
          if (!u) throw FunctionError("all elements must be of the same type", static_cast<int>(i));
          etys.push_back(*u);
          break;
        }
        default: throw FunctionError("a set or a list is required", static_cast<int>(i));
      }
    }
    Type ety = Type::tuple(etys);
    std::vector<std::vector<Value>> partial = {{}};
    for (size_t i = 0; i < a.size(); ++i) {
      std::vector<std::vector<Value>> next;
      for (const auto& p : partial)
        for (const auto& e : a[i].elements()) {
          auto row = p;
          row.push_back(convert(e, etys[i]).value_or(e));
          next.push_back(std::move(row));
        }
      partial = std::move(next);
    }
    std::vector<Value> out;
    out.reserve(partial.size());
    for (auto& p : partial) out.push_back(Value::tuple(std::move(p)));
    return lists == a.size() ? Value::list(std::move(out), ety) : Value::set(std::move(out), ety);
  };
  fs["setproduct"] = product;

  Function chunklist;
  chunklist.params = {{"list", Type::list(Type())}, {"size", Type::number()}};
  chunklist.impl = [](const std::vector<Value>& a) {
    int64_t size = whole(a[1], 1, "size");
    if (size < 0) throw FunctionError("the size argument must be positive");
    const Type& lt = a[0].type();
    std::vector<Value> out;
    const auto& items = a[0].elements();
    if (items.empty()) return Value::list({}, lt);
    if (size == 0) return Value::list({a[0]}, lt);
    for (size_t i = 0; i < items.size(); i += static_cast<size_t>(size)) {
      std::vector<Value> chunk(items.begin() + static_cast<std::ptrdiff_t>(i),
                               items.begin() + static_cast<std::ptrdiff_t>(std::min(items.size(), i + size)));
      out.push_back(Value::list(std::move(chunk), lt.element()));
    }
    return Value::list(std::move(out), lt);
  };
  fs["chunklist"] = chunklist;

  Function range;
  range.variadic = Function::Param{"params", Type::number()};
  range.result_type = Type::list(Type::number());
  range.impl = [](const std::vector<Value>& a) {
    Number start = 0, end = 0, step = 1;
    switch (a.size()) {
      case 1:
        end = a[0].as_number();
        step = end < Number(0) ? -1 : 1;
        break;
      case 2:
        start = a[0].as_number();
        end = a[1].as_number();
        step = end < start ? -1 : 1;
        break;
      case 3:
        start = a[0].as_number();
        end = a[1].as_number();
        step = a[2].as_number();
        break;
      default: throw FunctionError("must have one, two, or three arguments");
    }
    // cty means to refuse a zero step but compares it by identity, so a zero step runs into
    // the 1024 values limit instead (as in Packer).
    bool down = step < Number(0);
    if (down && start < end) throw FunctionError("end must be less than start when step is negative", 1);
    if (!down && end < start) throw FunctionError("end must be greater than start when step is positive", 1);
    std::vector<Value> out;
    for (Number n = start; down ? end < n : n < end; n = n + step) {
      if (out.size() >= 1024)
        throw FunctionError(
            "more than 1024 values were generated; either decrease the difference between start and end or use a "
            "smaller step");
      out.push_back(Value::number(n));
    }
    return Value::list(std::move(out), Type::number());
  };
  fs["range"] = range;

  Function log;
  log.params = {{"num", Type::number()}, {"base", Type::number()}};
  log.result_type = Type::number();
  log.impl = [](const std::vector<Value>& a) {
    return float_value(std::log(a[0].as_number().to_double()) / std::log(a[1].as_number().to_double()));
  };
  fs["log"] = log;

  Function pow;
  pow.params = {{"num", Type::number()}, {"power", Type::number()}};
  pow.result_type = Type::number();
  pow.impl = [](const std::vector<Value>& a) {
    return float_value(std::pow(a[0].as_number().to_double(), a[1].as_number().to_double()));
  };
  fs["pow"] = pow;

  Function signum;
  signum.params = {{"num", Type::number()}};
  signum.result_type = Type::number();
  signum.impl = [](const std::vector<Value>& a) {
    // cty reads the argument as a Go int: a fraction is an error.
    std::optional<int64_t> n = a[0].as_number().to_int64();
    if (!n) throw FunctionError("value must be a whole number, between -9223372036854775808 and 9223372036854775807");
    return Value::number(Number(*n == 0 ? 0 : *n < 0 ? -1 : 1));
  };
  fs["signum"] = signum;

  Function parseint;
  parseint.params = {{"number", Type()}, {"base", Type::number()}};
  parseint.result_type = Type::number();
  parseint.impl = [](const std::vector<Value>& a) {
    if (a[0].type() != Type::string())
      throw FunctionError("string required, but have " + a[0].type().friendly_name(), 0);
    std::optional<int64_t> base = a[1].as_number().to_int64();
    if (!base || *base < 2 || *base > 62)
      throw FunctionError("base must be a whole number between 2 and 62 inclusive", 1);
    const std::string& s = a[0].as_string();
    auto bad = [&] {
      return FunctionError("cannot parse \"" + s + "\" as a base " + std::to_string(*base) + " integer", 0);
    };
    size_t i = 0;
    bool neg = false;
    if (i < s.size() && (s[i] == '+' || s[i] == '-')) neg = s[i++] == '-';
    if (i == s.size()) throw bad();
    Number n = 0;
    for (; i < s.size(); ++i) {
      char c = s[i];
      int d = c >= '0' && c <= '9'   ? c - '0'
              : c >= 'a' && c <= 'z' ? c - 'a' + 10
              : c >= 'A' && c <= 'Z' ? c - 'A' + (*base <= 36 ? 10 : 36)
                                     : 99;
      if (d >= *base) throw bad();
      n = n * Number(*base) + Number(d);
    }
    return Value::number(neg ? -n : n);
  };
  fs["parseint"] = parseint;

  Function csvdecode;
  csvdecode.params = {{"str", Type::string()}};
  csvdecode.impl = [](const std::vector<Value>& a) {
    auto records = read_csv(a[0].as_string());
    if (records.empty()) throw FunctionError("missing header line");
    const auto& headers = records[0];
    std::map<std::string, Type> attrs;
    for (const auto& h : headers)
      if (!attrs.emplace(h, Type::string()).second) throw FunctionError("duplicate column name \"" + h + "\"");
    Type ety = Type::object(attrs);
    std::vector<Value> rows;
    for (size_t r = 1; r < records.size(); ++r) {
      std::map<std::string, Value> row;
      for (size_t c = 0; c < headers.size(); ++c) row[headers[c]] = Value::string(records[r][c]);
      rows.push_back(Value::object(std::move(row)));
    }
    return Value::list(std::move(rows), ety);
  };
  fs["csvdecode"] = csvdecode;
}

}  // namespace imgbake::hcl
