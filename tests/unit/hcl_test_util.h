// Helpers for the hcl module's tests: evaluate a source expression or template and say why
// when it does not evaluate cleanly.
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "imgbake/hcl_eval.h"
#include "imgbake/hcl_parse.h"

namespace imgbake::hcl::testing {

// The value of `src` (an expression), with the standard functions and `ctx`'s variables.
inline Value eval_ok(const std::string& src, EvalContext ctx = {}) {
  Diagnostics d;
  ExprPtr e = parse_expression(src, "test.hcl", d);
  if (ctx.functions.empty()) ctx.functions = standard_functions();
  Value v = evaluate(*e, ctx, d, "test.hcl");
  EXPECT_TRUE(d.empty()) << src << "\n" << format(d, src);
  return v;
}

// The diagnostics (formatted) that parsing and evaluating `src` produce.
inline std::string eval_errors(const std::string& src, EvalContext ctx = {}) {
  Diagnostics d;
  ExprPtr e = parse_expression(src, "test.hcl", d);
  if (ctx.functions.empty()) ctx.functions = standard_functions();
  if (!d.has_errors()) evaluate(*e, ctx, d, "test.hcl");
  return format(d, src);
}

inline Value str(const std::string& s) { return Value::string(s); }
inline Value num(int64_t n) { return Value::number(Number(n)); }
inline Value num(const char* decimal) { return Value::number(*Number::parse(decimal)); }

}  // namespace imgbake::hcl::testing
