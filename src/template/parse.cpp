#include <unistd.h>

#include <filesystem>
#include <iostream>
#include <iterator>
#include <set>

#include "imgbake/config.h"
#include "imgbake/interpolate.h"
#include "imgbake/template.h"
#include "imgbake/util.h"
#include "imgbake_section.h"

namespace imgbake {

const VariableDef* Template::variable(std::string_view name) const {
  for (const auto& v : variables)
    if (v.name == name) return &v;
  return nullptr;
}

namespace {

const std::vector<std::string>& root_keys() {
  static const std::vector<std::string> keys = {
      "variables",       "sensitive-variables", "builders",           "provisioners", "error-cleanup-provisioner",
      "post-processors", "description",         "min_packer_version", "push",         "imgbake"};
  return keys;
}

class TemplateParser {
 public:
  TemplateParser(Template& t, Diagnostics& d) : t_(t), d_(d) {}

  void run() {
    const json::Value& root = t_.root;
    if (!root.is_object()) {
      err(root.pos,
          "a template must be a JSON object, not " + std::string(article(root)) + " " + std::string(root.type_name()));
      return;
    }
    for (const auto& m : root.members) {
      if (!m.key.empty() && m.key[0] == '_') {
        if (!m.value.is_string()) err(m.value.pos, "comment key '" + m.key + "' must hold a string (as in Packer)");
        continue;
      }
      if (std::find(root_keys().begin(), root_keys().end(), m.key) == root_keys().end())
        err(m.key_pos, "unknown top-level key '" + m.key + "'" + util::did_you_mean(m.key, root_keys()));
    }
    if (auto* v = root.find("description")) string_into(*v, "description", t_.description);
    if (auto* v = root.find("min_packer_version")) string_into(*v, "min_packer_version", t_.min_version);
    if (auto* v = root.find("sensitive-variables")) sensitive(*v);
    if (auto* v = root.find("variables")) variables(*v);
    if (auto* v = root.find("builders")) builders(*v);
    if (auto* v = root.find("provisioners")) {
      if (expect(*v, json::Value::Kind::Array, "'provisioners'")) {
        for (size_t i = 0; i < v->items.size(); ++i) {
          auto p = provisioner(v->items[i], "provisioner " + std::to_string(i + 1));
          if (p) t_.provisioners.push_back(std::move(*p));
        }
      }
    }
    if (auto* v = root.find("error-cleanup-provisioner"); v && !v->is_null())
      t_.cleanup_provisioner = provisioner(*v, "error-cleanup-provisioner");
    if (auto* v = root.find("post-processors")) post_processors(*v);
    if (auto* v = root.find("push"); v && !v->is_object() && !v->is_null()) err(v->pos, "'push' must be an object");
    if (auto* v = root.find("imgbake")) {
      if (expect(*v, json::Value::Kind::Object, "'imgbake'")) {
        hcl_template::check_imgbake_section(*v, t_.path, d_);
        t_.imgbake = *v;
      }
    }
    for (auto& name : t_.sensitive_variables) {
      bool found = false;
      for (auto& var : t_.variables) {
        if (var.name == name) {
          var.sensitive = true;
          found = true;
        }
      }
      if (!found) warn(sensitive_pos_, "sensitive variable '" + name + "' is not defined in 'variables'");
    }
  }

 private:
  Template& t_;
  Diagnostics& d_;
  json::Pos sensitive_pos_;

  void err(json::Pos p, std::string msg) { d_.error(t_.path, p, std::move(msg)); }
  void warn(json::Pos p, std::string msg) { d_.warn(t_.path, p, std::move(msg)); }

  static const char* article(const json::Value& v) {
    return v.kind == json::Value::Kind::Array || v.kind == json::Value::Kind::Object ? "an" : "a";
  }

  bool expect(const json::Value& v, json::Value::Kind kind, const std::string& what) {
    if (v.kind == kind) return true;
    json::Value probe;
    probe.kind = kind;
    err(v.pos, what + " must be " + article(probe) + " " + std::string(probe.type_name()) + ", not " + article(v) +
                   " " + std::string(v.type_name()));
    return false;
  }

  // Packer decodes names and similar fields weakly: numbers and booleans become strings.
  static std::optional<std::string> weak_string(const json::Value& v) {
    switch (v.kind) {
      case json::Value::Kind::String: return v.text;
      case json::Value::Kind::Number: return v.text;
      case json::Value::Kind::Bool: return v.boolean ? "1" : "0";
      default: return std::nullopt;
    }
  }

  void string_into(const json::Value& v, const std::string& what, std::string& out) {
    if (expect(v, json::Value::Kind::String, "'" + what + "'")) out = v.text;
  }

  void sensitive(const json::Value& v) {
    sensitive_pos_ = v.pos;
    if (!expect(v, json::Value::Kind::Array, "'sensitive-variables'")) return;
    for (const auto& i : v.items)
      if (expect(i, json::Value::Kind::String, "an entry of 'sensitive-variables'"))
        t_.sensitive_variables.push_back(i.text);
  }

