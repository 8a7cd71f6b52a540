// Evaluating HCL expressions: what a Packer template's values come out as.
#include <gtest/gtest.h>

#include "hcl_test_util.h"

namespace imgbake::hcl {
namespace {

using testing::eval_errors;
using testing::eval_ok;
using testing::num;
using testing::str;

EvalContext vars() {
  EvalContext ctx;
  ctx.variables["var"] = Value::object({
      {"name", str("web")},
      {"count", num(3)},
      {"zones", Value::list({str("a"), str("b")}, Type::string())},
      {"disks", Value::tuple({Value::object({{"size", num(10)}, {"type", str("ssd")}}),
                              Value::object({{"size", num(20)}, {"type", str("hdd")}})})},
      {"tags", Value::map({{"team", str("ops")}, {"env", str("dev")}}, Type::string())},
      {"empty", Value::null(Type::string())},
  });
  ctx.variables["build"] = Value::object({{"ID", Value::unknown(Type::string())}});
  return ctx;
}

TEST(HclEval, Literals) {
  EXPECT_TRUE(raw_equals(eval_ok("42"), num(42)));
  EXPECT_TRUE(raw_equals(eval_ok("true"), Value::boolean(true)));
  EXPECT_TRUE(eval_ok("null").is_null());
  EXPECT_TRUE(
      raw_equals(eval_ok("\"a\\tb\\n\\\"q\\\" \\u00e9 \\U0001F600\""), str("a\tb\n\"q\" \xC3\xA9 \xF0\x9F\x98\x80")));
  EXPECT_TRUE(raw_equals(eval_ok("\"$${not} %%{this}\""), str("${not} %{this}")));
  EXPECT_EQ(eval_ok("[1, \"two\", [true]]").str(), "[1, \"two\", [true]]");
  EXPECT_EQ(eval_ok("{ a = 1, \"b c\" = 2\n d: 3 }").str(), "{\"a\" = 1, \"b c\" = 2, \"d\" = 3}");
  EXPECT_EQ(eval_ok("[\n  1,\n  2,\n]").str(), "[1, 2]");
}

TEST(HclEval, ArithmeticComparisonAndLogic) {
  EXPECT_EQ(eval_ok("1 + 2 * 3").str(), "7");
  EXPECT_EQ(eval_ok("(1 + 2) * 3").str(), "9");
  EXPECT_EQ(eval_ok("10 / 4").str(), "2.5");
  EXPECT_EQ(eval_ok("-3 % 2").str(), "-1");
  EXPECT_EQ(eval_ok("\"5\" + 1").str(), "6");  // strings convert to numbers
  EXPECT_EQ(eval_ok("1 < 2 && !(3 >= 4) || false").str(), "true");
  EXPECT_EQ(eval_ok("\"1\" == 1").str(), "false");  // no conversion for equality
  EXPECT_EQ(eval_ok("[1, \"a\"] == [1, \"a\"]").str(), "true");
  EXPECT_EQ(eval_ok("{a = 1} != {a = 2}").str(), "true");
  EXPECT_EQ(eval_ok("null == null").str(), "true");
  EXPECT_EQ(eval_ok("true ? \"yes\" : \"no\"").str(), "\"yes\"");
  EXPECT_EQ(eval_ok("false ? 1 : \"two\"").str(), "\"two\"");
  EXPECT_EQ(eval_ok("true ? 1 : \"two\"").str(), "\"1\"");  // both sides unify to string
}

TEST(HclEval, VariablesTraversalsAndIndexes) {
  EvalContext ctx = vars();
  EXPECT_EQ(eval_ok("var.name", ctx).str(), "\"web\"");
  EXPECT_EQ(eval_ok("var.zones[1]", ctx).str(), "\"b\"");
  EXPECT_EQ(eval_ok("var.zones.0", ctx).str(), "\"a\"");  // legacy index syntax
  EXPECT_EQ(eval_ok("var.tags[\"env\"]", ctx).str(), "\"dev\"");
  EXPECT_EQ(eval_ok("var.tags.team", ctx).str(), "\"ops\"");
  EXPECT_EQ(eval_ok("var.disks[var.count - 2].type", ctx).str(), "\"hdd\"");
  EXPECT_EQ(eval_ok("var.zones[\"0\"]", ctx).str(), "\"a\"");
}

TEST(HclEval, Splats) {
  EvalContext ctx = vars();
  EXPECT_EQ(eval_ok("var.disks[*].size", ctx).str(), "[10, 20]");
  EXPECT_EQ(eval_ok("var.disks.*.type", ctx).str(), "[\"ssd\", \"hdd\"]");
  EXPECT_EQ(eval_ok("var.name[*]", ctx).str(), "[\"web\"]");  // a single value becomes a tuple of one
  EXPECT_EQ(eval_ok("var.empty[*]", ctx).str(), "[]");        // null becomes an empty tuple
  EXPECT_EQ(eval_ok("length(var.zones[*])", ctx).str(), "2");
}

TEST(HclEval, ForExpressions) {
  EvalContext ctx = vars();
  EXPECT_EQ(eval_ok("[for z in var.zones : upper(z)]", ctx).str(), "[\"A\", \"B\"]");
  EXPECT_EQ(eval_ok("[for i, z in var.zones : \"${i}:${z}\"]", ctx).str(), "[\"0:a\", \"1:b\"]");
  EXPECT_EQ(eval_ok("{for k, v in var.tags : v => k}", ctx).str(), "{\"dev\" = \"env\", \"ops\" = \"team\"}");
  EXPECT_EQ(eval_ok("[for d in var.disks : d.size if d.type == \"hdd\"]", ctx).str(), "[20]");
  EXPECT_EQ(eval_ok("{for d in var.disks : (d.size > 15 ? \"big\" : \"small\") => d.type...}", ctx).str(),
            "{\"big\" = [\"hdd\"], \"small\" = [\"ssd\"]}");
  EXPECT_EQ(eval_ok("{for s in [\"a\", \"b\", \"a\"] : s => s...}").str(), "{\"a\" = [\"a\", \"a\"], \"b\" = [\"b\"]}");
}

TEST(HclEval, FunctionCallsAndExpansion) {
  EvalContext ctx = vars();
  EXPECT_EQ(eval_ok("upper(var.name)", ctx).str(), "\"WEB\"");
  EXPECT_EQ(eval_ok("max(1, 7, 3)").str(), "7");
  EXPECT_EQ(eval_ok("max([4, 9, 2]...)").str(), "9");
  EXPECT_EQ(eval_ok("join(\"-\", var.zones)", ctx).str(), "\"a-b\"");
  EXPECT_EQ(eval_ok("length(\"h\xC3\xA9llo\")").str(), "5");  // characters, not bytes
  EXPECT_EQ(eval_ok("tonumber(\"12\") + 1").str(), "13");
  EXPECT_EQ(eval_ok("concat(var.zones, var.zones)", ctx).type().str(), "list(string)");
  EXPECT_EQ(eval_ok("concat(var.zones, [1])", ctx).type().str(), "tuple([string, string, number])");
}

TEST(HclEval, TemplatesAndDirectives) {
  EvalContext ctx = vars();
  EXPECT_EQ(eval_ok("\"${var.name}-${var.count}\"", ctx).str(), "\"web-3\"");
  EXPECT_EQ(eval_ok("\"${var.count}\"", ctx).str(), "3");  // a lone interpolation keeps its type
  EXPECT_EQ(eval_ok("\"%{ if var.count > 2 }many%{ else }few%{ endif }\"", ctx).str(), "\"many\"");
  EXPECT_EQ(eval_ok("\"%{ for z in var.zones }[${z}]%{ endfor }\"", ctx).str(), "\"[a][b]\"");
  EXPECT_EQ(eval_ok("\"%{ for k, v in var.tags }${k}=${v};%{ endfor }\"", ctx).str(), "\"env=dev;team=ops;\"");
  // Strip markers remove the white space (newlines included) on their side.
  EXPECT_EQ(eval_ok("\"a   ${~ var.name ~}   b\"", ctx).str(), "\"awebb\"");
  EXPECT_EQ(eval_ok("<<EOT\n%{ for z in var.zones ~}\n- ${z}\n%{ endfor ~}\nEOT\n", ctx).str(), "\"- a\\n- b\\n\"");
}

TEST(HclEval, Heredocs) {
  EvalContext ctx = vars();
  EXPECT_EQ(eval_ok("<<EOT\nhello\n  ${var.name}\nEOT\n", ctx).str(), "\"hello\\n  web\\n\"");
  EXPECT_EQ(eval_ok("<<-EOT\n    a\n      b\n    EOT\n").str(), "\"a\\n  b\\n\"");
  EXPECT_EQ(eval_ok("<<EOT\n\"quotes\" and \\n stay\nEOT\n").str(), "\"\\\"quotes\\\" and \\\\n stay\\n\"");
}

TEST(HclEval, UnknownValuesPropagate) {
  EvalContext ctx = vars();
  Value v = eval_ok("\"image-${build.ID}\"", ctx);
  EXPECT_FALSE(v.is_known());
  EXPECT_EQ(v.type().str(), "string");
  EXPECT_FALSE(eval_ok("upper(build.ID)", ctx).is_known());
  EXPECT_FALSE(eval_ok("build.ID == \"x\" ? 1 : 2", ctx).is_known());
  EXPECT_TRUE(eval_ok("[build.ID, 1]", ctx).is_known());  // known tuple with an unknown element
}

TEST(HclEval, ConversionRules) {
  std::string why;
  EXPECT_EQ(convert(num("1.50"), Type::string())->str(), "\"1.5\"");
  EXPECT_EQ(convert(Value::boolean(true), Type::string())->str(), "\"true\"");
  EXPECT_EQ(convert(str("false"), Type::boolean())->str(), "false");
  EXPECT_FALSE(convert(str("yes"), Type::boolean(), &why).has_value());
  EXPECT_EQ(why, "a bool is required");
  EXPECT_FALSE(convert(num(1), Type::boolean(), &why).has_value());
  EXPECT_EQ(why, "bool required");
  Value t = Value::tuple({num(1), str("2")});
  EXPECT_EQ(convert(t, Type::list(Type::string()))->str(), "[\"1\", \"2\"]");
  EXPECT_EQ(convert(t, Type::list(Type()))->type().str(), "list(string)");  // unified element type
  EXPECT_EQ(convert(Value::tuple({str("b"), str("a"), str("b")}), Type::set(Type::string()))->str(), "[\"a\", \"b\"]");
  Type obj = Type::object({{"name", Type::string()}, {"size", Type::number()}}, {"size"});
  EXPECT_EQ(convert(Value::object({{"name", str("x")}, {"extra", num(1)}}), obj)->str(),
            "{\"name\" = \"x\", \"size\" = null}");
  EXPECT_FALSE(convert(Value::object({{"size", num(1)}}), obj, &why).has_value());
  EXPECT_EQ(why, "attribute \"name\" is required");
  EXPECT_EQ(convert(Value::object({{"a", num(1)}}), Type::map(Type::string()))->str(), "{\"a\" = \"1\"}");
}

TEST(HclEval, ErrorsSayWhereAndWhat) {
  EvalContext ctx = vars();
  EXPECT_EQ(eval_errors("var.nme", ctx),
            "test.hcl:1:4: error: Unsupported attribute; This object does not have an attribute named \"nme\".\n"
            "  1 | var.nme\n"
            "    |    ^^^^");
  EXPECT_NE(eval_errors("locals.x", ctx)
                .find("test.hcl:1:1: error: Unknown variable; There is no variable named \"locals\"."),
            std::string::npos);
  EXPECT_NE(eval_errors("var.zones[5]", ctx).find("test.hcl:1:10: error: Invalid index"), std::string::npos);
  EXPECT_NE(eval_errors("nosuch(1)").find("error: Call to unknown function; There is no function named \"nosuch\"."),
            std::string::npos);
  EXPECT_NE(eval_errors("upper(1, 2)").find("Too many function arguments"), std::string::npos);
  EXPECT_NE(eval_errors("\"a\" * 2")
                .find("test.hcl:1:1: error: Invalid operand; Unsuitable value for left operand: "
                      "a number is required."),
            std::string::npos);
  EXPECT_NE(eval_errors("\"x${var.empty}\"", ctx).find("Cannot include a null value in a string template"),
            std::string::npos);
  EXPECT_NE(eval_errors("{for s in [\"a\", \"a\"] : s => s}").find("Duplicate object key"), std::string::npos);
  EXPECT_NE(eval_errors("0 / 0").find("can't divide zero by zero"), std::string::npos);
  EXPECT_NE(eval_errors("max(1...)").find("Invalid expanding argument value"), std::string::npos);
}

}  // namespace
}  // namespace imgbake::hcl
