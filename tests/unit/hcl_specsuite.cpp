#include "hcl_specsuite.h"

#include <algorithm>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "imgbake/hcl_eval.h"
#include "imgbake/hcl_parse.h"
#include "imgbake/hcl_typeexpr.h"

namespace imgbake::hcl::specsuite {

namespace fs = std::filesystem;

std::string suite_dir() {
  if (const char* d = std::getenv("IMGBAKE_HCL_SPECSUITE")) return d;
  return "/usr/share/gocode/src/github.com/hashicorp/hcl/v2/specsuite/tests";
}

std::vector<std::string> discover(const std::string& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
    if (it->is_regular_file() && it->path().extension() == ".t") {
      std::string p = it->path().string();
      out.push_back(p.substr(0, p.size() - 2));
    }
  std::sort(out.begin(), out.end());
  return out;
}

namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Decodes a body as an hcldec spec says (hcldec/spec.go), collecting diagnostics.
class Decoder {
 public:
  Decoder(const std::string& file, Diagnostics& diags, const EvalContext& ctx)
      : file_(file), diags_(diags), ctx_(ctx) {}

  // `spec` is a spec block (object, attr, literal, ...) from the .hcldec file.
  Value decode(const Block& spec, const Body& body) {
    const std::string& k = spec.type;
    if (k == "literal") return eval_spec_attr(spec, "value");
    if (k == "attr") return decode_attr(spec, body);
    if (k == "object") {
      std::map<std::string, Value> attrs;
      for (const auto& child : spec.body->blocks)
        attrs[child.labels.empty() ? "" : child.labels[0]] = decode(child, body);
      return Value::object(std::move(attrs));
    }
    if (k == "block" || k == "block_list" || k == "block_map") return decode_blocks(spec, body);
    diags_.error("spec", spec.type_range, "Unsupported spec in this runner", "\"" + k + "\"");
    return Value::unknown();
  }

  // The attribute names and block types a spec reads from the body it is given.
  void schema(const Block& spec, std::vector<std::string>& attrs, std::vector<std::string>& blocks) {
    if (spec.type == "attr") attrs.push_back(spec_name(spec, "name"));
    if (spec.type == "block" || spec.type == "block_list" || spec.type == "block_map")
      blocks.push_back(spec_name(spec, "block_type"));
    if (spec.type == "object")
      for (const auto& child : spec.body->blocks) schema(child, attrs, blocks);
  }

  // Reports attributes and blocks of `body` that no spec reads (hcl's Body.Content).
  void check_schema(const std::vector<const Block*>& specs, const Body& body) {
    std::vector<std::string> attrs;
    std::vector<std::string> blocks;
    for (const Block* s : specs) schema(*s, attrs, blocks);
    for (const auto& a : body.attributes)
      if (std::find(attrs.begin(), attrs.end(), a.name) == attrs.end())
        diags_.error(file_, a.name_range, "Unsupported argument",
                     "An argument named \"" + a.name + "\" is not expected here.");
    for (const auto& b : body.blocks)
      if (std::find(blocks.begin(), blocks.end(), b.type) == blocks.end())
        diags_.error(file_, b.type_range, "Unsupported block type",
                     "Blocks of type \"" + b.type + "\" are not expected here.");
  }

 private:
  const std::string& file_;
  Diagnostics& diags_;
  const EvalContext& ctx_;

  Value eval_spec_attr(const Block& spec, const std::string& name) {
    const Attribute* a = spec.body->attribute(name);
    if (!a) return Value::null();
    Diagnostics ignored;
    return evaluate(*a->expr, EvalContext{}, ignored, "spec");
  }

  std::string spec_name(const Block& spec, const std::string& attr) {
    const Attribute* a = spec.body->attribute(attr);
    if (a) return eval_spec_attr(spec, attr).as_string();
    return spec.labels.empty() ? "" : spec.labels[0];
  }

  Type spec_type(const Block& spec) {
    const Attribute* t = spec.body->attribute("type");
    if (!t) return Type();
    Diagnostics d;
    return type_expression(*t->expr, d, "spec").value_or(Type());
  }