  void variables(const json::Value& v) {
    if (!expect(v, json::Value::Kind::Object, "'variables'")) return;
    for (const auto& m : v.members) {
      VariableDef var;
      var.name = m.key;
      var.pos = m.key_pos;
      if (m.value.is_null()) {
        var.required = true;
      } else if (m.value.is_string()) {
        var.default_value = m.value.text;
      } else {
        // Packer 1.6.6 rejects these too ("expected type 'string'").
        err(m.value.pos, "variable '" + m.key + "': the default must be a string or null (required), not " +
                             std::string(article(m.value)) + " " + std::string(m.value.type_name()) +
                             "; quote it, e.g. \"" + (m.value.is_number() ? m.value.text : "...") + "\"");
        continue;
      }
      t_.variables.push_back(std::move(var));
    }
  }

  void builders(const json::Value& v) {
    if (!expect(v, json::Value::Kind::Array, "'builders'")) return;
    std::set<std::string> names;
    for (size_t i = 0; i < v.items.size(); ++i) {
      const auto& b = v.items[i];
      std::string label = "builder " + std::to_string(i + 1);
      if (!expect(b, json::Value::Kind::Object, label)) continue;
      BuilderDef def;
      def.pos = b.pos;
      def.config = b;
      if (auto* n = b.find("name")) {
        auto s = weak_string(*n);
        if (!s) {
          err(n->pos, label + ": 'name' must be a string");
          continue;
        }
        def.name = *s;
      }
      const json::Value* type = b.find("type");
      if (!type || !weak_string(*type) || weak_string(*type)->empty()) {
        err(type ? type->pos : b.pos, label + ": missing 'type'");
        continue;
      }
      def.type = *weak_string(*type);
      if (def.name.empty()) def.name = def.type;
      def.config.erase("type");
      def.config.erase("name");
      if (!names.insert(def.name).second) {
        err(b.pos, label + ": a builder named '" + def.name + "' already exists (give each a unique \"name\")");
        continue;
      }
      t_.builders.push_back(std::move(def));
    }
  }

  std::vector<std::string> string_list(const json::Value& v, const std::string& what, bool& ok) {
    std::vector<std::string> out;
    if (auto s = weak_string(v)) {
      out.push_back(*s);  // a single value is a one-element list, as with Packer's weak decoding
      return out;
    }
    if (!v.is_array()) {
      err(v.pos, what + " must be a list of strings");
      ok = false;
      return out;
    }
    for (const auto& i : v.items) {
      if (auto s = weak_string(i)) {
        out.push_back(*s);
      } else {
        err(i.pos, what + " must be a list of strings");
        ok = false;
      }
    }
    return out;
  }

  std::optional<std::chrono::milliseconds> duration(const json::Value& v, const std::string& what, bool& ok) {
    if (auto s = weak_string(v)) {
      if (auto d = util::parse_duration(*s)) return d;
    }
    err(v.pos, what + ": invalid duration " + (v.is_string() ? "\"" + v.text + "\"" : std::string(v.type_name())) +
                   " (use e.g. \"30s\", \"5m\", \"1h30m\")");
    ok = false;
    return std::nullopt;
  }

  std::optional<ProvisionerDef> provisioner(const json::Value& v, const std::string& label) {
    if (!expect(v, json::Value::Kind::Object, label)) return std::nullopt;
    ProvisionerDef p;
    p.pos = v.pos;
    p.config = v;
    bool ok = true;
    const json::Value* type = v.find("type");
    if (!type || !weak_string(*type) || weak_string(*type)->empty()) {
      err(type ? type->pos : v.pos, label + ": missing 'type'");
      return std::nullopt;
    }
    p.type = *weak_string(*type);
    if (auto* o = v.find("only")) p.only = string_list(*o, label + ": 'only'", ok);
    if (auto* e = v.find("except")) p.except = string_list(*e, label + ": 'except'", ok);
    if (auto* o = v.find("override")) {
      if (o->is_object() || o->is_null()) {
        p.override = *o;
        for (const auto& m : o->members)
          if (!m.value.is_object()) {
            err(m.value.pos, label + ": override for '" + m.key + "' must be an object");
            ok = false;
          }
      } else {
        err(o->pos, label + ": 'override' must be an object mapping build names to options");
        ok = false;
      }
    }
    if (auto* d = v.find("pause_before")) p.pause_before = duration(*d, label + ": 'pause_before'", ok);
    if (auto* d = v.find("timeout")) p.timeout = duration(*d, label + ": 'timeout'", ok);
    if (auto* r = v.find("max_retries")) {
      auto s = weak_string(*r);
      try {
        size_t used = 0;
        if (!s) throw std::invalid_argument("type");
        p.max_retries = std::stoi(*s, &used);
        if (used != s->size() || p.max_retries < 0) throw std::invalid_argument("value");
      } catch (const std::exception&) {
        err(r->pos, label + ": 'max_retries' must be a non-negative whole number");
        ok = false;
      }
    }
    if (auto* c = v.find("cache")) {
      if (c->is_bool()) {
        p.cache = c->boolean;
      } else {
        err(c->pos, label + ": 'cache' must be true or false");
        ok = false;
      }
    }
    for (const char* k : {"type", "only", "except", "override", "pause_before", "timeout", "max_retries", "cache"})
      p.config.erase(k);
    if (!ok) return std::nullopt;
    return p;
  }

