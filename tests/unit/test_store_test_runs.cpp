// Test evidence and channel policies (src/store/test_runs.cpp), through the Store API: a signed
// test result recorded as a referrer, the gate promote applies, and what check says about them.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "imgbake/provenance.h"
#include "imgbake/store.h"
#include "store_fixture.h"

using imgbake::provenance::SigningKey;
using imgbake::provenance::VerifyingKey;
using imgbake::store::ImageRecord;
using imgbake::store::Store;
using imgbake::store::StoreError;
using imgbake::store::TestRunRequest;
using store_fixture::StoreTest;

namespace {

// A signed test-result statement about `img`, as `imgbake test` makes it.
TestRunRequest result(const ImageRecord& img, const SigningKey& key, const std::string& suite, bool passed,
                      const std::string& statement_result = "") {
  nlohmann::json st = {{"_type", "https://in-toto.io/Statement/v1"},
                       {"subject", {{{"name", img.ref()}, {"digest", {{"sha256", img.manifest_digest.substr(7)}}}}}},
                       {"predicateType", imgbake::store::kTestResultPredicateType},
                       {"predicate",
                        {{"result", statement_result.empty() ? (passed ? "PASSED" : "FAILED") : statement_result},
                         {"passedTests", nlohmann::json::array()},
                         {"failedTests", passed ? nlohmann::json::array() : nlohmann::json::array({"motd"})},
                         {"imgbake", {{"suite", suite}}}}}};
  TestRunRequest r;
  r.suite = suite;
  r.passed = passed;
  if (!passed) r.failed = {"motd"};
  r.envelope = imgbake::provenance::sign_envelope(key, imgbake::provenance::kInTotoPayloadType, st.dump());
  return r;
}

std::vector<VerifyingKey> keys_of(const SigningKey& key) {
  std::vector<VerifyingKey> keys;
  keys.push_back(VerifyingKey::from_pem(key.public_pem()));
  return keys;
}

std::string refusal(Store& st, const std::string& ref, const std::string& channel,
                    const std::vector<VerifyingKey>& keys) {
  try {
    st.promote(ref, channel, "", true, false, &keys);
  } catch (const StoreError& e) {
    return e.what();
  }
  return "";
}

TEST_F(StoreTest, AGatedChannelTakesOnlyAnImageWhoseLatestResultOfEachSuitePassed) {
  Store st(dir_ / "store");
  const ImageRecord img = st.commit(request("one"));
  const SigningKey key = SigningKey::generate();
  const auto keys = keys_of(key);
  st.set_policy("", "prod", {"smoke", "security"}, "gate");
  EXPECT_EQ(st.required_tests("web", "prod"), (std::vector<std::string>{"security", "smoke"}));
  EXPECT_TRUE(st.required_tests("web", "staging").empty());

  EXPECT_NE(refusal(st, "web:1", "prod", keys).find("it has no result of test suite 'security'"), std::string::npos);
  st.record_test(img, result(img, key, "smoke", true));
  st.record_test(img, result(img, key, "security", false));
  std::string why = refusal(st, "web:1", "prod", keys);
  EXPECT_NE(why.find("test suite 'security' failed on"), std::string::npos) << why;
  EXPECT_NE(why.find("(failed: motd)"), std::string::npos) << why;
  EXPECT_EQ(why.find("'smoke'"), std::string::npos) << "smoke passed: " << why;
  // The newest run decides.
  st.record_test(img, result(img, key, "security", true));
  EXPECT_EQ(refusal(st, "web:1", "prod", keys), "");
  EXPECT_EQ(st.resolve("web:prod").ref(), "web:1");
  EXPECT_EQ(st.test_runs(img).size(), 3u);
  // Without keys nothing verifies: the gate stays shut.
  st.commit(request("two"));
  EXPECT_NE(refusal(st, "web:2", "prod", {}).find("no result"), std::string::npos);
  // The results are signed by a key the store's trust anchors do not hold: store check says so.
  const auto rep = st.check(nullptr);
  EXPECT_TRUE(std::any_of(rep.problems.begin(), rep.problems.end(), [](const std::string& p) {
    return p.find("web:1: the test result of suite 'smoke'") != std::string::npos;
  })) << testing::PrintToString(rep.problems);
}

TEST_F(StoreTest, EvidenceMustBeTrustedAboutThisImageAndAgreeWithTheCatalog) {
  Store st(dir_ / "store");
  const ImageRecord one = st.commit(request("one"));
  const ImageRecord two = st.commit(request("two"));
  const SigningKey key = SigningKey::generate();
  const SigningKey intruder = SigningKey::generate();
  const auto keys = keys_of(key);
  st.set_policy("web", "prod", {"smoke"}, "");
  // Signed by a key that is not trusted.
  auto run = st.record_test(two, result(two, intruder, "smoke", true));
  EXPECT_NE(st.test_run_problem(two, run, keys), "");
  // A statement about web:1 recorded for web:2.
  run = st.record_test(two, result(one, key, "smoke", true));
  EXPECT_NE(st.test_run_problem(two, run, keys).find("about another image"), std::string::npos);
  // The row says it passed; the signed statement says FAILED.
  run = st.record_test(two, result(two, key, "smoke", true, "FAILED"));
  EXPECT_NE(st.test_run_problem(two, run, keys).find("the signed statement says FAILED"), std::string::npos);
  EXPECT_NE(refusal(st, "web:2", "prod", keys).find("the signed statement says FAILED"), std::string::npos);
  // A commit whose template names the gated channel keeps the image out of it.
  auto req = request("three");
  req.channels = {"prod", "dev"};
  const ImageRecord three = st.commit(req);
  EXPECT_EQ(three.held_channels, (std::vector<std::string>{"prod"}));
  EXPECT_EQ(st.resolve("web:dev").ref(), "web:3");
  EXPECT_THROW(st.resolve("web:prod"), StoreError);
}

TEST_F(StoreTest, PoliciesAreAuditedAndClearedByAnEmptySet) {
  Store st(dir_ / "store");
  st.commit(request("one"));
  st.set_policy("web", "prod", {"smoke"}, "first");
  st.set_policy("", "prod", {"security"}, "");
  ASSERT_EQ(st.policies().size(), 2u);
  EXPECT_EQ(st.required_tests("web", "prod"), (std::vector<std::string>{"security", "smoke"}));
  EXPECT_EQ(st.required_tests("api", "prod"), (std::vector<std::string>{"security"}));
  st.set_policy("web", "prod", {}, "lifted");
  EXPECT_EQ(st.required_tests("web", "prod"), (std::vector<std::string>{"security"}));
  EXPECT_THROW(st.set_policy("", "bad channel", {"x"}, ""), StoreError);
  auto h = st.history("web");
  EXPECT_EQ(std::count_if(h.begin(), h.end(), [](const auto& e) { return e.action == "policy"; }), 2);
}

}  // namespace
