// HCL's JSON syntax as bodies and expressions (hashicorp/hcl json/structure.go): a schema
// decides which properties are blocks; labels are nested object keys; an array of objects is
// one block per object (or, as a body, the objects' properties together); every other value is
// an expression in which strings are templates (parsed where they stand in the file).
#include <algorithm>

#include "imgbake/hcl_parse.h"
#include "json_syntax.h"

namespace imgbake::hcl {

const BodySchema::BlockType* BodySchema::block(const std::string& type) const {
  for (const auto& b : blocks)
    if (b.type == type) return &b;
  return nullptr;
}

namespace {

using json_syntax::Node;
using json_syntax::Property;

// A position `p` of a text that starts at `origin` in the file, as a position in the file
// (hcl's parsers take a start position; imgbake's start at 1:1 and are moved after).
Pos moved(Pos p, Pos origin) {
  if (p.line == 1) p.column += origin.column - 1;
  p.line += origin.line - 1;
  p.byte += origin.byte;
  return p;
}

Range moved(Range r, Pos origin) { return {moved(r.start, origin), moved(r.end, origin)}; }

void move_expr(Expr& e, Pos origin) {
  e.range = moved(e.range, origin);
  e.open_range = moved(e.open_range, origin);
  for (auto& t : e.traversal) t.range = moved(t.range, origin);
  for (ExprPtr* child : {&e.a, &e.b, &e.c, &e.key})
    if (*child) move_expr(**child, origin);
  for (auto& i : e.items)
    if (i) move_expr(*i, origin);
  for (auto& k : e.keys)
    if (k) move_expr(*k, origin);
}

std::string range_text(const std::string& file, const Range& r) {
  std::string s = file + ":" + std::to_string(r.start.line) + "," + std::to_string(r.start.column) + "-";
  if (r.end.line != r.start.line) s += std::to_string(r.end.line) + ",";
  return s + std::to_string(r.end.column);
}

class BodyReader {
 public:
  BodyReader(std::string file, Diagnostics& diags) : file_(std::move(file)), diags_(diags) {}

  void body(const Node& n, const BodySchema* schema, Body& out) {
    out.range = n.range;
    if (!schema) {
      arguments_only(n, out);
      return;
    }
    for (const Property* p : deep_properties(n, nullptr)) {
      if (p->name == "//") continue;  // a comment
      if (const BodySchema::BlockType* bt = schema->block(p->name)) {
        std::vector<std::string> labels;
        std::vector<Range> label_ranges;
        unpack_block(*p->value, *bt, p->name_range, 0, labels, label_ranges, out.blocks);
        continue;
      }
      if (const Attribute* existing = out.attribute(p->name)) {
        error(p->name_range, "Duplicate argument",
              "The argument \"" + p->name + "\" was already set at " + range_text(file_, existing->range) + ".");
        continue;
      }
      bool as_expression = std::find(schema->expression_arguments.begin(), schema->expression_arguments.end(),
                                     p->name) != schema->expression_arguments.end();
      out.attributes.push_back(attribute(*p, as_expression));
    }
  }

  ExprPtr expression(const Node& n) {
    switch (n.kind) {
      case Node::Kind::String: return string_template(n.text, n.range);
      case Node::Kind::Number: {
        auto e = make_expr(Expr::Kind::Literal, n.range);
        auto num = Number::parse(n.text);
        e->value = num ? Value::number(*num) : Value::unknown(Type::number());
        return e;
      }
      case Node::Kind::Bool: {
        auto e = make_expr(Expr::Kind::Literal, n.range);
        e->value = Value::boolean(n.boolean);
        return e;
      }
      case Node::Kind::Null: {
        auto e = make_expr(Expr::Kind::Literal, n.range);
        e->value = Value::null(Type::dynamic());
        return e;
      }
      case Node::Kind::Array: {
        auto e = make_expr(Expr::Kind::Tuple, n.range);
        for (const auto& item : n.items) e->items.push_back(expression(*item));
        return e;
      }
      case Node::Kind::Object: {
        auto e = make_expr(Expr::Kind::Object, n.range);
        e->json = true;
        for (const auto& p : n.properties) {
          auto key = make_expr(Expr::Kind::ObjectKey, p.name_range);
          key->group = true;  // evaluated, never a bare name
          key->a = string_template(p.name, p.name_range);
          e->keys.push_back(std::move(key));
          e->items.push_back(expression(*p.value));
        }
        return e;
      }
      case Node::Kind::Invalid: break;
    }
    auto e = make_expr(Expr::Kind::Literal, n.range);
    e->value = Value::unknown();
    return e;
  }

 private:
  std::string file_;
  Diagnostics& diags_;

  void error(Range r, std::string summary, std::string detail) {
    diags_.error(file_, r, std::move(summary), std::move(detail));
  }

  // A native-syntax text found at `origin` in the file, parsed by `parse`, with its positions
  // and problems moved to where they are in the file; nullptr (and the problems in `errors`)
  // when it does not parse.
  template <typename ParseFn>
  ExprPtr parse_at(const std::string& text, Pos origin, ParseFn parse, std::vector<Diagnostic>& errors) {
    Diagnostics local;
    ExprPtr e = parse(text, local);
    if (!local.has_errors()) {
      move_expr(*e, origin);
      return e;
    }
    for (Diagnostic d : local.items()) {
      d.subject = moved(d.subject, origin);
      errors.push_back(std::move(d));
    }
    return nullptr;
  }