  std::optional<PostProcessorDef> post_processor(const json::Value& v, const std::string& label) {
    PostProcessorDef pp;
    pp.pos = v.pos;
    if (v.is_string()) {
      pp.type = v.text;
      pp.name = v.text;
      pp.config.kind = json::Value::Kind::Object;
      pp.config.pos = v.pos;
      return pp;
    }
    pp.config = v;
    bool ok = true;
    const json::Value* type = v.find("type");
    if (!type || !weak_string(*type) || weak_string(*type)->empty()) {
      err(type ? type->pos : v.pos, label + ": type is required");
      return std::nullopt;
    }
    pp.type = *weak_string(*type);
    pp.name = pp.type;
    if (auto* n = v.find("name")) {
      if (auto s = weak_string(*n)) pp.name = *s;
    }
    if (auto* o = v.find("only")) pp.only = string_list(*o, label + ": 'only'", ok);
    if (auto* e = v.find("except")) pp.except = string_list(*e, label + ": 'except'", ok);
    if (auto* k = v.find("keep_input_artifact")) {
      if (k->is_bool()) {
        pp.keep_input_artifact = k->boolean;
      } else {
        err(k->pos, label + ": 'keep_input_artifact' must be true or false");
        ok = false;
      }
    }
    for (const char* k : {"type", "name", "only", "except", "keep_input_artifact"}) pp.config.erase(k);
    if (!ok) return std::nullopt;
    return pp;
  }

  void post_processors(const json::Value& v) {
    if (!expect(v, json::Value::Kind::Array, "'post-processors'")) return;
    for (size_t i = 0; i < v.items.size(); ++i) {
      const auto& item = v.items[i];
      std::string label = "post-processor " + std::to_string(i + 1);
      std::vector<PostProcessorDef> chain;
      if (item.is_string() || item.is_object()) {
        if (auto pp = post_processor(item, label)) chain.push_back(std::move(*pp));
      } else if (item.is_array()) {
        for (size_t j = 0; j < item.items.size(); ++j) {
          const auto& inner = item.items[j];
          std::string inner_label = label + "." + std::to_string(j + 1);
          if (inner.is_array()) {
            err(inner.pos, inner_label + ": a chain can't be nested inside a chain");
          } else if (!inner.is_string() && !inner.is_object()) {
            err(inner.pos, inner_label + ": must be a type name or an object");
          } else if (auto pp = post_processor(inner, inner_label)) {
            chain.push_back(std::move(*pp));
          }
        }
      } else {
        err(item.pos, label + ": must be a type name, an object, or an array (a chain)");
        continue;
      }
      if (!chain.empty()) t_.post_processors.push_back(std::move(chain));
    }
  }
};

}  // namespace

Template parse_template_text(std::string text, const std::string& path) {
  Template t;
  t.path = path;
  std::error_code ec;
  std::filesystem::path p = path == "-" ? std::filesystem::current_path() / "stdin.json" : std::filesystem::path(path);
  t.dir = std::filesystem::absolute(p, ec).parent_path().lexically_normal().string();
  if (t.dir.size() > 1 && t.dir.back() == '/') t.dir.pop_back();
  t.raw = std::move(text);
  try {
    t.root = json::parse(t.raw);
  } catch (const json::ParseError& e) {
    throw ConfigError(path, e.pos, std::string("invalid JSON: ") + e.what());
  }
  Diagnostics d;
  TemplateParser(t, d).run();
  d.throw_if_errors();
  t.warnings = d.warnings();
  return t;
}

std::optional<json::Value> read_json_var_file(const std::string& path, Diagnostics& d) {
  json::Value doc;
  try {
    doc = json::parse(util::read_file(path));
  } catch (const json::ParseError& e) {
    d.error(path, e.pos, std::string("invalid JSON in var file: ") + e.what());
    return std::nullopt;
  } catch (const std::exception& e) {
    d.error("", {}, std::string("-var-file: ") + e.what());
    return std::nullopt;
  }
  if (!doc.is_object()) {
    d.error(path, doc.pos, "a var file must be a JSON object of variable names to values");
    return std::nullopt;
  }
  return doc;
}

Template parse_template_file(const std::string& path) {
  std::string text;
  if (path == "-") {
    text.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  } else {
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec))
      throw ConfigError(path, {}, "is a directory without *.pkr.hcl files; give a JSON template or an HCL2 one");
    try {
      text = util::read_file(path);
    } catch (const std::exception& e) {
      throw ConfigError("", {}, e.what());
    }
  }
  return parse_template_text(std::move(text), path);
}

}  // namespace imgbake
