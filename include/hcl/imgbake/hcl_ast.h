// The syntax tree of HCL's native syntax (hclsyntax): a body of attributes and blocks, and
// expressions. Every node keeps its source range.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "imgbake/hcl_diagnostic.h"
#include "imgbake/hcl_value.h"

namespace imgbake::hcl {

// One step of a traversal: `a` (root), `.b` (attribute), `[0]` or `["k"]` (index by a literal).
struct Traverser {
  enum class Kind { Root, Attr, Index };
  Kind kind = Kind::Root;
  std::string name;
  Value key;
  Range range;
};
using Traversal = std::vector<Traverser>;

enum class Operator {
  Or,
  And,
  Not,
  Equal,
  NotEqual,
  Less,
  LessEqual,
  Greater,
  GreaterEqual,
  Add,
  Subtract,
  Multiply,
  Divide,
  Modulo,
  Negate
};
const char* operator_symbol(Operator op);

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  enum class Kind {
    Literal,            // value
    Template,           // parts: literals and interpolations, joined as strings
    TemplateWrap,       // "${x}": a = x, its value unconverted
    ScopeTraversal,     // traversal from a variable
    RelativeTraversal,  // a = source, traversal applied to its value
    Index,              // a[b]
    Splat,              // a = source, b = each (evaluated against the anonymous symbol)
    AnonSymbol,         // the element a splat's `each` is applied to
    FunctionCall,       // name(args...), expand_final for `args...`
    Conditional,        // a ? b : c
    Binary,             // a op b
    Unary,              // op a
    Tuple,              // [items]
    Object,             // {keys[i] = items[i]}
    ObjectKey,          // a: a bare identifier key stands for its name unless parenthesized
    For,                // [for key_var, value_var in a : b] / {for ... : key => b ...} if c
    TemplateIf,         // %{if a}b%{else}c%{endif}
    TemplateFor,        // %{for key_var, value_var in a}b%{endfor}
    Parens,             // (a)
  };
  Kind kind = Kind::Literal;
  Range range;
  Value value;
  Traversal traversal;
  std::string name;
  Operator op = Operator::Add;
  ExprPtr a, b, c, key;
  std::vector<ExprPtr> items;  // template parts, call arguments, tuple items, object values
  std::vector<ExprPtr> keys;   // object keys
  std::string key_var, value_var;
  bool expand_final = false;   // f(x...)
  bool group = false;          // {for ...: k => v...}
  bool object_result = false;  // a `{for ...}` (else `[for ...]`)
  bool json = false;           // an object of HCL's JSON syntax: its keys are templates, repeating one is an error
  Range open_range;            // the call's "(", the for's opening bracket
  // HCL's JSON syntax: a string whose template does not parse; its errors are reported when
  // it is evaluated, as hcl reports them.
  std::vector<Diagnostic> deferred;
};

ExprPtr make_expr(Expr::Kind kind, Range range);

struct Body;

struct Attribute {
  std::string name;
  ExprPtr expr;
  Range range;
  Range name_range;
};

struct Block {
  std::string type;
  std::vector<std::string> labels;
  std::vector<Range> label_ranges;
  std::unique_ptr<Body> body;
  Range type_range;
  Range open_brace_range;
  Range close_brace_range;
};

struct Body {
  std::vector<Attribute> attributes;  // in source order; names are unique
  std::vector<Block> blocks;
  Range range;
  const Attribute* attribute(const std::string& name) const;
};

struct File {
  std::string name;
  std::string source;
  Body body;
};

// Where an expression starts, as hashicorp/hcl's StartRange (a function argument's errors
// point there): a template's first part, a call's name and "(", a binary operation's left side.
Range start_range(const Expr& e);

// The variables an expression refers to (each a traversal from a root name), in source order.
std::vector<Traversal> variables(const Expr& e);

}  // namespace imgbake::hcl