  // A JSON string is a template; its text starts after the opening quote (escapes make later
  // positions on the line approximate, as in hcl). One that does not parse reports its
  // errors when evaluated, as in hcl.
  ExprPtr string_template(const std::string& text, const Range& r) {
    Pos origin = r.start;
    ++origin.column;
    ++origin.byte;
    std::vector<Diagnostic> errors;
    ExprPtr e = parse_at(
        text, origin, [&](const std::string& t, Diagnostics& d) { return parse_template(t, file_, d); }, errors);
    if (e) return e;
    e = make_expr(Expr::Kind::Literal, r);
    e->value = Value::unknown();
    e->deferred = std::move(errors);
    return e;
  }

  Attribute attribute(const Property& p, bool as_expression) {
    Attribute a;
    a.name = p.name;
    a.name_range = p.name_range;
    a.range = range_between(p.name_range, p.value->range);
    if (as_expression && p.value->kind == Node::Kind::String) {
      // As hcl's ExprCall/AsTraversal: a string that is no expression is taken as it is.
      std::vector<Diagnostic> errors;
      a.expr = parse_at(
          p.value->text, p.value->range.start,
          [&](const std::string& t, Diagnostics& d) { return parse_expression(t, file_, d); }, errors);
      if (!a.expr) {
        a.expr = make_expr(Expr::Kind::Literal, p.value->range);
        a.expr->value = Value::string(p.value->text);
      }
    } else {
      a.expr = expression(*p.value);
    }
    return a;
  }

  void arguments_only(const Node& n, Body& out) {
    if (n.kind != Node::Kind::Object) {
      error(n.start_range(), "Incorrect JSON value type",
            "A JSON object is required here, setting the arguments for this block.");
      return;
    }
    for (const auto& p : n.properties) {
      if (p.name == "//") continue;
      if (const Attribute* existing = out.attribute(p.name)) {
        error(p.name_range, "Duplicate attribute definition",
              "The argument \"" + p.name + "\" was already set at " + range_text(file_, existing->range) + ".");
        continue;
      }
      out.attributes.push_back(attribute(p, false));
    }
  }

  // The properties of an object, or of each object of an array (hcl's collectDeepAttrs).
  std::vector<const Property*> deep_properties(const Node& n, const std::string* label) {
    std::vector<const Property*> out;
    auto add = [&](const Node& obj) {
      for (const auto& p : obj.properties) out.push_back(&p);
    };
    if (n.kind == Node::Kind::Null) return out;
    if (n.kind == Node::Kind::Object) {
      add(n);
    } else if (n.kind == Node::Kind::Array) {
      for (const auto& item : n.items) {
        if (item->kind == Node::Kind::Object)
          add(*item);
        else
          error(item->start_range(), "Incorrect JSON value type",
                label ? "A JSON object is required here, to specify " + *label + " labels for this block."
                      : "A JSON object is required here, to define arguments and child blocks.");
      }
    } else if (n.kind != Node::Kind::Invalid) {
      error(n.start_range(), "Incorrect JSON value type",
            label ? "Either a JSON object or JSON array of objects is required here, to specify " + *label +
                        " labels for this block."
                  : "Either a JSON object or JSON array of objects is required here, to define arguments and child "
                    "blocks.");
    }
    return out;
  }

  void unpack_block(const Node& v, const BodySchema::BlockType& bt, const Range& type_range, size_t level,
                    std::vector<std::string>& labels, std::vector<Range>& label_ranges, std::vector<Block>& out) {
    if (level < bt.labels.size()) {
      auto props = deep_properties(v, &bt.labels[level]);
      if (props.empty() && v.kind != Node::Kind::Invalid) {
        error(v.start_range(), "Missing block label",
              "At least one object property is required, whose name represents the " + bt.type + " block's " +
                  bt.labels[level] + ".");
        return;
      }
      for (const Property* p : props) {
        labels.push_back(p->name);
        label_ranges.push_back(p->name_range);
        unpack_block(*p->value, bt, type_range, level + 1, labels, label_ranges, out);
        labels.pop_back();
        label_ranges.pop_back();
      }
      return;
    }
    auto one = [&](const Node& content, const Range& def) {
      Block b;
      b.type = bt.type;
      b.labels = labels;
      b.label_ranges = label_ranges;
      b.type_range = type_range;
      b.open_brace_range = def;
      b.close_brace_range = content.kind == Node::Kind::Object ? content.close_range : content.range;
      b.body = std::make_unique<Body>();
      body(content, bt.body, *b.body);
      out.push_back(std::move(b));
    };
    switch (v.kind) {
      case Node::Kind::Null:
      case Node::Kind::Invalid: return;
      case Node::Kind::Object: one(v, v.open_range); return;
      case Node::Kind::Array:
        for (const auto& item : v.items) one(*item, v.open_range);
        return;
      default:
        error(v.start_range(), "Incorrect JSON value type",
              "Either a JSON object or a JSON array is required, representing the contents of one or more \"" +
                  bt.type + "\" blocks.");
    }
  }
};

}  // namespace

File parse_json_file(std::string source, std::string filename, const BodySchema* schema, Diagnostics& diags) {
  File f;
  f.name = std::move(filename);
  f.source = std::move(source);
  size_t before = diags.items().size();
  json_syntax::NodePtr root = json_syntax::parse(f.source, f.name, diags);
  bool syntax_errors = diags.items().size() > before;
  if (root->kind != Node::Kind::Object && root->kind != Node::Kind::Array) {
    diags.error(f.name, root->start_range(), "Root value must be object",
                "The root value in a JSON-based configuration must be either a JSON object or a JSON array of "
                "objects.");
    return f;
  }
  if (syntax_errors) return f;  // as hcl, which reads no body from a file it could not parse
  BodyReader(f.name, diags).body(*root, schema, f.body);
  return f;
}

}  // namespace imgbake::hcl
