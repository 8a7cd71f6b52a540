// Differential test: imgbake's HCL against hashicorp/hcl itself (tests/hcl_oracle/oracle.go,
// built from Debian's Go packages) on a corpus of expressions and malformed files: the same
// values, the same accept/reject, the same error positions.
#include <gtest/gtest.h>

#include <iostream>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
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

void compare_generated(const std::string& name, bool file_mode) {
  ASSERT_TRUE(std::filesystem::exists(IMGBAKE_HCL_ORACLE)) << "the HCL reference was not built (see above)";
  auto cases = mutants(split_cases(read(std::string(IMGBAKE_HCL_ORACLE_CASES) + "/" + name)), 18, 1500);
  std::string path = ::testing::TempDir() + "hcl-generated-" + name;
  {
    std::ofstream out(path, std::ios::binary);
    for (size_t i = 0; i < cases.size(); ++i) out << (i ? kSeparator : "") << cases[i];
  }
  auto want = oracle(path, file_mode);
  std::filesystem::remove(path);
  ASSERT_EQ(want.size(), cases.size());
  size_t identical = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    std::string got = file_mode ? mine_file(cases[i]) : mine_expression(cases[i]);
    auto rejected = [&](const std::string& answer) {
      return file_mode ? answer.rfind("attrs=", 0) != 0 : answer.rfind("ERROR", 0) == 0;
    };
    EXPECT_EQ(rejected(got), rejected(want[i])) << "generated case " << i + 1 << ":\n"
                                                << cases[i] << "\nimgbake: " << got << "\nhcl: " << want[i];
    identical += got == want[i];
  }
  // Most answers are identical to the letter; the rest differ in where recovery from a garbled
  // input reports its first error.
  std::cout << name << ": " << identical << " of " << cases.size() << " generated cases answered identically\n";
}

TEST(HclDifferential, ExpressionsAgreeWithHashicorpHcl) { compare("expressions.txt", false); }

TEST(HclDifferential, GeneratedExpressionsAcceptedAndRejectedAsByHashicorpHcl) {
  compare_generated("expressions.txt", false);
}

TEST(HclDifferential, GeneratedFilesAcceptedAndRejectedAsByHashicorpHcl) { compare_generated("files.txt", true); }

TEST(HclDifferential, FileDiagnosticsAgreeWithHashicorpHcl) { compare("files.txt", true); }

}  // namespace
}  // namespace imgbake::hcl
