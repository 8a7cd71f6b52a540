// HCL2 templates: `source` and `build` blocks lowered into the template model. Each source a
// build block uses becomes one BuilderDef named as Packer 1.6.6 names it ("TYPE.NAME", or
// "BUILD.TYPE.NAME" when the build block has a name); the build block's provisioners and
// post-processors are lowered once per source (so `source.name` has that source's value)
// with `only` naming that builder.
#include <algorithm>

#include "hcl_load.h"
#include "imgbake/util.h"

namespace imgbake::hcl_template {

struct HclLoad::SourceUse {
  std::string key;          // TYPE.NAME
  std::string name;         // the source's name (PACKER_BUILD_NAME)
  std::string builder;      // the builder's name in the template model
  std::string build_block;  // the build block's name ("" when it has none)
};

namespace {

json::Pos pos_of(hcl::Range r) { return {r.start.line, r.start.column}; }

// "source.TYPE.NAME" and "TYPE.NAME" name the same source.
std::string source_key(std::string s) {
  if (s.rfind("source.", 0) == 0) s.erase(0, 7);
  return s;
}

const std::set<std::string>& provisioner_generic() {
  static const std::set<std::string> k = {"only",    "except",      "override", "pause_before",
                                          "timeout", "max_retries", "cache"};
  return k;
}

}  // namespace

json::Value HclLoad::lower_value(const hcl::Value& v, const hcl::File& file, hcl::Range where) {
  json::Value j;
  j.pos = pos_of(where);
  if (!v.is_known()) {
    if (!values_missing_)
      error(file, where, "Value not known before the build",
            "imgbake evaluates options before the build starts; this value (build.*) is only known during it.");
    return j;
  }
  if (v.is_null()) return j;
  switch (v.type().kind()) {
    case hcl::Type::Kind::String:
      j.kind = json::Value::Kind::String;
      j.text = v.as_string();
      break;
    case hcl::Type::Kind::Number:
      j.kind = json::Value::Kind::Number;
      j.text = v.as_number().str();
      break;
    case hcl::Type::Kind::Bool:
      j.kind = json::Value::Kind::Bool;
      j.boolean = v.as_bool();
      break;
    case hcl::Type::Kind::List:
    case hcl::Type::Kind::Set:
    case hcl::Type::Kind::Tuple:
      j.kind = json::Value::Kind::Array;
      for (const auto& e : v.elements()) j.items.push_back(lower_value(e, file, where));
      break;
    case hcl::Type::Kind::Map:
    case hcl::Type::Kind::Object:
      j.kind = json::Value::Kind::Object;
      for (const auto& [k, e] : v.attributes()) j.members.push_back({k, j.pos, lower_value(e, file, where)});
      break;
    case hcl::Type::Kind::Dynamic: break;
  }
  return j;
}

json::Value HclLoad::lower_body(const hcl::Body& body, const hcl::File& file, const hcl::EvalContext& ctx,
                                const std::set<std::string>& skip) {
  json::Value obj;
  obj.kind = json::Value::Kind::Object;
  obj.pos = pos_of(body.range);
  for (const auto& a : body.attributes) {
    if (skip.count(a.name)) continue;
    obj.members.push_back({a.name, pos_of(a.name_range), lower_value(eval(*a.expr, file, ctx), file, a.expr->range)});
  }
  // A nested block is an object option (`debootstrap { suite = "bookworm" }`); a repeated one,
  // a list of objects. A dynamic block stands for the blocks it generates.
  auto no_labels = [](const std::string&) -> std::optional<size_t> { return 0; };
  for (const auto& b : blocks_of(body, file, ctx, no_labels)) {
    if (skip.count(b.type)) continue;
    if (!b.labels.empty()) {
      error(file, b.label_ranges[0], "Extraneous label", "A block inside options (" + b.type + ") has no labels.");
      continue;
    }
    json::Value inner = lower_body(*b.body, file, *b.ctx, {});
    inner.pos = pos_of(b.type_range);
    if (obj.find(b.type) && body.attribute(b.type)) {
      error(file, b.type_range, "Duplicate option", "\"" + b.type + "\" is set as an argument and as a block.");
      continue;
    }
    if (json::Value* existing = obj.find(b.type)) {
      if (!existing->is_array()) {
        json::Value list;
        list.kind = json::Value::Kind::Array;
        list.pos = existing->pos;
        list.items.push_back(std::move(*existing));
        *existing = std::move(list);
      }
      existing->items.push_back(std::move(inner));
    } else {
      obj.members.push_back({b.type, pos_of(b.type_range), std::move(inner)});
    }
  }
  return obj;
}

bool HclLoad::applies(const hcl::Body& body, const hcl::File& f, const hcl::EvalContext& ctx, const SourceUse& use,
                      const std::vector<std::string>& build_sources) {
  bool result = true;
  for (const char* which : {"only", "except"}) {
    const hcl::Attribute* a = body.attribute(which);
    if (!a) continue;
    auto list = hcl::convert(eval(*a->expr, f, ctx), hcl::Type::list(hcl::Type::string()));
    if (!list || !list->is_wholly_known() || list->is_null()) {
      error(f, a->expr->range, "Invalid " + std::string(which), std::string(which) + " is a list of source names.");
      continue;
    }
    bool listed = false;
    for (const auto& e : list->elements()) {
      std::string k = source_key(e.as_string());
      // Packer 1.6.6 accepts such a name silently (it never matches): a warning.
      if (std::find(build_sources.begin(), build_sources.end(), k) == build_sources.end())
        error(f, a->expr->range, "Unknown source in " + std::string(which),
              "\"" + e.as_string() + "\" is not a source of this build" + util::did_you_mean(k, build_sources) +
                  "; write TYPE.NAME.",
              true);
      listed = listed || k == use.key;
    }
    if (std::string(which) == "only" ? !listed : listed) result = false;
  }
  return result;
}

std::optional<ProvisionerDef> HclLoad::provisioner(const hcl::BlockView& b, const hcl::File& f,
                                                   const hcl::EvalContext& ctx, const SourceUse& use,
                                                   const std::vector<std::string>& build_sources) {
  if (b.labels.size() != 1) {
    error(f, b.type_range, "Missing provisioner type", "A provisioner block has one label: provisioner \"TYPE\" {}.");
    return std::nullopt;
  }
  if (!applies(*b.body, f, ctx, use, build_sources)) return std::nullopt;
  ProvisionerDef p;
  p.type = b.labels[0];
  p.pos = pos_of(b.type_range);
  p.only = {use.builder};
  p.config = lower_body(*b.body, f, ctx, provisioner_generic());
  p.config.pos = p.pos;
  const hcl::Body& body = *b.body;
  auto duration = [&](const char* key) -> std::optional<std::chrono::milliseconds> {
    const hcl::Attribute* a = body.attribute(key);
    if (!a) return std::nullopt;
    auto v = hcl::convert(eval(*a->expr, f, ctx), hcl::Type::string());
    if (v && v->is_known() && !v->is_null())
      if (auto d = util::parse_duration(v->as_string())) return d;
    error(f, a->expr->range, "Invalid duration",
          std::string(key) + " is a duration such as \"30s\", \"5m\", \"1h30m\".");
    return std::nullopt;
  };
  p.pause_before = duration("pause_before");
  p.timeout = duration("timeout");
  if (const hcl::Attribute* a = body.attribute("cache")) {
    hcl::Value v = eval(*a->expr, f, ctx);
    if (v.is_known() && v.type() == hcl::Type::boolean())
      p.cache = v.as_bool();
    else
      error(f, a->expr->range, "Invalid cache", "cache must be true or false.");
  }
  if (const hcl::Attribute* a = body.attribute("max_retries")) {
    auto v = hcl::convert(eval(*a->expr, f, ctx), hcl::Type::number());
    std::optional<int64_t> n = v && v->is_known() && !v->is_null() ? v->as_number().to_int64() : std::nullopt;
    if (n && *n >= 0 && *n < 1000000)
      p.max_retries = static_cast<int>(*n);
    else
      error(f, a->expr->range, "Invalid max_retries", "max_retries is a whole number, 0 or more.");
  }
  // override = { NAME = { option = value } }: Packer 1.6.6 keys it by the source's name.
  if (const hcl::Attribute* a = body.attribute("override")) {
    json::Value o = lower_value(eval(*a->expr, f, ctx), f, a->expr->range);
    if (!o.is_object()) {
      error(f, a->expr->range, "Invalid override", "override maps source names to objects of options.");
    } else {
      for (const auto& m : o.members) {
        bool known = false;
        for (const auto& k : build_sources) known = known || k == m.key || k.substr(k.find('.') + 1) == m.key;
        if (!known)
          error(f, a->expr->range, "Unknown source in override",
                "\"" + m.key + "\" is not the name of a source of this build.");
        if (!m.value.is_object()) {
          error(f, a->expr->range, "Invalid override", "override for \"" + m.key + "\" must be an object.");
          continue;
        }
        if (m.key != use.name && m.key != use.key) continue;
        for (const auto& opt : m.value.members) {
          if (json::Value* existing = p.config.find(opt.key))
            *existing = opt.value;
          else
            p.config.members.push_back(opt);
        }
      }
    }
  }
  return p;
}

std::optional<PostProcessorDef> HclLoad::post_processor(const hcl::BlockView& b, const hcl::File& f,
                                                        const hcl::EvalContext& ctx, const SourceUse& use,
                                                        const std::vector<std::string>& build_sources) {
  if (b.labels.size() != 1) {
    error(f, b.type_range, "Missing post-processor type",
          "A post-processor block has one label: post-processor \"TYPE\" {}.");
    return std::nullopt;
  }
  if (!applies(*b.body, f, ctx, use, build_sources)) return std::nullopt;
  PostProcessorDef pp;
  pp.type = b.labels[0];
  pp.name = pp.type;
  pp.pos = pos_of(b.type_range);
  pp.only = {use.builder};
  if (const hcl::Attribute* a = b.body->attribute("name")) {
    auto v = hcl::convert(eval(*a->expr, f, ctx), hcl::Type::string());
    if (v && v->is_known() && !v->is_null()) pp.name = v->as_string();
  }
  if (const hcl::Attribute* a = b.body->attribute("keep_input_artifact")) {
    hcl::Value v = eval(*a->expr, f, ctx);
    if (v.is_known() && v.type() == hcl::Type::boolean())
      pp.keep_input_artifact = v.as_bool();
    else
      error(f, a->expr->range, "Invalid keep_input_artifact", "keep_input_artifact must be true or false.");
  }
  pp.config = lower_body(*b.body, f, ctx, {"name", "only", "except", "keep_input_artifact"});
  pp.config.pos = pp.pos;
  return pp;
}

void HclLoad::lower_build_parts(const BlockRef& build, const SourceUse& use,
                                const std::vector<std::string>& build_sources) {
  hcl::EvalContext ctx;
  ctx.parent = &ctx_;
  // build.name is the build block's name; the rest of `build` is only known while the build
  // runs (Packer fills it from the builder), which imgbake does not support yet.
  std::map<std::string, hcl::Value> build_vars = {{"name", hcl::Value::string(use.build_block)}};
  for (const char* k : {"ID", "Host", "Port", "User", "Password", "ConnType", "PackerRunUUID", "PackerHTTPAddr",
                        "PackerHTTPIP", "PackerHTTPPort", "SSHPublicKey", "SSHPrivateKey", "WinRMPassword"})
    build_vars[k] = hcl::Value::unknown(hcl::Type::string());
  ctx.variables["build"] = hcl::Value::object(build_vars);
  ctx.variables["source"] = hcl::Value::object(
      {{"name", hcl::Value::string(use.name)}, {"type", hcl::Value::string(use.key.substr(0, use.key.find('.')))}});
  const hcl::File& f = *build.file;
  // Packer 1.6.6 expands dynamic blocks in a build block (a dynamic "provisioner" needs
  // `labels = ["TYPE"]`).
  auto parts = [](const std::string& type) -> std::optional<size_t> {
    if (type == "provisioner" || type == "error-cleanup-provisioner" || type == "post-processor") return 1;
    if (type == "post-processors") return 0;
    return std::nullopt;
  };
  for (const auto& b : blocks_of(*build.block->body, f, ctx, parts)) {
    if (b.type == "provisioner") {
      if (auto p = provisioner(b, f, *b.ctx, use, build_sources)) t_.provisioners.push_back(std::move(*p));
    } else if (b.type == "error-cleanup-provisioner") {
      auto p = provisioner(b, f, *b.ctx, use, build_sources);
      if (!p) continue;
      if (t_.cleanup_provisioner) {
        // The template model has one; each builder it applies to is listed in its `only`.
        if (t_.cleanup_provisioner->type != p->type ||
            !(t_.cleanup_provisioner->config.to_json() == p->config.to_json()))
          error(f, b.type_range, "Several error-cleanup-provisioners",
                "imgbake runs one error-cleanup-provisioner per template; its options must be the same for "
                "every source.");
        else
          t_.cleanup_provisioner->only.push_back(use.builder);
      } else {
        t_.cleanup_provisioner = std::move(p);
      }
    } else if (b.type == "post-processor") {
      if (auto pp = post_processor(b, f, *b.ctx, use, build_sources)) t_.post_processors.push_back({std::move(*pp)});
    } else if (b.type == "post-processors") {
      check_body(*b.body, f, "a post-processors block", {}, {"post-processor", "dynamic"});
      std::vector<PostProcessorDef> chain;
      auto one = [](const std::string& type) -> std::optional<size_t> {
        return type == "post-processor" ? std::optional<size_t>(1) : std::nullopt;
      };
      for (const auto& inner : blocks_of(*b.body, f, *b.ctx, one))
        if (inner.type == "post-processor")
          if (auto pp = post_processor(inner, f, *inner.ctx, use, build_sources)) chain.push_back(std::move(*pp));
      if (!chain.empty()) t_.post_processors.push_back(std::move(chain));
    }
  }
}

void HclLoad::builds() {
  std::map<std::string, BlockRef> sources;
  std::vector<std::string> source_keys;
  for (const auto& ref : blocks_["source"]) {
    const hcl::Block& b = *ref.block;
    if (b.labels.size() != 2) {
      error(*ref.file, b.type_range, "Missing source labels",
            "A source block has two labels: source \"TYPE\" \"NAME\" {}.");
      continue;
    }
    std::string key = b.labels[0] + "." + b.labels[1];
    if (sources.count(key)) {
      error(*ref.file, b.label_ranges[1], "Duplicate source", "Source \"" + key + "\" is defined twice.");
      continue;
    }
    sources[key] = ref;
    source_keys.push_back(key);
  }

  std::set<std::string> builder_names;
  for (const auto& build : blocks_["build"]) {
    const hcl::Body& body = *build.block->body;
    const hcl::File& f = *build.file;
    check_body(body, f, "a build block", {"name", "description", "sources"},
               {"source", "provisioner", "error-cleanup-provisioner", "post-processor", "post-processors", "dynamic"});
    std::string build_name;
    if (const hcl::Attribute* a = body.attribute("name")) {
      auto v = hcl::convert(eval(*a->expr, f, ctx_), hcl::Type::string());
      if (v && v->is_known() && !v->is_null()) build_name = v->as_string();
    }
    if (const hcl::Attribute* a = body.attribute("description")) {
      auto v = hcl::convert(eval(*a->expr, f, ctx_), hcl::Type::string());
      if (v && v->is_known() && !v->is_null() && t_.description.empty()) t_.description = v->as_string();
    }

    // The sources it uses: `sources = ["source.TYPE.NAME", ...]` and `source "TYPE.NAME" { overrides }`.
    struct Ref {
      std::string key;
      hcl::Range range;
      const hcl::Block* overrides = nullptr;
    };
    std::vector<Ref> refs;
    if (const hcl::Attribute* a = body.attribute("sources")) {
      if (a->expr->kind != hcl::Expr::Kind::Tuple) {
        error(f, a->expr->range, "Invalid sources", "sources is a list such as [\"source.TYPE.NAME\"].");
      } else {
        for (const auto& item : a->expr->items) {
          const hcl::Traversal& tr = item->traversal;
          if (item->kind == hcl::Expr::Kind::ScopeTraversal && tr.size() == 3 && tr[0].name == "source") {
            refs.push_back({tr[1].name + "." + tr[2].name, item->range});
            continue;
          }
          hcl::Value v = eval(*item, f, ctx_);
          if (v.is_known() && v.type() == hcl::Type::string())
            refs.push_back({source_key(v.as_string()), item->range});
          else
            error(f, item->range, "Invalid source reference", "Write a source as \"source.TYPE.NAME\".");
        }
      }
    }
    for (const auto& b : body.blocks)
      if (b.type == "source") {
        if (b.labels.size() != 1)
          error(f, b.type_range, "Invalid source block", "A source block in a build has one label: \"TYPE.NAME\".");
        else
          refs.push_back({source_key(b.labels[0]), b.label_ranges[0], &b});
      }
    if (refs.empty()) error(f, build.block->type_range, "Build without sources", "A build block needs sources.");

    std::vector<std::string> build_sources;
    build_sources.reserve(refs.size());
    for (const auto& r : refs) build_sources.push_back(r.key);
    bool first = true;
    for (const auto& r : refs) {
      auto it = sources.find(r.key);
      if (it == sources.end()) {
        error(f, r.range, "Unknown source",
              "There is no source \"" + r.key + "\"" + util::did_you_mean(r.key, source_keys) + ".");
        continue;
      }
      const auto& [sblock, sfile] = it->second;
      SourceUse use;
      use.key = r.key;
      use.name = sblock->labels[1];
      BuilderDef def;
      def.type = sblock->labels[0];
      def.pos = pos_of(sblock->type_range);
      def.config = lower_body(*sblock->body, *sfile, ctx_, {});
      if (r.overrides) {
        json::Value o = lower_body(*r.overrides->body, f, ctx_, {"name"});
        for (const auto& m : o.members) {
          if (json::Value* existing = def.config.find(m.key))
            *existing = m.value;
          else
            def.config.members.push_back(m);
        }
        if (const hcl::Attribute* n = r.overrides->body->attribute("name")) {
          auto v = hcl::convert(eval(*n->expr, f, ctx_), hcl::Type::string());
          if (v && v->is_known() && !v->is_null()) use.name = v->as_string();
        }
      }
      def.build_name = use.name;
      def.name = (build_name.empty() ? "" : build_name + ".") + def.type + "." + use.name;
      use.builder = def.name;
      use.build_block = build_name;
      if (!builder_names.insert(def.name).second) {
        error(f, r.range, "Duplicate build", "A build named \"" + def.name + "\" already exists.");
        continue;
      }
      t_.builders.push_back(std::move(def));
      mute_ = !first;  // the parts are the same for every source: report their problems once
      lower_build_parts(build, use, build_sources);
      mute_ = false;
      first = false;
    }
  }
}

}  // namespace imgbake::hcl_template
