// Evaluating HCL expressions (hclsyntax's Value methods) against variables and functions.
// An expression that cannot be evaluated adds a diagnostic at its source range and yields an
// unknown value, so evaluation goes on and reports every problem; unknown inputs (values
// only known at build time) propagate to unknown results instead of errors.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "imgbake/hcl_ast.h"

namespace imgbake::hcl {

// A function's failure, for one argument (index) or for the call (-1).
class FunctionError : public std::runtime_error {
 public:
  explicit FunctionError(const std::string& message, int argument = -1)
      : std::runtime_error(message), argument(argument) {}
  int argument;
};

struct Function {
  struct Param {
    std::string name;
    Type type;  // arguments are converted to it
    bool allow_null = false;
    bool allow_unknown = false;  // otherwise an unknown argument makes the result unknown
  };
  std::vector<Param> params;
  std::optional<Param> variadic;
  // The result's type when some argument is unknown (dynamic when it depends on values).
  Type result_type;
  std::function<Value(const std::vector<Value>& args)> impl;  // throws FunctionError
  // try() and can() (hcl's ext/tryfunc) see their arguments' errors: the evaluator calls them
  // with each argument evaluated on its own, not through `impl`.
  enum class Lazy { None, Try, Can };
  Lazy lazy = Lazy::None;
};

struct EvalContext {
  std::map<std::string, Value> variables;
  std::map<std::string, Function> functions;
  const EvalContext* parent = nullptr;

  const Value* variable(const std::string& name) const;
  const Function* function(const std::string& name) const;
};

// `file` names the source in diagnostics.
Value evaluate(const Expr& e, const EvalContext& ctx, Diagnostics& diags, const std::string& file);

// Applies one traversal step to a value (as `value.name`, `value[key]`); nullopt and a
// sentence in `error` when the step does not apply.
std::optional<Value> traverse(const Value& v, const Traverser& step, std::string& summary, std::string& error);

// cty's standard library (function/stdlib) as Packer uses it: strings (format, replace,
// split, trim*, substr, ...), collections (keys, merge, flatten, lookup, ...), numbers, JSON
// and conversions, and try/can. Packer's own (file, hashes, time) are the template module's.
std::map<std::string, Function> standard_functions();

// cty's JSON form of a value (jsonencode): keys sorted, strings escaped as Go does.
std::string json_encode(const Value& v);
// A value from JSON (jsondecode): objects and arrays become objects and tuples.
std::optional<Value> json_decode(std::string_view text, std::string* error = nullptr);

}  // namespace imgbake::hcl
