#include <algorithm>
#include <cstring>
#include <filesystem>
#include <regex>
#include <set>

#include "imgbake/build.h"
#include "imgbake/util.h"

namespace imgbake {

json::Value render_value(const json::Value& v, const interp::Context& ctx, const RenderSource& src,
                         const std::set<std::string>& runtime_keys) {
  json::Value out = v;
  switch (v.kind) {
    case json::Value::Kind::String:
      if (interp::has_actions(v.text)) {
        std::vector<interp::Context::Undefined> undefined;
        interp::Context c = ctx;
        c.undefined_users = &undefined;
        try {
          out.text = interp::render(v.text, c);
        } catch (const interp::Poisoned&) {
          // The variable's own error was reported; checks of this value would repeat it.
          if (src.poisoned) src.poisoned->insert({v.pos.line, v.pos.col});
        } catch (const interp::TooLong& e) {
          src.diags.error(src.file, json::source_pos(src.text, v.pos, e.offset),
                          (src.what.empty() ? std::string("this value") : src.what) + " would be longer than " +
                              std::to_string(interp::kMaxRenderedSize >> 20) +
                              " MiB (the limit on a rendered value) where '" + e.action + "' adds to it");
        } catch (const interp::Error& e) {
          src.diags.error(src.file, json::source_pos(src.text, v.pos, e.offset), e.what());
        }
        for (const auto& u : undefined) {
          std::vector<std::string> names;
          if (ctx.user_vars)
            for (const auto& [k, unused] : *ctx.user_vars) names.push_back(k);
          src.diags.warn(src.file, json::source_pos(src.text, v.pos, u.offset),
                         "variable '" + u.name + "' is not defined, so it is empty here (as in Packer)" +
                             util::did_you_mean(u.name, names));
        }
      }
      break;
    case json::Value::Kind::Array: {
      size_t poisoned_before = src.poisoned ? src.poisoned->size() : 0;
      for (auto& i : out.items) i = render_value(i, ctx, src);
      // A list with an element left unrendered is checked as a whole at its own position.
      if (src.poisoned && src.poisoned->size() > poisoned_before) src.poisoned->insert({v.pos.line, v.pos.col});
      break;
    }
    case json::Value::Kind::Object:
      for (auto& m : out.members) {
        if (runtime_keys.count(m.key)) {
          interp::Context later = ctx;
          later.defer_unknown = true;
          m.value = render_value(m.value, later, src);
        } else {
          m.value = render_value(m.value, ctx, src);
        }
      }
      break;
    default: break;
  }
  return out;
}

Variables resolve_variables(const Template& t, const BuildOptions& opts, Diagnostics& diags, bool require_all) {
  Variables vars;
  if (t.hcl) {
    // An HCL2 template's values were given, converted and checked while it was loaded
    // (load_template): -var, -var-file, PKR_VAR_* and *.auto.pkrvars.hcl included.
    for (const auto& v : t.variables) {
      if (v.required)
        vars.failed.insert(v.name);
      else
        vars.values[v.name] = v.default_value;
    }
    for (const auto& s : t.secrets) vars.masker->add(s);
    return vars;
  }
  std::set<std::string> given;
  std::vector<std::string> declared;
  for (const auto& v : t.variables) {
    declared.push_back(v.name);
    if (!v.required) vars.values[v.name] = v.default_value;
  }

  // As in Packer: defaults, then -var-file files in order, then -var flags; then
  // every value is rendered, so a default may use {{env}} and the final value of
  // another variable ({{user `x`}}), whatever the declaration order.
  std::map<std::string, json::Pos> value_pos;
  if (const json::Value* section = t.root.find("variables"))
    for (const auto& m : section->members) value_pos[m.key] = m.value.pos;
  std::map<std::string, std::string> value_file;
  for (const auto& file : opts.var_files) {
    std::optional<json::Value> doc = read_json_var_file(file, diags);
    if (!doc) continue;
    for (const auto& m : doc->members) {
      if (m.value.is_string() || m.value.is_number()) {
        vars.values[m.key] = m.value.text;
      } else if (m.value.is_bool()) {
        vars.values[m.key] = m.value.boolean ? "true" : "false";
      } else {
        diags.error(file, m.value.pos,
                    "variable '" + m.key + "' must be a string, not " + std::string(m.value.type_name()));
        continue;
      }
      given.insert(m.key);
      value_pos[m.key] = m.value.pos;
      value_file[m.key] = file;
      if (!t.variable(m.key))
        diags.warn(file, m.key_pos,
                   "variable '" + m.key + "' is not declared in the template" + util::did_you_mean(m.key, declared));
    }
  }
  for (const auto& [k, v] : opts.vars) {
    vars.values[k] = v;
    given.insert(k);
    value_pos[k] = {};
    value_file[k] = "-var " + k;
    if (!t.variable(k))
      diags.warn(
          "", {},
          "-var " + k + ": variable '" + k + "' is not declared in the template" + util::did_you_mean(k, declared));
  }

  interp::Context ctx;
  ctx.allow_env = true;
  ctx.defer_unknown = false;  // {{build_name}} or {{ .X }} mean nothing in a variable: an error
  ctx.template_dir = t.dir;
  // A reference to a declared variable that has no value yet (required, unset) is
  // reported once as "required variable not set", not at every use.
  std::map<std::string, std::string> rendered = vars.values;
  ctx.user_vars = &rendered;
  std::set<std::string> cyclic, errored;
  auto render_all = [&](Diagnostics& d) {
    bool changed = false;
    cyclic.clear();
    errored.clear();
    for (auto& [name, value] : rendered) {
      if (!interp::has_actions(value)) continue;
      std::string file = value_file.count(name) ? value_file[name] : t.path;
      std::string_view text = value_file.count(name) ? std::string_view() : std::string_view(t.raw);
      size_t before = d.errors().size();
      json::Value r = render_value(json::Value::make_string(value, value_pos[name]), ctx,
                                   RenderSource{file, text, d, nullptr, "variable '" + name + "'"});
      if (d.errors().size() > before) errored.insert(name);
      if (r.text != value) {
        value = r.text;
        changed = true;
      } else if (d.items().empty() || !d.has_errors()) {
        // Rendering gave the same text back: the value refers to itself through other
        // variables (a -> b -> a).
        cyclic.insert(name);
      }
    }
    return changed;
  };
  for (int pass = 0; pass < 16; ++pass) {
    Diagnostics ignored;  // ordering effects; the final pass reports what is left
    if (!render_all(ignored)) break;
  }
  Diagnostics final_diags;
  render_all(final_diags);
  for (const auto& d : final_diags.errors()) {
    bool unset_required = false;
    for (const auto& v : t.variables)
      if (v.required && !given.count(v.name) && d.message.find("'" + v.name + "'") != std::string::npos)
        unset_required = true;
    if (!unset_required) diags.error(d.file, d.pos, d.message);
  }
  if (!final_diags.has_errors())
    for (const auto& name : cyclic) {
      // {{user `me`}} in me's own value: say so plainly, and how to give it a value.
      std::string quoted;
      for (char ch : name) quoted += std::string(std::strchr("\\^$.|?*+()[]{}", ch) && ch ? "\\" : "") + ch;
      std::regex self("user\\s+[`\"]" + quoted + "[`\"]");
      bool direct = std::regex_search(vars.values.count(name) ? vars.values[name] : "", self);
      diags.error(value_file.count(name) ? value_file[name] : t.path, value_pos[name],
                  direct ? "variable '" + name + "' refers to itself; give it a value with -var " + name +
                               "=VALUE or in a -var-file"
                         : "variable '" + name + "' refers to itself through other variables (a circular reference)");
    }
  vars.values = rendered;
  vars.failed.insert(cyclic.begin(), cyclic.end());
  vars.failed.insert(errored.begin(), errored.end());

  for (const auto& v : t.variables) {
    if (v.required && !given.count(v.name)) vars.failed.insert(v.name);
    if (v.required && !given.count(v.name) && require_all)
      diags.error(
          t.path, v.pos,
          "required variable '" + v.name + "' is not set; give it with -var " + v.name + "=VALUE or in a -var-file");
    if (v.sensitive && vars.values.count(v.name)) vars.masker->add(vars.values[v.name]);
  }
  return vars;
}

namespace {

bool selected(const std::string& name, const BuildOptions& opts, bool hcl) {
  // HCL2 builds are TYPE.NAME (as Packer 1.6.6 names them); source.TYPE.NAME is accepted too.
  auto match = [&](const std::string& g) {
    return util::glob_match(g, name) || (hcl && g.rfind("source.", 0) == 0 && util::glob_match(g.substr(7), name));
  };
  if (!opts.only.empty() && std::none_of(opts.only.begin(), opts.only.end(), match)) return false;
  return std::none_of(opts.except.begin(), opts.except.end(), match);
}

bool applies_to(const std::vector<std::string>& only, const std::vector<std::string>& except,
                const std::string& build) {
  if (!only.empty() && std::find(only.begin(), only.end(), build) == only.end()) return false;
  return std::find(except.begin(), except.end(), build) == except.end();
}

// Applies a provisioner's "override" for this build: keys replace the base options.
json::Value with_override(const ProvisionerDef& p, const std::string& build) {
  json::Value cfg = p.config;
  if (!p.override.is_object()) return cfg;
  const json::Value* o = p.override.find(build);
  if (!o || !o->is_object()) return cfg;
  for (const auto& m : o->members) {
    if (json::Value* existing = cfg.find(m.key)) {
      *existing = m.value;
    } else {
      cfg.members.push_back(m);
    }
  }
  return cfg;
}

std::string unknown_type_message(const std::string& kind, const std::string& type,
                                 const std::vector<std::string>& known) {
  return "unknown " + kind + " type '" + type + "'" + util::did_you_mean(type, known) +
         "; imgbake has: " + util::join(known, ", ");
}

}  // namespace

std::vector<BuildPlan> plan_builds(const Template& t, const Variables& vars, const BuildOptions& opts,
                                   Diagnostics& out) {
  // Collected here first: errors at a value that uses a failed variable are dropped at the end.
  Diagnostics diags;
  std::set<std::pair<int, int>> poisoned;
  std::vector<BuildPlan> plans;
  const auto& builders = BuilderRegistry::instance();
  const auto& provisioners = ProvisionerRegistry::instance();
  const auto& post_processors = PostProcessorRegistry::instance();

  interp::Context base;
  base.user_vars = &vars.values;
  base.template_dir = t.dir;
  base.defer_unknown = false;
  base.failed_user_vars = &vars.failed;
  RenderSource src{t.path, t.raw, diags, &poisoned};

  // Build names may use variables: render them first, they are what only/except name.
  std::vector<std::string> names;
  const json::Value* section = t.root.find("builders");
  for (size_t i = 0; i < t.builders.size(); ++i) {
    const auto& b = t.builders[i];
    json::Pos name_pos = b.pos;
    if (section && i < section->items.size())
      if (const json::Value* n = section->items[i].find("name")) name_pos = n->pos;
    json::Value n = render_value(json::Value::make_string(b.name, name_pos), base, src);
    names.push_back(n.text);
  }

  // Unknown builder types: say which are unknown and which exist, once.
  std::set<std::string> unknown_types;
  for (const auto& b : t.builders)
    if (!builders.has(b.type)) unknown_types.insert(b.type);
  for (size_t i = 0; i < t.builders.size(); ++i) {
    const auto& b = t.builders[i];
    if (!builders.has(b.type))
      diags.error(t.path, b.pos,
                  "builder '" + names[i] + "': " + unknown_type_message("builder", b.type, builders.names()));
  }

  // Provisioner only/except/override must name builds that exist.
  auto check_names = [&](const std::vector<std::string>& list, const std::string& label, const std::string& what,
                         json::Pos pos) {
    for (const auto& n : list)
      if (std::find(names.begin(), names.end(), n) == names.end())
        diags.error(
            t.path, pos,
            label + ": '" + what + "' names build '" + n + "', which does not exist" + util::did_you_mean(n, names));
  };
  auto check_prov = [&](const ProvisionerDef& p, const std::string& label) {
    check_names(p.only, label, "only", p.pos);
    check_names(p.except, label, "except", p.pos);
    if (p.override.is_object())
      for (const auto& m : p.override.members)
        if (std::find(names.begin(), names.end(), m.key) == names.end())
          diags.error(
              t.path, m.key_pos,
              label + ": override for build '" + m.key + "', which does not exist" + util::did_you_mean(m.key, names));
    if (!provisioners.has(p.type))
      diags.error(t.path, p.pos, label + ": " + unknown_type_message("provisioner", p.type, provisioners.names()));
  };
  for (size_t i = 0; i < t.provisioners.size(); ++i)
    check_prov(t.provisioners[i], "provisioner " + std::to_string(i + 1) + " (" + t.provisioners[i].type + ")");
  if (t.cleanup_provisioner)
    check_prov(*t.cleanup_provisioner, "error-cleanup-provisioner (" + t.cleanup_provisioner->type + ")");
  for (size_t c = 0; c < t.post_processors.size(); ++c) {
    for (size_t j = 0; j < t.post_processors[c].size(); ++j) {
      const auto& pp = t.post_processors[c][j];
      std::string label =
          "post-processor " + std::to_string(c + 1) + "." + std::to_string(j + 1) + " (" + pp.type + ")";
      check_names(pp.only, label, "only", pp.pos);
      check_names(pp.except, label, "except", pp.pos);
      if (!post_processors.has(pp.type))
        diags.error(t.path, pp.pos,
                    label + ": " + unknown_type_message("post-processor", pp.type, post_processors.names()));
    }
  }

  // Validate every build (even those -only skips: a template is valid or not), but
  // return plans only for the selected ones.
  for (size_t i = 0; i < t.builders.size(); ++i) {
    const auto& b = t.builders[i];
    if (!builders.has(b.type)) continue;
    BuildPlan plan;
    plan.name = names[i];
    plan.type = b.type;
    plan.interp = base;
    plan.interp.build_name = b.build_name.empty() ? plan.name : b.build_name;
    plan.interp.build_type = plan.type;

    plan.builder = builders.create(b.type);
    {
      json::Value cfg = render_value(b.config, plan.interp, src, plan.builder->runtime_keys());
      ConfigReader reader(cfg, t.path, "builder '" + plan.name + "' (" + b.type + ")", diags);
      plan.builder->prepare(reader);
      reader.finish();
    }

    auto prepare_prov = [&](const ProvisionerDef& p, const std::string& label) -> std::optional<PlannedProvisioner> {
      if (!provisioners.has(p.type)) return std::nullopt;
      PlannedProvisioner pp;
      pp.def = &p;
      pp.label = label;
      pp.impl = provisioners.create(p.type);
      json::Value cfg = render_value(with_override(p, plan.name), plan.interp, src, pp.impl->runtime_keys());
      ConfigReader reader(cfg, t.path, label, diags);
      pp.impl->prepare(reader);
      reader.finish();
      return pp;
    };
    for (size_t k = 0; k < t.provisioners.size(); ++k) {
      const auto& p = t.provisioners[k];
      if (!applies_to(p.only, p.except, plan.name)) continue;
      if (auto pp = prepare_prov(p, "provisioner " + std::to_string(k + 1) + " (" + p.type + ")"))
        plan.provisioners.push_back(std::move(*pp));
    }
    if (t.cleanup_provisioner && applies_to(t.cleanup_provisioner->only, t.cleanup_provisioner->except, plan.name))
      plan.cleanup_provisioner =
          prepare_prov(*t.cleanup_provisioner, "error-cleanup-provisioner (" + t.cleanup_provisioner->type + ")");

    for (size_t c = 0; c < t.post_processors.size(); ++c) {
      std::vector<PlannedPostProcessor> chain;
      for (size_t j = 0; j < t.post_processors[c].size(); ++j) {
        const auto& def = t.post_processors[c][j];
        if (!post_processors.has(def.type)) continue;
        if (!applies_to(def.only, def.except, plan.name)) continue;
        PlannedPostProcessor pp;
        pp.def = &def;
        pp.label = "post-processor " + std::to_string(c + 1) + "." + std::to_string(j + 1) + " (" + def.type + ")";
        pp.impl = post_processors.create(def.type);
        json::Value cfg = render_value(def.config, plan.interp, src, pp.impl->runtime_keys());
        ConfigReader reader(cfg, t.path, pp.label, diags);
        pp.impl->prepare(reader);
        reader.finish();
        chain.push_back(std::move(pp));
      }
      if (!chain.empty()) plan.chains.push_back(std::move(chain));
    }
    // imgbake's own section is rendered per build too (its image name may use variables).
    if (t.imgbake) {
      json::Value v = render_value(*t.imgbake, plan.interp, src);
      if (const json::Value* img = v.find("image"); img && img->is_string() && !img->text.empty()) {
        static const std::regex repo("[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*)*");
        if (!std::regex_match(img->text, repo))
          diags.error(t.path, img->pos,
                      "'imgbake': image name '" + img->text +
                          "' is not a valid OCI repository name (lower-case letters, digits, '.', "
                          "'_', '-', '/')");
      }
    }
    if (selected(plan.name, opts, t.hcl)) plans.push_back(std::move(plan));
  }

  if (!t.builders.empty() && plans.empty() && !diags.has_errors() && !out.has_errors())
    diags.error("", {}, "-only/-except selected no build; the builds are: " + util::join(names, ", "));
  // An HCL2 template without build blocks is valid (as in Packer); it builds nothing.
  if (t.builders.empty() && !t.hcl) diags.error(t.path, t.root.pos, "the template has no builders");
  for (const auto& d : diags.items()) {
    if (d.warning) {
      out.warn(d.file, d.pos, d.message);
    } else if (!(d.file == t.path && poisoned.count({d.pos.line, d.pos.col}))) {
      out.error(d.file, d.pos, d.message);
    }
  }
  return plans;
}

}  // namespace imgbake