  Value decode_attr(const Block& spec, const Body& body) {
    std::string name = spec_name(spec, "name");
    Type t = spec_type(spec);
    const Attribute* a = body.attribute(name);
    if (!a) {
      Value req = eval_spec_attr(spec, "required");
      if (!req.is_null() && req.as_bool())
        diags_.error(file_, body.range, "Missing required argument", "The argument \"" + name + "\" is required.");
      return Value::null(t);
    }
    Value v = evaluate(*a->expr, ctx_, diags_, file_);
    std::string why;
    auto c = convert(v, t, &why);
    if (!c) {
      diags_.error(file_, a->expr->range, "Incorrect attribute value type",
                   "Inappropriate value for attribute \"" + name + "\": " + why + ".");
      return Value::unknown(t);
    }
    return *c;
  }

  const Block* nested_spec(const Block& spec) {
    return spec.body->blocks.empty() ? nullptr : &spec.body->blocks.front();
  }

  // The blocks a spec reads, as the schema a JSON input is read with (`store` keeps the
  // nested schemas).
 public:
  void json_schema(const Block& spec, BodySchema& out, std::deque<BodySchema>& store) {
    if (spec.type == "object") {
      for (const auto& child : spec.body->blocks) json_schema(child, out, store);
      return;
    }
    if (spec.type != "block" && spec.type != "block_list" && spec.type != "block_map") return;
    BodySchema& inner = store.emplace_back();
    if (const Block* nested = nested_spec(spec)) json_schema(*nested, inner, store);
    std::vector<std::string> labels;
    if (spec.body->attribute("labels")) {
      Value names = eval_spec_attr(spec, "labels");
      for (const auto& v : names.elements()) labels.push_back(v.as_string());
    }
    out.blocks.push_back({spec_name(spec, "block_type"), labels, &inner});
  }

 private:
  Value decode_block_body(const Block& spec, const Block& b) {
    const Block* nested = nested_spec(spec);
    if (!nested) return Value::null();
    check_schema({nested}, *b.body);
    return decode(*nested, *b.body);
  }

  Value decode_blocks(const Block& spec, const Body& body) {
    std::string type = spec_name(spec, "block_type");
    std::vector<std::string> labels;
    if (const Attribute* l = spec.body->attribute("labels")) {
      Diagnostics ignored;
      Value names = evaluate(*l->expr, EvalContext{}, ignored, "spec");
      for (const auto& v : names.elements()) labels.push_back(v.as_string());
    }
    std::vector<const Block*> found;
    for (const auto& b : body.blocks) {
      if (b.type != type) continue;
      if (b.labels.size() != labels.size()) {
        diags_.error(file_, b.type_range,
                     b.labels.size() > labels.size() ? "Extraneous label for " + type : "Missing label for " + type,
                     "The block needs " + std::to_string(labels.size()) + " label(s).");
        continue;
      }
      found.push_back(&b);
    }
    if (spec.type == "block") {
      if (found.size() > 1)
        diags_.error(file_, found[1]->type_range, "Duplicate " + type + " block",
                     "Only one block of type \"" + type + "\" is allowed.");
      if (found.empty()) return Value::null();
      return decode_block_body(spec, *found[0]);
    }
    if (spec.type == "block_list") {
      std::vector<Value> items;
      items.reserve(found.size());
      for (const Block* b : found) items.push_back(decode_block_body(spec, *b));
      return items.empty() ? Value::list({}, Type()) : Value::list_of(std::move(items));
    }
    // block_map: one map level per label.
    std::map<std::string, Value> out;
    for (const Block* b : found) {
      if (labels.size() != 1) {
        diags_.error("spec", spec.type_range, "Unsupported spec in this runner", "block_map with more than one label");
        break;
      }
      out[b->labels[0]] = decode_block_body(spec, *b);
    }
    return Value::map_of(std::move(out));
  }
};

bool conforms(const Type& got, const Type& want) {
  if (want.is_dynamic()) return true;
  if (got.kind() != want.kind()) return false;
  if (got.is_collection()) return conforms(got.element(), want.element());
  if (got.kind() == Type::Kind::Tuple) {
    if (got.elements().size() != want.elements().size()) return false;
    for (size_t i = 0; i < got.elements().size(); ++i)
      if (!conforms(got.elements()[i], want.elements()[i])) return false;
  }
  if (got.kind() == Type::Kind::Object) {
    if (got.attributes().size() != want.attributes().size()) return false;
    for (const auto& [name, t] : got.attributes()) {
      auto it = want.attributes().find(name);
      if (it == want.attributes().end() || !conforms(t, it->second)) return false;
    }
  }
  return true;
}

std::string range_str(const Range& r) {
  auto p = [](const Pos& x) {
    return std::to_string(x.line) + ":" + std::to_string(x.column) + "@" + std::to_string(x.byte);
  };
  return p(r.start) + "-" + p(r.end);
}

}  // namespace

