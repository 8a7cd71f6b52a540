// Test evidence and channel policies: an image's signed test results (in-toto test-result
// statements kept as referrers of its manifest, one row each in test_runs) and the policies that
// make promote into a channel demand them (docs/testing-images.md, "Evidence and gates").
#include <set>
#include <string>
#include <vector>

#include "catalog.h"
#include "imgbake/provenance.h"
#include "imgbake/util.h"

namespace imgbake::store {

using detail::append_audit;
using detail::Stmt;
using detail::Transaction;
using detail::valid_name_part;

namespace {

std::string join_names(const std::vector<std::string>& names) { return util::join(names, ", "); }

}  // namespace

TestRun Store::record_test(const ImageRecord& img, const TestRunRequest& req) {
  if (req.suite.empty()) throw StoreError("a test result needs a suite name");
  TestRun run;
  run.suite = req.suite;
  run.passed = req.passed;
  run.failed = req.failed;
  run.time = util::format_rfc3339(std::chrono::system_clock::now());
  // The blobs first (content-addressed, harmless if the transaction fails), then the row and the
  // audit entry in one transaction.
  Descriptor envelope = blobs_.put_bytes(req.envelope.dump(), oci::kDsseMediaType);
  if (!req.referrer_manifest_bytes.empty()) {
    // A pulled result: its manifest as it was signed for, if it is about this image and envelope.
    nlohmann::json m = nlohmann::json::parse(req.referrer_manifest_bytes, nullptr, false);
    const bool fits = m.is_object() && m.contains("subject") && m["subject"].is_object() &&
                      m["subject"].value("digest", "") == img.manifest_digest && m.contains("layers") &&
                      m["layers"].is_array() && m["layers"].size() == 1 && m["layers"][0].is_object() &&
                      m["layers"][0].value("digest", "") == envelope.digest;
    if (!fits)
      throw StoreError("the test result referrer is not about " + img.ref() + " or does not hold its envelope");
    if (m.contains("annotations") && m["annotations"].is_object())
      run.time = m["annotations"].value("org.opencontainers.image.created", run.time);
    Descriptor referrer = blobs_.put_bytes(req.referrer_manifest_bytes, oci::kManifestMediaType);
    run.referrer_digest = referrer.digest;
    run.referrer_size = referrer.size;
  }
  Descriptor empty = blobs_.put_bytes("{}", oci::kEmptyMediaType);
  nlohmann::ordered_json empty_json = empty.to_json();
  empty_json["data"] = "e30=";
  const Descriptor subject{oci::kManifestMediaType, img.manifest_digest, img.manifest_size, {}};
  nlohmann::ordered_json ref_manifest = {{"schemaVersion", 2},
                                         {"mediaType", oci::kManifestMediaType},
                                         {"artifactType", kTestResultArtifactType},
                                         {"config", empty_json},
                                         {"layers", nlohmann::ordered_json::array({envelope.to_json()})},
                                         {"subject", subject.to_json()},
                                         {"annotations",
                                          {{"org.opencontainers.image.created", run.time},
                                           {"in-toto.io/predicate-type", kTestResultPredicateType},
                                           {"io.imgbake.test.suite", req.suite},
                                           {"io.imgbake.test.result", req.passed ? "PASSED" : "FAILED"}}}};
  if (run.referrer_digest.empty()) {
    Descriptor referrer = blobs_.put_bytes(ref_manifest.dump(), oci::kManifestMediaType);
    run.referrer_digest = referrer.digest;
    run.referrer_size = referrer.size;
  }
  run.envelope_digest = envelope.digest;
  sqlite3* db = db_->db;
  {
    Transaction tx(db);
    // The image may have been removed (or its version taken by another image) since the caller
    // resolved it.
    const ImageRecord now = resolve(img.ref());
    if (now.manifest_digest != img.manifest_digest)
      throw StoreError(img.ref() + " is now " + now.manifest_digest + ", not the image tested (" + img.manifest_digest +
                       ")");
    for (const TestRun& t : test_runs(now))
      if (t.envelope_digest == run.envelope_digest) return t;  // recorded before (a second pull)
    Stmt ins(db,
             "INSERT INTO test_runs(image_id, suite, passed, failed, time, envelope_digest, referrer_digest, "
             "referrer_size) VALUES(?,?,?,?,?,?,?,?)");
    ins.bind(1, now.id).bind(2, run.suite).bind(3, static_cast<int64_t>(run.passed ? 1 : 0));
    ins.bind(4, nlohmann::json(run.failed).dump()).bind(5, run.time).bind(6, run.envelope_digest);
    ins.bind(7, run.referrer_digest).bind(8, static_cast<int64_t>(run.referrer_size));
    ins.run();
    run.id = sqlite3_last_insert_rowid(db);
    nlohmann::json detail = {{"manifest", now.manifest_digest},
                             {"suite", run.suite},
                             {"result", run.passed ? "PASSED" : "FAILED"},
                             {"failed", run.failed},
                             {"envelope", run.envelope_digest},
                             {"referrer", run.referrer_digest}};
    append_audit(tx, AuditEntry{0, "", who(), "test", now.name, "", "", now.ref(), "", detail.dump(), "", "", ""});
    tx.commit();
  }
  sync_index();
  return run;
}

std::vector<TestRun> Store::test_runs(const ImageRecord& img) const {
  std::vector<TestRun> out;
  Stmt s(db_->db,
         "SELECT id, suite, passed, failed, time, envelope_digest, referrer_digest, referrer_size FROM test_runs "
         "WHERE image_id = ? ORDER BY id");
  s.bind(1, img.id);
  while (s.step()) {
    TestRun t;
    t.id = s.integer(0);
    t.suite = s.text(1);
    t.passed = s.integer(2) != 0;
    nlohmann::json failed = nlohmann::json::parse(s.text(3), nullptr, false);
    if (failed.is_array())
      for (const auto& f : failed)
        if (f.is_string()) t.failed.push_back(f.get<std::string>());
    t.time = s.text(4);
    t.envelope_digest = s.text(5);
    t.referrer_digest = s.text(6);
    t.referrer_size = static_cast<uint64_t>(s.integer(7));
    out.push_back(std::move(t));
  }
  return out;
}

std::string Store::test_run_problem(const ImageRecord& img, const TestRun& run,
                                    const std::vector<provenance::VerifyingKey>& keys) const {
  const std::string what = "the test result of suite '" + run.suite + "' (" + run.time + ")";
  if (std::string p = blobs_.check(run.envelope_digest); !p.empty()) return what + ": " + p;
  nlohmann::json env = nlohmann::json::parse(blobs_.read(run.envelope_digest), nullptr, false);
  if (!env.is_object()) return what + " is not a DSSE envelope";
  provenance::EnvelopeCheck c = provenance::verify_envelope(env, keys);
  if (!c.ok) return what + ": " + c.error;
  if (c.payload_type != provenance::kInTotoPayloadType)
    return what + ": the envelope holds " + c.payload_type + ", not an in-toto statement";
  nlohmann::json st = nlohmann::json::parse(c.payload, nullptr, false);
  if (!st.is_object() || st.value("predicateType", "") != kTestResultPredicateType || !st.contains("predicate") ||
      !st["predicate"].is_object())
    return what + ": the signed statement is not an in-toto test result";
  bool about_this_image = false;
  const std::string hex = img.manifest_digest.substr(img.manifest_digest.find(':') + 1);
  if (st.contains("subject") && st["subject"].is_array())
    for (const auto& s : st["subject"])
      if (s.is_object() && s.contains("digest") && s["digest"].is_object() && s["digest"].value("sha256", "") == hex)
        about_this_image = true;
  if (!about_this_image)
    return what + ": the signed statement is about another image (its subject is not " + img.manifest_digest + ")";
  const nlohmann::json& p = st["predicate"];
  const std::string result = p.value("result", "");
  std::string suite;
  if (p.contains("imgbake") && p["imgbake"].is_object()) suite = p["imgbake"].value("suite", "");
  if (suite != run.suite)
    return what + ": the signed statement is about suite '" + suite + "', not '" + run.suite + "'";
  if ((result == "PASSED") != run.passed)
    return what + ": the catalog says it " + (run.passed ? "passed" : "failed") + " but the signed statement says " +
           result;
  return "";
}

std::string Store::gate_problem(const ImageRecord& img, const std::string& channel,
                                const std::vector<provenance::VerifyingKey>& keys) const {
  const std::vector<std::string> suites = required_tests(img.name, channel);
  if (suites.empty()) return "";
  const std::vector<TestRun> runs = test_runs(img);
  std::vector<std::string> why;
  for (const std::string& suite : suites) {
    // The newest run of the suite decides: a failure after a pass means the image fails now.
    const TestRun* last = nullptr;
    for (const TestRun& r : runs)
      if (r.suite == suite) last = &r;
    if (!last) {
      why.push_back("it has no result of test suite '" + suite + "' (imgbake test " + img.ref() + ")");
      continue;
    }
    if (std::string p = test_run_problem(img, *last, keys); !p.empty()) {
      why.push_back(p);
      continue;
    }
    if (!last->passed)
      why.push_back("test suite '" + suite + "' failed on " + last->time + " (failed: " + join_names(last->failed) +
                    ")");
  }
  if (why.empty()) return "";
  return "channel '" + channel + "' requires passing test suite(s) " + join_names(suites) + ": " +
         util::join(why, "; ");
}

void Store::set_policy(const std::string& name, const std::string& channel,
                       const std::vector<std::string>& require_tests, const std::string& reason) {
  if (!valid_name_part(channel)) throw StoreError("invalid channel name '" + channel + "'");
  if (!name.empty() && !valid_name_part(name)) throw StoreError("invalid image name '" + name + "'");
  for (const auto& s : require_tests)
    if (s.empty()) throw StoreError("a required test suite needs a name");
  sqlite3* db = db_->db;
  Transaction tx(db);
  std::vector<std::string> before;
  {
    Stmt q(db, "SELECT suite FROM channel_policies WHERE name = ? AND channel = ? ORDER BY suite");
    q.bind(1, name).bind(2, channel);
    while (q.step()) before.push_back(q.text(0));
  }
  Stmt del(db, "DELETE FROM channel_policies WHERE name = ? AND channel = ?");
  del.bind(1, name).bind(2, channel);
  del.run();
  const std::set<std::string> suites(require_tests.begin(), require_tests.end());
  for (const auto& s : suites) {
    Stmt ins(db, "INSERT INTO channel_policies(name, channel, suite) VALUES(?,?,?)");
    ins.bind(1, name).bind(2, channel).bind(3, s);
    ins.run();
  }
  nlohmann::json detail = {{"require_tests", suites}, {"before", before}};
  append_audit(tx, AuditEntry{0, "", who(), "policy", name, channel, "", "", reason, detail.dump(), "", "", ""});
  tx.commit();
}

std::vector<ChannelPolicy> Store::policies() const {
  std::vector<ChannelPolicy> out;
  Stmt s(db_->db, "SELECT name, channel, suite FROM channel_policies ORDER BY name, channel, suite");
  while (s.step()) {
    if (out.empty() || out.back().name != s.text(0) || out.back().channel != s.text(1))
      out.push_back({s.text(0), s.text(1), {}});
    out.back().require_tests.push_back(s.text(2));
  }
  return out;
}

std::vector<std::string> Store::required_tests(const std::string& name, const std::string& channel) const {
  std::vector<std::string> out;
  Stmt s(db_->db,
         "SELECT DISTINCT suite FROM channel_policies WHERE channel = ? AND (name = ? OR name = '') ORDER BY suite");
  s.bind(1, channel).bind(2, name);
  while (s.step()) out.push_back(s.text(0));
  return out;
}

}  // namespace imgbake::store
