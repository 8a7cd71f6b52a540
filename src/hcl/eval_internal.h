// The evaluator's state, shared by eval.cpp (expressions), eval_ops.cpp (operators) and
// eval_template.cpp (templates and for expressions).
#pragma once

#include <string>
#include <vector>

#include "imgbake/hcl_eval.h"

namespace imgbake::hcl {

class Evaluator {
 public:
  Evaluator(const std::string& file, Diagnostics& diags) : file_(file), diags_(diags) {}
  Value eval(const Expr& e, const EvalContext& ctx);

 private:
  const std::string& file_;
  Diagnostics& diags_;
  std::vector<Value> splat_items_;  // what AnonSymbol stands for, innermost last

  Value fail(const Range& r, std::string summary, std::string detail);
  // `e`'s value converted to `want`, or nullopt after a diagnostic (`summary`, with
  // `null_detail` when the value is null, else `type_detail`).
  std::optional<Value> eval_as(const Expr& e, const EvalContext& ctx, const Type& want, const char* summary,
                               const char* null_detail, const char* type_detail);
  Value apply(Value v, const Traversal& t, size_t from);
  Value splat(const Expr& e, const EvalContext& ctx);
  Value call(const Expr& e, const EvalContext& ctx);
  Value lazy_call(const Expr& e, const EvalContext& ctx, Function::Lazy kind);
  Value conditional(const Expr& e, const EvalContext& ctx);
  Value object(const Expr& e, const EvalContext& ctx);
  // eval_ops.cpp
  Value binary(const Expr& e, const EvalContext& ctx);
  Value unary(const Expr& e, const EvalContext& ctx);
  // eval_template.cpp
  Value template_expr(const Expr& e, const EvalContext& ctx);
  bool template_append(const Expr& part, const EvalContext& ctx, std::string& out, bool& unknown);
  Value for_expr(const Expr& e, const EvalContext& ctx);
  // Calls `body` with a child context per element of `coll`; false if `coll` cannot be iterated.
  bool for_each(const Expr& e, const Value& coll, const EvalContext& ctx,
                const std::function<bool(const EvalContext&, const Value& key)>& body);
};

// Whether two values are equal as HCL's == sees them: an unknown bool when either is unknown.
Value values_equal(const Value& a, const Value& b);

}  // namespace imgbake::hcl
