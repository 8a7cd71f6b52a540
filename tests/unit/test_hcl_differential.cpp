// Differential test: imgbake's HCL against hashicorp/hcl itself (tests/hcl_oracle/oracle.go,
// built from Debian's Go packages) on a corpus of expressions and malformed files: the same
// values, the same accept/reject, the same error positions.
#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "hcl_test_util.h"

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

// The oracle's answers, one line per case.
std::vector<std::string> oracle(const std::string& cases_file, bool file_mode) {
  std::string cmd = std::string(file_mode ? "MODE=file " : "") + "'" + IMGBAKE_HCL_ORACLE + "' < '" + cases_file + "'";
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

void compare(const std::string& name, bool file_mode) {
  ASSERT_TRUE(std::filesystem::exists(IMGBAKE_HCL_ORACLE))
      << "the HCL reference was not built (" << IMGBAKE_HCL_ORACLE
      << "): install golang-go and golang-github-hashicorp-hcl-v2-dev (tools/setup.sh), then rebuild";
  std::string path = std::string(IMGBAKE_HCL_ORACLE_CASES) + "/" + name;
  auto cases = split_cases(read(path));
  auto want = oracle(path, file_mode);
  ASSERT_EQ(want.size(), cases.size()) << "the oracle answered " << want.size() << " of " << cases.size() << " cases";
  for (size_t i = 0; i < cases.size(); ++i) {
    std::string got = file_mode ? mine_file(cases[i]) : mine_expression(cases[i]);
    EXPECT_EQ(got, want[i]) << name << " case " << i + 1 << ":\n" << cases[i];
  }
}

TEST(HclDifferential, ExpressionsAgreeWithHashicorpHcl) { compare("expressions.txt", false); }

TEST(HclDifferential, FileDiagnosticsAgreeWithHashicorpHcl) { compare("files.txt", true); }

}  // namespace
}  // namespace imgbake::hcl
