// HCL2 templates: which files are read, the top-level blocks, `packer {}` and `imgbake {}`.
// Variables, locals and builds are in hcl_variables.cpp and hcl_builds.cpp.
#include "hcl_load.h"

#include <algorithm>
#include <filesystem>
#include <sstream>

#include "imgbake/util.h"
#include "imgbake_section.h"

namespace imgbake {

namespace fs = std::filesystem;

namespace {

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

}  // namespace

std::vector<std::string> hcl_template::files_with_suffix(const std::string& dir, std::string_view suffix) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    std::string name = e.path().filename().string();
    if (ends_with(name, suffix) && !e.is_directory()) out.push_back((fs::path(dir) / name).string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

bool is_hcl_template(const std::string& path) {
  if (ends_with(path, ".pkr.hcl") || ends_with(path, ".pkr.json")) return true;
  std::error_code ec;
  return fs::is_directory(path, ec) && (!hcl_template::files_with_suffix(path, ".pkr.hcl").empty() ||
                                        !hcl_template::files_with_suffix(path, ".pkr.json").empty());
}

Template load_template(const std::string& path, const VariableInputs& inputs) {
  if (path == "-" || !is_hcl_template(path)) return parse_template_file(path);
  Template t;
  Diagnostics d;
  hcl_template::HclLoad(t, d, inputs).run(path);
  d.throw_if_errors();
  t.warnings = d.warnings();
  return t;
}

namespace hcl_template {

namespace {

const std::vector<std::string>& top_level_blocks() {
  static const std::vector<std::string> b = {"packer", "variable", "variables", "locals", "local",
                                             "source", "build",    "imgbake",   "data"};
  return b;
}

// Which JSON properties are blocks in HCL's JSON syntax (`*.pkr.json`): Packer's schema.
// Bodies of components (sources, provisioners, post-processors) hold arguments only; a nested
// block there is an object (or an array of objects), which is what a native block lowers to.
struct PackerJsonSchema {
  // Every property an argument but `dynamic` blocks (read whole, as hcl's Content).
  hcl::BodySchema arguments{{{"dynamic", {"type"}, &dynamic}}, {}};
  hcl::BodySchema dynamic{{{"content", {}, &arguments}}, {"iterator"}};
  hcl::BodySchema variable{{{"validation", {}, &arguments}}, {"type"}};
  hcl::BodySchema packer{{{"required_plugins", {}, nullptr}}, {}};
  hcl::BodySchema post_processors{{{"post-processor", {"type"}, &arguments}, {"dynamic", {"type"}, &dynamic}}, {}};
  hcl::BodySchema build{{{"dynamic", {"type"}, &dynamic},
                         {"source", {"name"}, &arguments},
                         {"provisioner", {"type"}, &arguments},
                         {"error-cleanup-provisioner", {"type"}, &arguments},
                         {"post-processor", {"type"}, &arguments},
                         {"post-processors", {}, &post_processors}},
                        {}};
  hcl::BodySchema file{{{"packer", {}, &packer},
                        {"variable", {"name"}, &variable},
                        {"variables", {}, nullptr},
                        {"locals", {}, nullptr},
                        {"local", {"name"}, &arguments},
                        {"source", {"type", "name"}, &arguments},
                        {"build", {}, &build},
                        {"imgbake", {}, &arguments},
                        {"data", {"type", "name"}, &arguments}},
                       {}};
};

const hcl::BodySchema& packer_json_schema() {
  static const PackerJsonSchema s;
  return s.file;
}

// Packer's version constraints (hashicorp/go-version): "op version" clauses joined by commas,
// op one of = != > >= < <= ~>. imgbake reads templates as Packer 1.6.6 does, so that is the
// version they are checked against.
constexpr const char* kPackerVersion = "1.6.6";

std::vector<int> version_parts(const std::string& v) {
  std::vector<int> out;
  std::stringstream ss(v);
  std::string part;
  while (std::getline(ss, part, '.')) {
    size_t used = 0;
    try {
      out.push_back(std::stoi(part, &used));
    } catch (const std::exception&) {
      return {};
    }
    if (used != part.size()) return {};
  }
  return out;
}

int compare_versions(std::vector<int> a, std::vector<int> b) {
  size_t n = std::max(a.size(), b.size());
  a.resize(n, 0);
  b.resize(n, 0);
  return a < b ? -1 : a > b ? 1 : 0;
}

// nullopt: the constraint cannot be read; else whether `have` meets it.
std::optional<bool> meets(const std::string& constraint, const std::string& have) {
  std::vector<int> h = version_parts(have);
  std::stringstream ss(constraint);
  std::string clause;
  bool ok = true;
  while (std::getline(ss, clause, ',')) {
    clause = util::trim(clause);
    std::string op = "=";
    for (const char* o : {">=", "<=", "!=", "~>", ">", "<", "="})
      if (clause.rfind(o, 0) == 0) {
        op = o;
        clause = util::trim(clause.substr(std::string(o).size()));
        break;
      }
    if (!clause.empty() && clause[0] == 'v') clause.erase(0, 1);
    std::vector<int> want = version_parts(clause);
    if (want.empty()) return std::nullopt;
    int c = compare_versions(h, want);
    if (op == "=") ok = ok && c == 0;
    if (op == "!=") ok = ok && c != 0;
    if (op == ">") ok = ok && c > 0;
    if (op == ">=") ok = ok && c >= 0;
    if (op == "<") ok = ok && c < 0;
    if (op == "<=") ok = ok && c <= 0;
    if (op == "~>") {
      // ~> 1.6 allows 1.x from 1.6 on; ~> 1.6.2 allows 1.6.x from 1.6.2 on.
      std::vector<int> upper(want.begin(), want.end() - (want.size() > 1 ? 1 : 0));
      if (want.size() > 1) ++upper.back();
      ok = ok && c >= 0 && (want.size() == 1 || compare_versions(h, upper) < 0);
    }
  }
  return ok;
}

}  // namespace

// Data sources (Packer 1.7's `data "TYPE" "NAME"`; Packer 1.6.6 has none): `null` (its
// `input` is its `output`, data.null.NAME.output). The others query a cloud or a service
// while the template is read, which imgbake does not do: an error at the block.
void HclLoad::data_sources() {
  std::map<std::string, hcl::Value> nulls;
  for (const auto& [block, file] : blocks_["data"]) {
    if (block->labels.size() != 2) {
      error(*file, block->type_range, "Missing data source labels",
            "A data block has two labels: data \"TYPE\" \"NAME\" {}.");
      continue;
    }
    const std::string& type = block->labels[0];
    if (type != "null") {
      error(*file, block->label_ranges[0], "Unsupported data source",
            "Data source \"" + type +
                "\" is not available in imgbake: it would query a cloud or a service while the template is read. "
                "Only \"null\" is supported; pass the value in a variable (-var, -var-file or PKR_VAR_) instead.");
      continue;
    }
    check_body(*block->body, *file, "a null data source", {"input"}, {});
    const hcl::Attribute* input = block->body->attribute("input");
    if (!input) {
      error(*file, block->type_range, "Missing required argument", "The argument \"input\" is required.");
      continue;
    }
    hcl::Value v = eval(*input->expr, *file, ctx_);
    nulls[block->labels[1]] = hcl::Value::object({{"input", v}, {"output", v}});
  }
  if (!nulls.empty()) ctx_.variables["data"] = hcl::Value::object({{"null", hcl::Value::object(nulls)}});
}

const std::string& HclLoad::source_of(const std::string& filename) const {
  static const std::string none;
  for (const auto& f : files_)
    if (f->name == filename) return f->source;
  return none;
}

void HclLoad::error(const hcl::File& file, hcl::Range r, const std::string& summary, const std::string& detail,
                    bool warning) {
  hcl::Diagnostic diag{warning ? hcl::Diagnostic::Severity::Warning : hcl::Diagnostic::Severity::Error, summary, detail,
                       file.name, r};
  hcl::Diagnostics ds;
  ds.add(diag);
  report(ds);
}

void HclLoad::report(const hcl::Diagnostics& ds) {
  if (mute_ || quiet_) return;
  for (const auto& diag : ds.items()) {
    // hcl's format starts with "file:line:col: error: "; imgbake's Diagnostic adds the first part.
    std::string text = hcl::format(diag, source_of(diag.file));
    std::string prefix = diag.file + ":" + std::to_string(diag.subject.start.line) + ":" +
                         std::to_string(diag.subject.start.column) + ": ";
    if (text.rfind(prefix, 0) == 0) text.erase(0, prefix.size());
    for (const char* sev : {"error: ", "warning: "})
      if (text.rfind(sev, 0) == 0) text.erase(0, std::string(sev).size());
    json::Pos pos{diag.subject.start.line, diag.subject.start.column};
    if (diag.severity == hcl::Diagnostic::Severity::Warning)
      d_.warn(diag.file, pos, text);
    else
      d_.error(diag.file, pos, text);
  }
}

std::vector<hcl::BlockView> HclLoad::blocks_of(const hcl::Body& body, const hcl::File& file,
                                               const hcl::EvalContext& ctx, const hcl::LabelCount& labels_of) {
  hcl::Diagnostics ds;
  std::vector<hcl::BlockView> out = hcl::expand_blocks(body, ctx, labels_of, ds, file.name);
  report(ds);
  return out;
}

hcl::Value HclLoad::eval(const hcl::Expr& e, const hcl::File& file, const hcl::EvalContext& ctx) {
  hcl::Diagnostics ds;
  hcl::Value v = hcl::evaluate(e, ctx, ds, file.name);
  report(ds);
  return v;
}

void HclLoad::check_body(const hcl::Body& body, const hcl::File& file, const std::string& what,
                         const std::vector<std::string>& attributes, const std::vector<std::string>& blocks) {
  for (const auto& a : body.attributes)
    if (std::find(attributes.begin(), attributes.end(), a.name) == attributes.end())
      error(file, a.name_range, "Unsupported argument",
            "An argument named \"" + a.name + "\" is not expected in " + what + "." +
                util::did_you_mean(a.name, attributes));
  for (const auto& b : body.blocks)
    if (std::find(blocks.begin(), blocks.end(), b.type) == blocks.end())
      error(file, b.type_range, "Unsupported block type",
            "Blocks of type \"" + b.type + "\" are not expected in " + what + "." + util::did_you_mean(b.type, blocks));
}

void HclLoad::run(const std::string& path) {
  std::error_code ec;
  bool dir = fs::is_directory(path, ec);
  // As Packer: the native files, then those in HCL's JSON syntax, each kind in name order.
  std::vector<std::string> names = dir ? files_with_suffix(path, ".pkr.hcl") : std::vector<std::string>{path};
  if (dir)
    for (auto& j : files_with_suffix(path, ".pkr.json")) names.push_back(std::move(j));
  t_.hcl = true;
  if (dir) loaded_dir_ = path;
  t_.path = names.front();
  fs::path base = dir ? fs::path(path) : fs::path(path).parent_path();
  t_.dir = fs::absolute(base.empty() ? fs::path(".") : base, ec).lexically_normal().string();
  if (t_.dir.size() > 1 && t_.dir.back() == '/') t_.dir.pop_back();

  hcl::Diagnostics parse_diags;
  for (const auto& name : names) {
    std::string text;
    try {
      text = util::read_file(name);
    } catch (const std::exception& e) {
      throw ConfigError("", {}, e.what());
    }
    t_.files.push_back(name);
    // The template digest covers every file, each under its name.
    t_.raw += "# " + fs::path(name).filename().string() + "\n" + text + "\n";
    files_.push_back(std::make_unique<hcl::File>(
        ends_with(name, ".pkr.json") ? hcl::parse_json_file(std::move(text), name, &packer_json_schema(), parse_diags)
                                     : hcl::parse_file(std::move(text), name, parse_diags)));
  }
  report(parse_diags);
  if (parse_diags.has_errors()) return;

  for (const auto& f : files_) {
    for (const auto& a : f->body.attributes)
      error(*f, a.name_range, "Unsupported argument",
            "An argument named \"" + a.name +
                "\" is not expected at the top level; top-level blocks are packer, variable, locals, source, "
                "build and imgbake.");
    for (const auto& b : f->body.blocks) {
      if (std::find(top_level_blocks().begin(), top_level_blocks().end(), b.type) == top_level_blocks().end()) {
        error(*f, b.type_range, "Unsupported block type",
              "Blocks of type \"" + b.type + "\" are not expected here." +
                  util::did_you_mean(b.type, top_level_blocks()));
        continue;
      }
      blocks_[b.type].push_back({&b, f.get()});
    }
  }
  // Errors in component options name the file of the first build block.
  if (!blocks_["build"].empty()) t_.path = blocks_["build"].front().file->name;

  ctx_.functions = packer_functions(t_.dir);
  ctx_.variables["path"] = hcl::Value::object(
      {{"root", hcl::Value::string(t_.dir)}, {"cwd", hcl::Value::string(fs::current_path(ec).string())}});

  for (const auto& [block, file] : blocks_["packer"]) {
    check_body(*block->body, *file, "a packer block", {"required_version"}, {"required_plugins"});
    for (const auto& b : block->body->blocks)
      if (b.type == "required_plugins")
        error(*file, b.type_range, "required_plugins is ignored",
              "imgbake's builders, provisioners and post-processors are built in; no plugin is installed.", true);
    const hcl::Attribute* rv = block->body->attribute("required_version");
    if (!rv) continue;
    hcl::Value v = eval(*rv->expr, *file, hcl::EvalContext{});
    if (!v.is_known() || v.type() != hcl::Type::string()) {
      error(*file, rv->expr->range, "Invalid required_version", "required_version must be a string.");
      continue;
    }
    std::optional<bool> ok = meets(v.as_string(), kPackerVersion);
    if (!ok)
      error(*file, rv->expr->range, "Invalid version constraint",
            "\"" + v.as_string() + "\" is not a version constraint such as \">= 1.6.0\".");
    else if (!*ok)
      error(*file, rv->expr->range, "Unsupported Packer Core version",
            "This configuration does not support Packer version " + std::string(kPackerVersion) +
                " (imgbake reads templates as Packer " + kPackerVersion + " does).");
  }
  variables();
  if (in_.syntax_only) return;
  data_sources();
  // inspect (require_all off) lists what the template declares, as `packer inspect` does,
  // whatever the values: problems in locals and builds are not reported there.
  quiet_ = !in_.require_all;
  locals();
  builds();
  quiet_ = false;

  for (const auto& [block, file] : blocks_["imgbake"]) {
    if (t_.imgbake) {
      error(*file, block->type_range, "Duplicate imgbake block", "A template has at most one imgbake block.");
      continue;
    }
    check_body(*block->body, *file, "the imgbake block",
               {"image", "version", "labels", "channels", "signing_key", "embed_build_info", "cache", "config"},
               {"config"});
    json::Value v = lower_body(*block->body, *file, ctx_, {});
    v.pos = {block->type_range.start.line, block->type_range.start.column};
    Diagnostics section;
    check_imgbake_section(v, file->name, section);
    d_.merge(section);
    t_.imgbake = v;
  }
}

}  // namespace hcl_template
}  // namespace imgbake
