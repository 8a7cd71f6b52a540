// Differential test: imgbake's HCL against hashicorp/hcl itself (tests/hcl_oracle/oracle.go,
// built from Debian's Go packages) on a corpus of expressions and malformed files: the same
// values, the same accept/reject, the same error positions.
#include <gtest/gtest.h>

#include <iostream>

#include <algorithm>
#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <sstream>

#include "hcl_test_util.h"
#include "imgbake/hcl_dynblock.h"
#include "imgbake/hcl_typeexpr.h"

namespace imgbake::hcl {
namespace {

const char kSeparator[] = "\n====\n";

std::string read(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<std::string> split_cases(const std::string& all) {
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    size_t sep = all.find(kSeparator, start);
    out.push_back(all.substr(start, sep == std::string::npos ? std::string::npos : sep - start));
    if (sep == std::string::npos) return out;
    start = sep + sizeof(kSeparator) - 1;
  }
}

// The oracle's answers, one line per case; `mode` "file" or "json" (else expressions).
std::vector<std::string> oracle(const std::string& cases_file, const std::string& mode) {
  std::string cmd = (mode.empty() ? "" : "MODE=" + mode + " ") + "'" + IMGBAKE_HCL_ORACLE + "' < '" + cases_file + "'";
  std::vector<std::string> lines;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return lines;
  std::string cur;
  std::array<char, 4096> buf{};
  while (fgets(buf.data(), buf.size(), p)) cur += buf.data();
  pclose(p);
  std::stringstream ss(cur);
  for (std::string line; std::getline(ss, line);) lines.push_back(line);
  return lines;
}

std::string first_error(const Diagnostics& d) {
  const Diagnostic& x = d.items()[0];
  return "ERROR " + std::to_string(x.subject.start.line) + ":" + std::to_string(x.subject.start.column) + " " +
         x.summary;
}

// The same variables as the oracle's ctx().
EvalContext oracle_context() {
  EvalContext ctx;
  ctx.functions = standard_functions();
  ctx.variables["var"] = Value::object({
      {"name", Value::string("web")},
      {"count", Value::number(Number(3))},
      {"zones", Value::list({Value::string("a"), Value::string("b")}, Type::string())},
      {"disks", Value::tuple({Value::object({{"size", Value::number(Number(10))}, {"type", Value::string("ssd")}}),
                              Value::object({{"size", Value::number(Number(20))}, {"type", Value::string("hdd")}})})},
      {"tags", Value::map({{"team", Value::string("ops")}, {"env", Value::string("dev")}}, Type::string())},
      {"empty", Value::null(Type::string())},
  });
  return ctx;
}

std::string mine_expression(const std::string& src) {
  Diagnostics d;
  ExprPtr e = parse_expression(src, "test.hcl", d);
  if (d.has_errors()) return first_error(d);
  Value v = evaluate(*e, oracle_context(), d, "test.hcl");
  if (d.has_errors()) return first_error(d);
  return v.is_known() ? v.str() : "(unknown)";
}

std::string mine_file(const std::string& src) {
  Diagnostics d;
  File f = parse_file(src, "test.hcl", d);
  std::string out;
  for (const auto& x : d.items())
    out += std::to_string(x.subject.start.line) + ":" + std::to_string(x.subject.start.column) + "-" +
           std::to_string(x.subject.end.line) + ":" + std::to_string(x.subject.end.column) + " " + x.summary + "; ";
  return out + "attrs=" + std::to_string(f.body.attributes.size()) + " blocks=" + std::to_string(f.body.blocks.size());
}

std::string sorted_diagnostics(const Diagnostics& d);

// HCL's JSON syntax, read with the schemas of the oracle's MODE=json (jsonSchemas there): the
// diagnostics (sorted, each once), then the blocks and every argument's value.
struct JsonSchema {
  std::vector<std::string> attributes;
  BodySchema hcl;
};

const std::map<std::string, JsonSchema>& json_schemas() {
  static const std::map<std::string, JsonSchema> schemas = [] {
    std::map<std::string, JsonSchema> m;
    m[""] = {
        {},
        {{{"variable", {"name"}}, {"source", {"type", "name"}}, {"build", {}}, {"locals", {}}, {"packer", {}}}, {}}};
    m["variable"] = {{"type", "default", "description", "sensitive"}, {{{"validation", {}}}, {"type"}}};
    m["validation"] = {{"condition", "error_message"}, {}};
    m["packer"] = {{"required_version"}, {{{"required_plugins", {}}}, {}}};
    m["build"] = {
        {"name", "description", "sources"},
        {{{"source", {"name"}}, {"provisioner", {"type"}}, {"post-processor", {"type"}}, {"post-processors", {}}}, {}}};
    m["provisioner"] = {{"inline", "only", "except", "max_retries", "environment_vars"}, {}};
    m["post-processors"] = {{}, {{{"post-processor", {"type"}}}, {}}};
    for (auto& [type, s] : m)
      for (auto& b : s.hcl.blocks) {
        auto it = m.find(b.type);
        b.body = it == m.end() ? nullptr : &it->second.hcl;
      }
    return m;
  }();
  return schemas;
}

void json_body(const Body& body, const std::string& type, Diagnostics& d, std::vector<std::string>& out) {
  auto schema = json_schemas().find(type);
  std::vector<const Attribute*> attrs;
  for (const auto& a : body.attributes) {
    if (schema != json_schemas().end() && std::find(schema->second.attributes.begin(), schema->second.attributes.end(),
                                                    a.name) == schema->second.attributes.end()) {
      d.error("test.pkr.json", a.name_range, "Extraneous JSON object property");
      continue;
    }
    attrs.push_back(&a);
  }
  std::sort(attrs.begin(), attrs.end(), [](const Attribute* a, const Attribute* b) { return a->name < b->name; });
  for (const Attribute* a : attrs) {
    Diagnostics local;
    if (a->name == "type" && type == "variable") {
      auto t = type_expression(*a->expr, local, "test.pkr.json");
      std::string name = t ? t->str() : "";
      for (size_t at; (at = name.find(", ")) != std::string::npos;) name.erase(at + 1, 1);  // as Go's TypeString
      out.push_back(t ? "type=" + name : "type=" + first_error(local));
      continue;
    }
    Value v = evaluate(*a->expr, oracle_context(), local, "test.pkr.json");
    out.push_back(a->name + "=" + (local.has_errors() ? first_error(local) : v.is_known() ? v.str() : "(unknown)"));
  }
  for (const auto& b : body.blocks) {
    std::string labels;
    for (const auto& l : b.labels) labels += (labels.empty() ? "" : ",") + l;
    out.push_back(b.type + "[" + labels + "]{");
    json_body(*b.body, b.type, d, out);
    out.emplace_back("}");
  }
}

std::string mine_json(const std::string& src) {
  Diagnostics d;
  File f = parse_json_file(src, "test.pkr.json", &json_schemas().at("").hcl, d);
  std::vector<std::string> out;
  json_body(f.body, "", d, out);
  std::string text = sorted_diagnostics(d);
  for (size_t i = 0; i < out.size(); ++i) text += (i ? " " : "") + out[i];
  return text;
}

// hcl's dynblock extension, with the schema of the oracle's MODE=dynblock (dynSchema there).
void dyn_body(const Body& body, const EvalContext& ctx, Diagnostics& d, std::vector<std::string>& out) {
  static const std::vector<std::string> attributes = {"a", "b", "name", "size", "value"};
  static const std::map<std::string, size_t> blocks = {{"disk", 0}, {"tag", 1}, {"rule", 2}};
  std::vector<const Attribute*> attrs;
  for (const auto& a : body.attributes) {
    if (std::find(attributes.begin(), attributes.end(), a.name) == attributes.end())
      d.error("test.hcl", a.name_range, "Unsupported argument");
    else
      attrs.push_back(&a);
  }
  std::sort(attrs.begin(), attrs.end(), [](const Attribute* a, const Attribute* b) { return a->name < b->name; });
  for (const Attribute* a : attrs) {
    Diagnostics local;
    Value v = evaluate(*a->expr, ctx, local, "test.hcl");
    out.push_back(a->name + "=" + (local.has_errors() ? first_error(local) : v.is_known() ? v.str() : "(unknown)"));
  }
  auto labels_of = [](const std::string& type) -> std::optional<size_t> {
    auto it = blocks.find(type);
    return it == blocks.end() ? std::nullopt : std::optional<size_t>(it->second);
  };
  // Blocks as written: their labels, as hclsyntax's Content checks them.
  static const std::map<std::string, std::vector<std::string>> label_names = {{"tag", {"name"}},
                                                                              {"rule", {"type", "name"}}};
  for (const auto& b : body.blocks) {
    auto it = blocks.find(b.type);
    if (it == blocks.end() || b.labels.size() == it->second) continue;
    if (b.labels.size() > it->second)
      d.error("test.hcl", b.label_ranges[it->second], "Extraneous label for " + b.type);
    else
      d.error("test.hcl", b.open_brace_range, "Missing " + label_names.at(b.type)[b.labels.size()] + " for " + b.type);
  }
  for (const auto& b : expand_blocks(body, ctx, labels_of, d, "test.hcl")) {
    if (!labels_of(b.type)) {
      d.error("test.hcl", b.type_range, "Unsupported block type");
      continue;
    }
    if (b.labels.size() != *labels_of(b.type)) continue;
    std::string labels;
    for (const auto& l : b.labels) labels += (labels.empty() ? "" : ",") + l;
    out.push_back(b.type + "[" + labels + "]{");
    dyn_body(*b.body, *b.ctx, d, out);
    out.emplace_back("}");
  }
}

std::string sorted_diagnostics(const Diagnostics& d) {
  std::set<std::string> lines;
  for (const auto& x : d.items())
    lines.insert(std::to_string(x.subject.start.line) + ":" + std::to_string(x.subject.start.column) + "-" +
                 std::to_string(x.subject.end.line) + ":" + std::to_string(x.subject.end.column) + " " + x.summary +
                 "; ");
  std::string text;
  for (const auto& l : lines) text += l;
  return text;
}

std::string mine_dynblock(const std::string& src) {
  Diagnostics d;
  File f = parse_file(src, "test.hcl", d);
  std::vector<std::string> out;
  EvalContext ctx = oracle_context();
  if (!d.has_errors()) dyn_body(f.body, ctx, d, out);
  std::string text = sorted_diagnostics(d);
  for (size_t i = 0; i < out.size(); ++i) text += (i ? " " : "") + out[i];
  return text;
}

std::string mine(const std::string& src, const std::string& mode) {
  if (mode == "dynblock") return mine_dynblock(src);
  return mode == "file" ? mine_file(src) : mode == "json" ? mine_json(src) : mine_expression(src);
}

void compare(const std::string& name, const std::string& mode) {
  ASSERT_TRUE(std::filesystem::exists(IMGBAKE_HCL_ORACLE))
      << "the HCL reference was not built (" << IMGBAKE_HCL_ORACLE
      << "): install golang-go and golang-github-hashicorp-hcl-v2-dev (tools/setup.sh), then rebuild";
  std::string path = std::string(IMGBAKE_HCL_ORACLE_CASES) + "/" + name;
  auto cases = split_cases(read(path));
  auto want = oracle(path, mode);
  ASSERT_EQ(want.size(), cases.size()) << "the oracle answered " << want.size() << " of " << cases.size() << " cases";
  for (size_t i = 0; i < cases.size(); ++i) {
    std::string got = mine(cases[i], mode);
    EXPECT_EQ(got, want[i]) << name << " case " << i + 1 << ":\n" << cases[i];
  }
}

// Inputs made by mutating the corpus (a fixed seed: the same inputs on every run): a token
// inserted, a few bytes deleted, a piece repeated. Malformed inputs must be rejected (and
// well-formed ones accepted) exactly when hashicorp/hcl rejects (accepts) them.
std::vector<std::string> mutants(const std::vector<std::string>& corpus, unsigned seed, size_t n) {
  static const char* const pieces[] = {"${",      "%{",       "}",       "{",  "[",   "]",  "(",   ")",   "\"",
                                       "<<EOT\n", "<<-EOT\n", "\nEOT\n", "~",  "...", ".*", "[*]", "for", "if",
                                       "in",      ":",        "=>",      "?",  ",",   "\n", "\\",  "1.e", "endif",
                                       "endfor",  "else",     "#",       "//", "/*",  "*/", "é"};
  std::mt19937 rng(seed);
  auto pick = [&](size_t bound) { return static_cast<size_t>(rng() % bound); };
  std::vector<std::string> out;
  for (size_t i = 0; i < n; ++i) {
    std::string s = corpus[pick(corpus.size())];
    for (size_t edits = 1 + pick(4); edits > 0; --edits) {
      size_t pos = pick(s.size() + 1);
      switch (pick(3)) {
        case 0: s.insert(pos, pieces[pick(std::size(pieces))]); break;
        case 1: s.erase(pos, 1 + pick(3)); break;
        default: s.insert(pos, s.substr(pos, 1 + pick(5))); break;
      }
    }
    size_t sep = 0;
    while ((sep = s.find(kSeparator, sep)) != std::string::npos) s.erase(sep, 1);
    out.push_back(s);
  }
  return out;
}

void compare_generated(const std::string& name, const std::string& mode) {
  ASSERT_TRUE(std::filesystem::exists(IMGBAKE_HCL_ORACLE)) << "the HCL reference was not built (see above)";
  auto cases = mutants(split_cases(read(std::string(IMGBAKE_HCL_ORACLE_CASES) + "/" + name)), 18, 1500);
  std::string path = ::testing::TempDir() + "hcl-generated-" + name;
  {
    std::ofstream out(path, std::ios::binary);
    for (size_t i = 0; i < cases.size(); ++i) out << (i ? kSeparator : "") << cases[i];
  }
  auto want = oracle(path, mode);
  std::filesystem::remove(path);
  ASSERT_EQ(want.size(), cases.size());
  size_t identical = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    std::string got = mine(cases[i], mode);
    auto rejected = [&](const std::string& answer) {
      if (mode == "json" || mode == "dynblock")
        return answer.find(" ERROR ") != std::string::npos || answer.find("; ") != std::string::npos;
      return mode == "file" ? answer.rfind("attrs=", 0) != 0 : answer.rfind("ERROR", 0) == 0;
    };
    EXPECT_EQ(rejected(got), rejected(want[i])) << "generated case " << i + 1 << ":\n"
                                                << cases[i] << "\nimgbake: " << got << "\nhcl: " << want[i];
    identical += got == want[i];
  }
  // Most answers are identical to the letter; the rest differ in where recovery from a garbled
  // input reports its first error.
  std::cout << name << ": " << identical << " of " << cases.size() << " generated cases answered identically\n";
}

TEST(HclDifferential, ExpressionsAgreeWithHashicorpHcl) { compare("expressions.txt", ""); }

TEST(HclDifferential, GeneratedExpressionsAcceptedAndRejectedAsByHashicorpHcl) {
  compare_generated("expressions.txt", "");
}

TEST(HclDifferential, GeneratedFilesAcceptedAndRejectedAsByHashicorpHcl) { compare_generated("files.txt", "file"); }

TEST(HclDifferential, FileDiagnosticsAgreeWithHashicorpHcl) { compare("files.txt", "file"); }

TEST(HclDifferential, JsonSyntaxAgreesWithHashicorpHcl) { compare("json.txt", "json"); }

TEST(HclDifferential, GeneratedJsonAcceptedAndRejectedAsByHashicorpHcl) { compare_generated("json.txt", "json"); }

TEST(HclDifferential, DynamicBlocksAgreeWithHashicorpHcl) { compare("dynblock.txt", "dynblock"); }

TEST(HclDifferential, GeneratedDynamicBlocksAcceptedAndRejectedAsByHashicorpHcl) {
  compare_generated("dynblock.txt", "dynblock");
}

}  // namespace
}  // namespace imgbake::hcl
