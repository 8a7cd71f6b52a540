// HCL2 templates: `variable` blocks, their values (defaults, PKR_VAR_*, *.auto.pkrvars.hcl,
// -var-file, -var, in that order of precedence, lowest first, as in Packer), validation
// blocks, and `locals`/`local`, evaluated in dependency order.
#include <cstdlib>
#include <filesystem>
#include <functional>

#include "hcl_load.h"
#include "imgbake/hcl_typeexpr.h"
#include "imgbake/util.h"

extern char** environ;

namespace imgbake::hcl_template {

namespace {

struct Declaration {
  std::string name;
  BlockRef ref;
  hcl::Range range;  // the block's label (or the attribute of a `variables` block)
  hcl::Type type;    // dynamic when not given
  std::optional<hcl::Value> value;
  bool sensitive = false;
  std::string description;
};

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

}  // namespace

std::string display(const hcl::Value& v) {
  if (!v.is_known() || v.is_null()) return "";
  if (v.type() == hcl::Type::string()) return v.as_string();
  if (v.type() == hcl::Type::number()) return v.as_number().str();
  if (v.type() == hcl::Type::boolean()) return v.as_bool() ? "true" : "false";
  return hcl::json_encode(v);
}

void string_leaves(const hcl::Value& v, std::vector<std::string>& out) {
  if (!v.is_known() || v.is_null()) return;
  if (v.type().is_primitive()) {
    std::string s = display(v);
    if (!s.empty()) out.push_back(s);
    return;
  }
  if (v.type().kind() == hcl::Type::Kind::Map || v.type().kind() == hcl::Type::Kind::Object) {
    for (const auto& [k, e] : v.attributes()) string_leaves(e, out);
  } else {
    for (const auto& e : v.elements()) string_leaves(e, out);
  }
  out.push_back(hcl::json_encode(v));
}

void HclLoad::variables() {
  std::map<std::string, Declaration> decls;
  std::vector<std::string> order;
  hcl::EvalContext consts;  // defaults may call functions but use no variables
  consts.functions = ctx_.functions;
  // env() is Packer's, for variable defaults only.
  hcl::Function env;
  env.params = {{"key", hcl::Type::string()}};
  env.result_type = hcl::Type::string();
  env.impl = [](const std::vector<hcl::Value>& a) {
    const char* v = std::getenv(a[0].as_string().c_str());
    return hcl::Value::string(v ? v : "");
  };
  consts.functions["env"] = env;

  auto declare = [&](Declaration decl) {
    if (decls.count(decl.name)) {
      error(*decl.ref.file, decl.range, "Duplicate variable", "Duplicate " + decl.name + " variable definition found.");
      return;
    }
    order.push_back(decl.name);
    decls[decl.name] = std::move(decl);
  };
  for (const auto& ref : blocks_["variable"]) {
    const hcl::Block& b = *ref.block;
    const hcl::File& f = *ref.file;
    if (b.labels.size() != 1) {
      error(f, b.type_range, "Missing name for variable", "A variable block has one label: variable \"NAME\" {}.");
      continue;
    }
    check_body(*b.body, f, "a variable block", {"type", "default", "description", "sensitive"}, {"validation"});
    Declaration decl;
    decl.name = b.labels[0];
    decl.ref = ref;
    decl.range = b.label_ranges[0];
    if (const hcl::Attribute* a = b.body->attribute("type")) {
      hcl::Diagnostics ds;
      if (auto t = hcl::type_expression(*a->expr, ds, f.name)) decl.type = *t;
      report(ds);
    }
    if (const hcl::Attribute* a = b.body->attribute("default")) {
      // A default is a constant: Packer evaluates it without variables (hcl's nil context).
      if (auto refs = hcl::variables(*a->expr); !refs.empty()) {
        error(f, hcl::range_between(refs[0].front().range, refs[0].back().range), "Variables not allowed",
              "Variables may not be used here (a default is a constant; use a local value).");
        decl.value = hcl::Value::unknown(decl.type);
        values_missing_ = true;
        declare(std::move(decl));
        continue;
      }
      hcl::Value v = eval(*a->expr, f, consts);
      std::string why;
      if (auto c = hcl::convert(v, decl.type, &why))
        decl.value = *c;
      else
        error(f, a->expr->range, "Invalid default value for variable",
              "This default value is not compatible with the variable's type constraint: " + why + ".");
    }
    if (const hcl::Attribute* a = b.body->attribute("description")) {
      hcl::Value v = eval(*a->expr, f, consts);
      if (v.is_known() && v.type() == hcl::Type::string()) decl.description = v.as_string();
    }
    if (const hcl::Attribute* a = b.body->attribute("sensitive")) {
      hcl::Value v = eval(*a->expr, f, consts);
      auto c = hcl::convert(v, hcl::Type::boolean());
      if (c && c->is_known() && !c->is_null())
        decl.sensitive = c->as_bool();
      else
        error(f, a->expr->range, "Invalid sensitive value", "sensitive must be true or false.");
    }
    declare(std::move(decl));
  }
  // Packer 1.5's form: variables { name = default }.
  for (const auto& ref : blocks_["variables"]) {
    check_body(*ref.block->body, *ref.file, "a variables block", {}, {});
    for (const auto& a : ref.block->body->attributes) {
      Declaration decl;
      decl.name = a.name;
      decl.ref = ref;
      decl.range = a.name_range;
      decl.value = eval(*a.expr, *ref.file, consts);
      declare(std::move(decl));
    }
  }

  // A value given as text (-var, PKR_VAR_*): a string for string (and untyped) variables,
  // otherwise an HCL expression, as Packer reads them.
  auto from_text = [&](Declaration& decl, const std::string& text, const std::string& where) {
    if (decl.type == hcl::Type::string() || decl.type.is_dynamic()) return hcl::Value::string(text);
    hcl::Diagnostics ds;
    hcl::ExprPtr e = hcl::parse_expression(text, where, ds);
    hcl::Value v = ds.has_errors() ? hcl::Value::unknown() : hcl::evaluate(*e, hcl::EvalContext{}, ds, where);
    if (ds.has_errors()) {
      d_.error("", {}, where + ": variable '" + decl.name + "': '" + text + "' is not a valid " + decl.type.str());
      return hcl::Value::unknown(decl.type);
    }
    return v;
  };
  auto assign = [&](const std::string& name, hcl::Value v, const std::string& where, json::Pos pos,
                    bool warn_undeclared) {
    auto it = decls.find(name);
    if (it == decls.end()) {
      if (warn_undeclared)
        d_.warn(where, pos,
                "variable '" + name + "' is not declared in the template" + util::did_you_mean(name, order));
      return;
    }
    if (!v.is_known()) {
      values_missing_ = true;
      it->second.value = v;
      return;
    }
    std::string why;
    if (auto c = hcl::convert(v, it->second.type, &why))
      it->second.value = *c;
    else
      d_.error(where, pos, "variable '" + name + "': invalid value: " + why);
  };

  for (char** e = environ; e && *e; ++e) {
    std::string kv = *e;
    if (kv.rfind("PKR_VAR_", 0) != 0) continue;
    size_t eq = kv.find('=');
    std::string name = kv.substr(8, eq - 8);
    // Packer ignores PKR_VAR_ names the template does not declare.
    if (auto it = decls.find(name); it != decls.end())
      assign(name, from_text(it->second, kv.substr(eq + 1), "PKR_VAR_" + name), "", {}, false);
  }

  auto var_file = [&](const std::string& path) {
    if (ends_with(path, ".json")) {
      std::optional<json::Value> doc = read_json_var_file(path, d_);
      if (!doc) return;
      for (const auto& m : doc->members)
        assign(m.key, hcl::json_decode(json::serialize(m.value)).value_or(hcl::Value()), path, m.key_pos, true);
      return;
    }
    std::string text;
    try {
      text = util::read_file(path);
    } catch (const std::exception& e) {
      d_.error("", {}, std::string("-var-file: ") + e.what());
      return;
    }
    hcl::Diagnostics ds;
    files_.push_back(std::make_unique<hcl::File>(hcl::parse_file(std::move(text), path, ds)));
    const hcl::File& f = *files_.back();
    for (const auto& b : f.body.blocks)
      error(f, b.type_range, "Unexpected block", "A var file holds only assignments: name = value.");
    report(ds);
    for (const auto& a : f.body.attributes)
      assign(a.name, eval(*a.expr, f, hcl::EvalContext{}), path, {a.name_range.start.line, a.name_range.start.column},
             true);
  };
  if (!loaded_dir_.empty())
    for (const char* suffix : {".auto.pkrvars.hcl", ".auto.pkrvars.json"})
      for (const auto& path : files_with_suffix(loaded_dir_, suffix)) var_file(path);
  for (const auto& path : in_.var_files) var_file(path);
  for (const auto& [name, text] : in_.vars) {
    auto it = decls.find(name);
    // Packer 1.6.6 accepts an undeclared -var silently; imgbake warns, as for JSON templates.
    if (it == decls.end())
      d_.warn("", {},
              "-var " + name + ": variable '" + name + "' is not declared in the template" +
                  util::did_you_mean(name, order));
    else
      assign(name, from_text(it->second, text, "-var " + name), "", {}, false);
  }

  std::map<std::string, hcl::Value> values;
  for (const auto& name : order) {
    Declaration& decl = decls[name];
    VariableDef def;
    def.name = name;
    def.pos = {decl.range.start.line, decl.range.start.column};
    def.sensitive = decl.sensitive;
    if (!decl.value) {
      def.required = true;
      values_missing_ = true;
      values[name] = hcl::Value::unknown(decl.type);
      if (in_.require_all)
        error(*decl.ref.file, decl.range, "Unset variable \"" + name + "\"",
              "A used variable must be set or have a default value; give it with -var " + name +
                  "=VALUE, a -var-file, or PKR_VAR_" + name + ".");
    } else {
      values[name] = *decl.value;
      def.default_value = display(*decl.value);
      if (decl.sensitive) string_leaves(*decl.value, t_.secrets);
    }
    t_.variables.push_back(std::move(def));
  }
  ctx_.variables["var"] = hcl::Value::object(values);

  // Validation blocks: each condition may use the variable (and functions).
  for (const auto& name : order) {
    const Declaration& decl = decls[name];
    if (decl.ref.block->type != "variable" || !decl.value || !decl.value->is_wholly_known()) continue;
    for (const auto& vb : decl.ref.block->body->blocks) {
      if (vb.type != "validation") continue;
      const hcl::File& f = *decl.ref.file;
      check_body(*vb.body, f, "a validation block", {"condition", "error_message"}, {});
      const hcl::Attribute* cond = vb.body->attribute("condition");
      const hcl::Attribute* msg = vb.body->attribute("error_message");
      if (!cond || !msg) {
        error(f, vb.type_range, "Missing required argument", "A validation block needs condition and error_message.");
        continue;
      }
      hcl::Value m = eval(*msg->expr, f, consts);
      hcl::Value c = eval(*cond->expr, f, ctx_);
      auto ok = hcl::convert(c, hcl::Type::boolean());
      if (!ok || !ok->is_known() || ok->is_null()) {
        if (c.is_known())
          error(f, cond->expr->range, "Invalid validation condition", "The condition must be true or false.");
        continue;
      }
      if (!ok->as_bool())
        error(
            f, cond->expr->range, "Invalid value for variable",
            (m.is_known() && m.type() == hcl::Type::string() ? m.as_string() : std::string("The condition is false.")) +
                " (variable \"" + name + "\", validation at " + f.name + ":" +
                std::to_string(vb.type_range.start.line) + ")");
    }
  }
}

void HclLoad::locals() {
  struct Local {
    std::string name;
    const hcl::Expr* expr = nullptr;
    const hcl::File* file = nullptr;
    hcl::Range range;
    bool sensitive = false;
  };
  std::map<std::string, Local> locals;
  std::vector<std::string> order;
  auto add = [&](Local l) {
    if (locals.count(l.name)) {
      error(*l.file, l.range, "Duplicate local value",
            "A local value named \"" + l.name + "\" was already defined at " + locals[l.name].file->name + ":" +
                std::to_string(locals[l.name].range.start.line) + ".");
      return;
    }
    order.push_back(l.name);
    locals[l.name] = l;
  };
  for (const auto& [b, f] : blocks_["locals"]) {
    if (!b->labels.empty()) error(*f, b->label_ranges[0], "Extraneous label", "A locals block has no labels.");
    for (const auto& blk : b->body->blocks)
      error(*f, blk.type_range, "Unexpected block", "A locals block holds only assignments: name = value.");
    for (const auto& a : b->body->attributes) add({a.name, a.expr.get(), f, a.name_range, false});
  }
  for (const auto& [b, f] : blocks_["local"]) {
    if (b->labels.size() != 1) {
      error(*f, b->type_range, "Missing name for local", "A local block has one label: local \"NAME\" {}.");
      continue;
    }
    check_body(*b->body, *f, "a local block", {"expression", "sensitive"}, {});
    const hcl::Attribute* e = b->body->attribute("expression");
    if (!e) {
      error(*f, b->type_range, "Missing required argument", "A local block needs an expression.");
      continue;
    }
    bool sensitive = false;
    if (const hcl::Attribute* s = b->body->attribute("sensitive")) {
      auto v = hcl::convert(eval(*s->expr, *f, hcl::EvalContext{}), hcl::Type::boolean());
      sensitive = v && v->is_known() && !v->is_null() && v->as_bool();
    }
    add({b->labels[0], e->expr.get(), f, b->label_ranges[0], sensitive});
  }

  // Evaluated in dependency order; a cycle is reported at each local in it.
  std::map<std::string, hcl::Value> values;
  std::map<std::string, int> state;  // 0 new, 1 in progress, 2 done
  std::vector<std::string> stack;
  std::function<void(const std::string&)> visit = [&](const std::string& name) {
    Local& l = locals[name];
    state[name] = 1;
    stack.push_back(name);
    for (const auto& tr : hcl::variables(*l.expr)) {
      if (tr.size() < 2 || tr[0].name != "local" || tr[1].kind != hcl::Traverser::Kind::Attr) continue;
      const std::string& dep = tr[1].name;
      if (!locals.count(dep)) continue;  // the evaluation reports it
      if (state[dep] == 1) {
        std::string path;
        auto from = std::find(stack.begin(), stack.end(), dep);
        for (auto it = from; it != stack.end(); ++it) path += "local." + *it + " → ";
        path += "local." + dep;
        error(*l.file, hcl::range_between(tr[0].range, tr[1].range), "Cycle in local values",
              "local." + name + " refers to local." + dep + ", which depends on it: " + path + ".");
        values_missing_ = true;
        values[dep] = hcl::Value::unknown();
        continue;
      }
      if (state[dep] == 0) visit(dep);
    }
    ctx_.variables["local"] = hcl::Value::object(values);
    hcl::Value v = eval(*l.expr, *l.file, ctx_);
    values[name] = v;
    if (l.sensitive && v.is_known()) string_leaves(v, t_.secrets);
    stack.pop_back();
    state[name] = 2;
  };
  for (const auto& name : order)
    if (state[name] == 0) visit(name);
  ctx_.variables["local"] = hcl::Value::object(values);
}

}  // namespace imgbake::hcl_template
