// hcl's dynblock extension (ext/dynblock expand_body.go, expand_spec.go): the same checks and
// messages, the iterator object {key, value} (a list's index, a map's key, a set's element).
#include "imgbake/hcl_dynblock.h"

namespace imgbake::hcl {

namespace {

class Expander {
 public:
  Expander(Diagnostics& diags, const std::string& file) : diags_(diags), file_(file) {}

  void expand(const Block& dyn, const std::shared_ptr<const EvalContext>& ctx, const LabelCount& labels_of,
              std::vector<BlockView>& out) {
    if (dyn.labels.size() != 1) {
      if (dyn.labels.empty())
        error(dyn.open_brace_range, "Missing type for dynamic", "All dynamic blocks must have 1 labels (type).");
      else
        error(dyn.label_ranges[1], "Extraneous label for dynamic",
              "Only 1 labels (type) are expected for dynamic blocks.");
      return;
    }
    const std::string& type = dyn.labels[0];
    std::optional<size_t> label_count = labels_of(type);
    if (!label_count) {
      error(dyn.label_ranges[0], "Unsupported block type", "Blocks of type \"" + type + "\" are not expected here.");
      return;
    }
    const Body& spec = *dyn.body;
    size_t before = diags_.items().size();
    // The spec's own schema (dynamicBlockBodySchemaLabels / NoLabels).
    for (const auto& a : spec.attributes)
      if (a.name != "for_each" && a.name != "iterator" && (a.name != "labels" || *label_count == 0))
        error(a.name_range, "Unsupported argument", "An argument named \"" + a.name + "\" is not expected here.");
    std::vector<const Block*> contents;
    for (const auto& b : spec.blocks) {
      if (b.type != "content") {
        error(b.type_range, "Unsupported block type", "Blocks of type \"" + b.type + "\" are not expected here.");
        continue;
      }
      if (!b.labels.empty()) {
        error(b.label_ranges[0], "Extraneous label for content", "No labels are expected for content blocks.");
        continue;
      }
      contents.push_back(&b);
    }
    Range missing{spec.range.start, spec.range.start};
    const Attribute* for_each = spec.attribute("for_each");
    const Attribute* labels = *label_count ? spec.attribute("labels") : nullptr;
    for (const char* required : {"for_each", "labels"})
      if (!spec.attribute(required) && (std::string(required) == "for_each" || *label_count))
        error(missing, "Missing required argument",
              "The argument \"" + std::string(required) + "\" is required, but no definition was found.");
    if (diags_.items().size() > before) return;

    Value each = evaluate(*for_each->expr, *ctx, diags_, file_);
    if (diags_.has_errors() && diags_.items().size() > before) return;
    const Type::Kind k = each.type().kind();
    bool iterable = k == Type::Kind::List || k == Type::Kind::Set || k == Type::Kind::Tuple || k == Type::Kind::Map ||
                    k == Type::Kind::Object;
    if (!iterable && !each.type().is_dynamic()) {
      error(for_each->expr->range, "Invalid dynamic for_each value",
            "Cannot use a " + each.type().friendly_name() + " value in for_each. An iterable collection is required.");
      return;
    }
    if (each.is_null()) {
      error(for_each->expr->range, "Invalid dynamic for_each value", "Cannot use a null value in for_each.");
      return;
    }
    if (!each.is_known()) {
      error(for_each->expr->range, "Value not known before the build",
            "imgbake generates dynamic blocks while reading the template: for_each must not depend on values known "
            "only during the build.");
      return;
    }

    std::string iterator = type;
    if (const Attribute* it = spec.attribute("iterator")) {
      const Expr& e = *it->expr;
      if (e.kind != Expr::Kind::ScopeTraversal) {
        error(e.range, "Invalid expression",
              "A single static variable reference is required: only attribute access and indexing with constant keys. "
              "No calculations, function calls, template expressions, etc are allowed here.");
        return;
      }
      if (e.traversal.size() != 1) {
        error(range_between(e.traversal.front().range, e.traversal.back().range), "Invalid dynamic iterator name",
              "Dynamic iterator must be a single variable name.");
        return;
      }
      iterator = e.traversal.front().name;
    }

    std::vector<const Expr*> label_exprs;
    if (labels) {
      if (labels->expr->kind != Expr::Kind::Tuple) {
        error(labels->expr->range, "Invalid expression", "A static list expression is required.");
        return;
      }
      for (const auto& item : labels->expr->items) label_exprs.push_back(item.get());
      if (label_exprs.size() > *label_count) {
        error(label_exprs[*label_count]->range, "Extraneous dynamic block label",
              "Blocks of type \"" + type + "\" require " + std::to_string(*label_count) + " label(s).");
        return;
      }
      if (label_exprs.size() < *label_count) {
        error(labels->expr->range, "Insufficient dynamic block labels",
              "Blocks of type \"" + type + "\" require " + std::to_string(*label_count) + " label(s).");
        return;
      }
    }
    if (contents.empty()) {
      error(missing, "Missing dynamic content block",
            "A dynamic block must have a nested block of type \"content\" to describe the body of each generated "
            "block.");
      return;
    }
    if (contents.size() > 1) {
      error(contents[1]->type_range, "Extraneous dynamic content block",
            "Only one nested content block is allowed for each dynamic block.");
      return;
    }

    // The elements with their keys, in cty's order.
    std::vector<std::pair<Value, Value>> items;
    if (k == Type::Kind::Map || k == Type::Kind::Object) {
      for (const auto& [key, v] : each.attributes()) items.emplace_back(Value::string(key), v);
    } else {
      int64_t i = 0;
      for (const auto& v : each.elements())
        items.emplace_back(k == Type::Kind::Set ? v : Value::number(Number(i++)), v);
    }
    for (auto& [key, value] : items) {
      auto child = std::make_shared<EvalContext>();
      child->parent = ctx.get();
      child->variables[iterator] = Value::object({{"key", key}, {"value", value}});
      BlockView v;
      v.type = type;
      v.type_range = dyn.label_ranges[0];
      v.body = contents[0]->body.get();
      v.ctx = child;
      v.generated = true;
      bool ok = true;
      for (const Expr* le : label_exprs) {
        size_t mark = diags_.items().size();
        Value lv = evaluate(*le, *child, diags_, file_);
        std::string why;
        auto s = convert(lv, Type::string(), &why);
        if (diags_.items().size() > mark && diags_.has_errors()) {
          ok = false;
        } else if (!s) {
          error(le->range, "Invalid dynamic block label",
                "Cannot use this value as a dynamic block label: " + why + ".");
          ok = false;
        } else if (s->is_null()) {
          error(le->range, "Invalid dynamic block label", "Cannot use a null value as a dynamic block label.");
          ok = false;
        } else if (!s->is_known()) {
          error(le->range, "Invalid dynamic block label",
                "This value is not yet known. Dynamic block labels must be immediately-known values.");
          ok = false;
        }
        if (!ok) break;
        v.labels.push_back(s->as_string());
        v.label_ranges.push_back(le->range);
      }
      if (ok) out.push_back(std::move(v));
    }
  }

 private:
  Diagnostics& diags_;
  const std::string& file_;

  void error(Range r, std::string summary, std::string detail) {
    diags_.error(file_, r, std::move(summary), std::move(detail));
  }
};

}  // namespace

std::vector<BlockView> expand_blocks(const Body& body, const EvalContext& ctx, const LabelCount& labels_of,
                                     Diagnostics& diags, const std::string& file) {
  // The caller's context is not owned: an aliasing pointer with no owner.
  std::shared_ptr<const EvalContext> base(std::shared_ptr<const EvalContext>(), &ctx);
  std::vector<BlockView> out;
  Expander x(diags, file);
  for (const auto& b : body.blocks) {
    if (b.type == "dynamic") {
      x.expand(b, base, labels_of, out);
      continue;
    }
    BlockView v;
    v.type = b.type;
    v.labels = b.labels;
    v.label_ranges = b.label_ranges;
    v.type_range = b.type_range;
    v.body = b.body.get();
    v.ctx = base;
    out.push_back(std::move(v));
  }
  return out;
}

}  // namespace imgbake::hcl