Outcome run_case(const std::string& base, bool json) {
  Outcome out;
  auto problem = [&](std::string s) { out.problems.push_back(std::move(s)); };
  // The test file and the spec are HCL too, read with our own parser.
  Diagnostics meta;
  File t = parse_file(read_file(base + ".t"), base + ".t", meta);
  File spec = parse_file(read_file(base + ".hcldec"), base + ".hcldec", meta);
  if (meta.has_errors()) {
    problem("cannot read the case's .t or .hcldec: " + format(meta, ""));
    return out;
  }
  Type result_type;
  if (const Attribute* a = t.body.attribute("result_type"))
    result_type = type_expression(*a->expr, meta, t.name).value_or(Type());
  std::optional<Value> expected;
  if (const Attribute* a = t.body.attribute("result")) {
    Value v = evaluate(*a->expr, EvalContext{}, meta, t.name);
    expected = convert(v, result_type);
    if (!expected) problem("the expected result does not conform to result_type");
  }
  std::vector<std::pair<bool, Range>> want_diags;
  for (const auto& b : t.body.blocks) {
    if (b.type != "diagnostics") continue;
    for (const auto& d : b.body->blocks) {
      Range r;
      for (const auto& end : d.body->blocks) {
        Pos p;
        auto num = [&](const char* n) {
          const Attribute* a = end.body->attribute(n);
          return a ? static_cast<int>(*evaluate(*a->expr, EvalContext{}, meta, t.name).as_number().to_int64()) : 0;
        };
        p.line = num("line");
        p.column = num("column");
        p.byte = num("byte");
        (end.type == "from" ? r.start : r.end) = p;
      }
      want_diags.emplace_back(d.type == "error", r);
    }
  }

  // The input, decoded as hcldec does: variables from the spec, then the root spec.
  Diagnostics diags;
  std::string input = base + (json ? ".hcl.json" : ".hcl");
  EvalContext ctx;
  ctx.functions = standard_functions();
  const Block* root = nullptr;
  for (const auto& b : spec.body.blocks) {
    if (b.type == "variables") {
      for (const auto& a : b.body->attributes)
        ctx.variables[a.name] = evaluate(*a.expr, EvalContext{}, meta, spec.name);
    } else {
      root = &b;
    }
  }
  BodySchema schema;
  std::deque<BodySchema> nested;
  if (root) Decoder(input, diags, ctx).json_schema(*root, schema, nested);
  File f = json ? parse_json_file(read_file(input), input, &schema, diags) : parse_file(read_file(input), input, diags);
  Value got;
  if (root && !diags.has_errors()) {
    Decoder dec(input, diags, ctx);
    dec.check_schema({root}, f.body);
    got = dec.decode(*root, f.body);
  }

  if (!want_diags.empty()) {
    std::vector<std::pair<bool, Range>> have;
    for (const auto& d : diags.items()) have.emplace_back(d.severity == Diagnostic::Severity::Error, d.subject);
    for (const auto& w : want_diags)
      if (std::find(have.begin(), have.end(), w) == have.end())
        problem("missing expected diagnostic at " + range_str(w.second));
    for (size_t i = 0; i < have.size(); ++i)
      if (std::find(want_diags.begin(), want_diags.end(), have[i]) == want_diags.end())
        problem("unexpected diagnostic at " + range_str(have[i].second) + ": " + format(diags.items()[i], f.source));
  } else {
    for (const auto& d : diags.items()) problem("unexpected diagnostic: " + format(d, f.source));
    if (!diags.has_errors()) {
      if (!conforms(got.type(), result_type))
        problem("result type is " + got.type().str() + ", expected " + result_type.str());
      if (expected && !raw_equals(got, *expected)) {
        std::string where;
        for (const auto& [name, v] : expected->attributes()) {
          auto it = got.attributes().find(name);
          if (it == got.attributes().end() || !raw_equals(it->second, v))
            where += " " + name + " (" + (it == got.attributes().end() ? "missing" : it->second.type().str()) + " vs " +
                     v.type().str() + ")";
        }
        problem("result is " + got.str() + "\n  expected " + expected->str() + "\n  differing:" + where);
      }
    }
  }
  out.passed = out.problems.empty();
  return out;
}

}  // namespace imgbake::hcl::specsuite
