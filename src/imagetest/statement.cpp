// The in-toto test-result statement of a test run (imagetest.h), which `imgbake test` signs and
// the store keeps as a referrer of the image.
#include <chrono>

#include "imgbake/imagetest.h"

namespace imgbake::imagetest {

nlohmann::json test_result_statement(const SuiteResult& r, const RunFacts& facts) {
  nlohmann::json passed = nlohmann::json::array();
  nlohmann::json failed = nlohmann::json::array();
  nlohmann::json checks = nlohmann::json::array();
  for (const CheckResult& c : r.checks) {
    (c.passed ? passed : failed).push_back(c.name);
    checks.push_back({{"name", c.name},
                      {"kind", c.kind},
                      {"result", c.passed ? "PASSED" : "FAILED"},
                      {"message", c.message},
                      {"duration_s", std::chrono::duration<double>(c.duration).count()}});
  }
  const std::string hex = r.digest.substr(r.digest.find(':') + 1);
  return {{"_type", "https://in-toto.io/Statement/v1"},
          {"subject", nlohmann::json::array({{{"name", r.image}, {"digest", {{"sha256", hex}}}}})},
          {"predicateType", "https://in-toto.io/attestation/test-result/v0.1"},
          {"predicate",
           {{"result", r.passed() ? "PASSED" : "FAILED"},
            {"configuration",
             nlohmann::json::array({{{"name", facts.spec_name}, {"digest", {{"sha256", facts.spec_sha256}}}}})},
            {"passedTests", passed},
            {"warnedTests", nlohmann::json::array()},
            {"failedTests", failed},
            {"imgbake",
             {{"suite", r.suite},
              {"runner", facts.runner},
              {"started", r.started},
              {"duration_s", std::chrono::duration<double>(r.duration).count()},
              {"checks", checks}}}}}};
}

}  // namespace imgbake::imagetest
