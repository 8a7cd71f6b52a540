// The HCL native-syntax parser: structure, and errors a person can act on.
#include <gtest/gtest.h>

#include "hcl_test_util.h"

namespace imgbake::hcl {
namespace {

File parse_ok(const std::string& src) {
  Diagnostics d;
  File f = parse_file(src, "main.pkr.hcl", d);
  EXPECT_TRUE(d.empty()) << format(d, src);
  return f;
}

std::string parse_errors(const std::string& src) {
  Diagnostics d;
  File f = parse_file(src, "main.pkr.hcl", d);
  return format(d, f.source);
}

TEST(HclParse, ReadsAttributesAndBlocksWithLabels) {
  File f = parse_ok(
      "# a Packer template\n"
      "packer {\n"
      "  required_version = \">= 1.6.0\"\n"
      "}\n"
      "\n"
      "source \"qemu\" \"tiny\" {\n"
      "  disk_size = 1024 // MiB\n"
      "  boot_command = [\"<enter>\",\n"
      "                  \"<wait>\"]\n"
      "  /* a block comment */ headless = true\n"
      "}\n"
      "build { sources = [\"source.qemu.tiny\"] }\n");
  ASSERT_EQ(f.body.blocks.size(), 3U);
  EXPECT_TRUE(f.body.attributes.empty());
  const Block& src = f.body.blocks[1];
  EXPECT_EQ(src.type, "source");
  EXPECT_EQ(src.labels, (std::vector<std::string>{"qemu", "tiny"}));
  EXPECT_EQ(src.label_ranges[1].start.line, 6);
  EXPECT_EQ(src.label_ranges[1].start.column, 15);
  ASSERT_EQ(src.body->attributes.size(), 3U);
  EXPECT_EQ(src.body->attributes[0].name, "disk_size");
  EXPECT_EQ(src.body->attributes[2].name, "headless");
  EXPECT_EQ(f.body.blocks[2].body->attributes[0].name, "sources");
  const Attribute* v = f.body.blocks[0].body->attribute("required_version");
  ASSERT_NE(v, nullptr);
  EXPECT_EQ(v->name_range.start.line, 3);
  EXPECT_EQ(v->name_range.start.column, 3);
  EXPECT_EQ(v->name_range.start.byte, 31);
}

TEST(HclParse, BlockLabelsMayBeIdentifiers) {
  File f = parse_ok("variable region { default = \"eu\" }\n");
  ASSERT_EQ(f.body.blocks.size(), 1U);
  EXPECT_EQ(f.body.blocks[0].labels, (std::vector<std::string>{"region"}));
}

TEST(HclParse, ExpressionShapes) {
  Diagnostics d;
  auto kind = [&](const std::string& src) {
    ExprPtr e = parse_expression(src, "x.hcl", d);
    EXPECT_FALSE(d.has_errors()) << src << "\n" << format(d, src);
    return e->kind;
  };
  using K = Expr::Kind;
  EXPECT_EQ(kind("a.b[0][\"c\"]"), K::ScopeTraversal);  // literal keys stay in the traversal
  EXPECT_EQ(kind("a[b]"), K::Index);
  EXPECT_EQ(kind("a.*.b"), K::Splat);
  EXPECT_EQ(kind("a[*].b"), K::Splat);
  EXPECT_EQ(kind("f(x)[0]"), K::RelativeTraversal);
  EXPECT_EQ(kind("\"${a}\""), K::TemplateWrap);
  EXPECT_EQ(kind("\"x${a}\""), K::Template);
  EXPECT_EQ(kind("[for x in y : x]"), K::For);
  EXPECT_EQ(kind("{for k, v in y : k => v...}"), K::For);
  EXPECT_EQ(kind("a ? b : c"), K::Conditional);
  EXPECT_EQ(kind("!a"), K::Unary);
  ExprPtr e = parse_expression("a.b[0].c", "x.hcl", d);
  ASSERT_EQ(e->traversal.size(), 4U);
  EXPECT_EQ(e->traversal[2].kind, Traverser::Kind::Index);
  EXPECT_EQ(e->traversal[3].name, "c");
}

TEST(HclParse, OperatorsBindByHclPrecedence) {
  // * over +, + over comparison, comparison over ==, == over &&, && over ||, all over ?:.
  Diagnostics d;
  ExprPtr e = parse_expression("a || b && c == d < e + f * g ? h : i", "x.hcl", d);
  ASSERT_FALSE(d.has_errors());
  ASSERT_EQ(e->kind, Expr::Kind::Conditional);
  const Expr* x = e->a.get();
  for (Operator op :
       {Operator::Or, Operator::And, Operator::Equal, Operator::Less, Operator::Add, Operator::Multiply}) {
    ASSERT_EQ(x->kind, Expr::Kind::Binary);
    EXPECT_EQ(x->op, op) << operator_symbol(op);
    x = x->b.get();
  }
  // Left-associative: 8 - 2 - 1 is (8 - 2) - 1.
  ExprPtr s = parse_expression("8 - 2 - 1", "x.hcl", d);
  ASSERT_EQ(s->kind, Expr::Kind::Binary);
  EXPECT_EQ(s->a->kind, Expr::Kind::Binary);
  EXPECT_EQ(s->b->kind, Expr::Kind::Literal);
}

TEST(HclParse, VariablesListsReferencesButNotLoopNames) {
  Diagnostics d;
  ExprPtr e = parse_expression("[for i, s in var.list : \"${s}-${local.sep}\" if i > var.min]", "x.hcl", d);
  ASSERT_FALSE(d.has_errors());
  std::vector<std::string> roots;
  for (const auto& t : variables(*e)) roots.push_back(t[0].name + "." + t[1].name);
  EXPECT_EQ(roots, (std::vector<std::string>{"var.list", "local.sep", "var.min"}));
}

TEST(HclParse, ErrorsNameFileLineColumnAndShowTheLine) {
  EXPECT_EQ(parse_errors("a = \"a value\", b = \"b value\"\n"),
            "main.pkr.hcl:1:14: error: Unexpected comma after argument; Argument definitions must be separated by "
            "newlines, not commas. An argument definition must end with a newline.\n"
            "  1 | a = \"a value\", b = \"b value\"\n"
            "    |              ^");
  EXPECT_EQ(parse_errors("source \"qemu\" \"x\" {\n  disk_size = \n}\n"),
            "main.pkr.hcl:2:15: error: Invalid expression; Expected the start of an expression, but found an "
            "invalid expression token.\n"
            "  2 |   disk_size = \n"
            "    |               ^");
  EXPECT_EQ(parse_errors("a {\n"),
            "main.pkr.hcl:1:3: error: Unclosed configuration block; There is no closing brace for this block before "
            "the end of the file. This may be caused by incorrect brace nesting elsewhere in this file.\n"
            "  1 | a {\n"
            "    |   ^");
}

TEST(HclParse, ReportsEveryMistakeItCanFind) {
  std::string errs = parse_errors(
      "a = 1\n"
      "a = 2\n"
      "b = [1, 2\n"
      "\"quoted\" = 3\n");
  EXPECT_NE(errs.find("main.pkr.hcl:2:1: error: Attribute redefined; The argument \"a\" was already set at "
                      "main.pkr.hcl:1,1."),
            std::string::npos)
      << errs;
  EXPECT_NE(errs.find("main.pkr.hcl:4:1: error: Missing item separator"), std::string::npos) << errs;
}

TEST(HclParse, StringErrors) {
  EXPECT_NE(parse_errors("a = \"abc\n").find("main.pkr.hcl:1:9: error: Unterminated template string"),
            std::string::npos)
      << parse_errors("a = \"abc\n");
  EXPECT_NE(parse_errors("a = \"\\q\"\n").find("error: Invalid escape sequence"), std::string::npos);
  EXPECT_NE(parse_errors("a = <<EOT\nno end\n").find("error: Unterminated template string"), std::string::npos);
  EXPECT_NE(parse_errors("a = \"${b\"\n").find("error:"), std::string::npos);
  EXPECT_NE(parse_errors("a = \"%{ bogus }\"\n").find("Invalid template control keyword"), std::string::npos);
  EXPECT_NE(parse_errors("a = \"%{ if x }y\"\n").find("missing its corresponding endif"), std::string::npos);
}

TEST(HclParse, DeepNestingIsAnErrorNotACrash) {
  Diagnostics ok;
  parse_expression(std::string(300, '(') + "1" + std::string(300, ')'), "x.hcl", ok);
  EXPECT_TRUE(ok.empty()) << format(ok, "");
  for (const std::string& deep :
       {std::string(20000, '(') + "1" + std::string(20000, ')'), std::string(20000, '!') + "true",
        std::string(20000, '[') + std::string(20000, ']')}) {
    Diagnostics d;
    parse_expression(deep, "x.hcl", d);
    EXPECT_NE(format(d, deep).find("error: Nesting too deep; Expressions and blocks may be nested at most 400 deep."),
              std::string::npos)
        << format(d, "");
  }
  std::string blocks;
  for (int i = 0; i < 20000; ++i) blocks += "a {\n";
  EXPECT_NE(parse_errors(blocks).find("main.pkr.hcl:400:3: error: Nesting too deep"), std::string::npos);
}

}  // namespace
}  // namespace imgbake::hcl
