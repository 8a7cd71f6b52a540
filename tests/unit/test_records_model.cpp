// Signed registry records (promote, rollback, revoke), the model: their statements and
// signatures, their order, the replay rollback does; and telling registry references from the
// store's. No registry needed (test_records_remote.cpp has the tests against one).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "imgbake/records.h"

namespace {

using namespace imgbake;
using namespace imgbake::registry;

const std::string kImage = "sha256:" + std::string(64, 'a');
const std::string kOther = "sha256:" + std::string(64, 'b');

Record Promotion(const std::string& to, const std::string& from, const std::string& time,
                 const std::string& previous = "") {
  return Record{
      "promote", "reg.test/team/app", "staging", from, to, "tests passed", "ci@runner", time, previous, "", "", ""};
}

CheckedRecord Checked(const Record& r, const std::string& digest, bool verified = true) {
  CheckedRecord c;
  c.record = r;
  c.digest = digest;
  c.subject = r.to_digest;
  c.verified = verified;
  return c;
}

std::vector<provenance::VerifyingKey> KeysOf(const provenance::SigningKey& key) {
  std::vector<provenance::VerifyingKey> keys;
  keys.push_back(provenance::VerifyingKey::from_pem(key.public_pem()));
  return keys;
}

TEST(RegistryRecords, AStatementNamesTheImageAndEveryFactOfTheMove) {
  nlohmann::json s = record_statement(Promotion(kImage, kOther, "2026-11-22T03:04:05.123Z", "sha256:prev"));
  EXPECT_EQ(s["_type"], "https://in-toto.io/Statement/v1");
  EXPECT_EQ(s["predicateType"], kRecordPredicateType);
  ASSERT_EQ(s["subject"].size(), 1u);
  EXPECT_EQ(s["subject"][0]["digest"]["sha256"], std::string(64, 'a'));
  const auto& p = s["predicate"];
  EXPECT_EQ(p["action"], "promote");
  EXPECT_EQ(p["repository"], "reg.test/team/app");
  EXPECT_EQ(p["channel"], "staging");
  EXPECT_EQ(p["from_digest"], kOther);
  EXPECT_EQ(p["to_digest"], kImage);
  EXPECT_EQ(p["reason"], "tests passed");
  EXPECT_EQ(p["who"], "ci@runner");
  EXPECT_EQ(p["time"], "2026-11-22T03:04:05.123Z");
  EXPECT_EQ(p["previous"], "sha256:prev");
  EXPECT_FALSE(p.contains("imported_from"));
}

TEST(RegistryRecords, ASignedRecordVerifiesWithItsKeyOnly) {
  auto key = provenance::SigningKey::generate();
  auto other = provenance::SigningKey::generate();
  Record r = Promotion(kImage, "", "2026-11-22T03:04:05.123Z");
  nlohmann::json env = sign_record(r, key);

  CheckedRecord good = check_record(env, kImage, KeysOf(key));
  EXPECT_TRUE(good.verified) << good.problem;
  EXPECT_EQ(good.keyid, key.keyid());
  EXPECT_EQ(good.record.to_digest, kImage);
  EXPECT_EQ(good.record.reason, "tests passed");

  CheckedRecord foreign = check_record(env, kImage, KeysOf(other));
  EXPECT_FALSE(foreign.verified);
  EXPECT_NE(foreign.problem.find("signature"), std::string::npos) << foreign.problem;
  // What it claims is still readable, to show it flagged.
  EXPECT_EQ(foreign.record.action, "promote");
  EXPECT_EQ(foreign.record.channel, "staging");

  CheckedRecord no_keys = check_record(env, kImage, {});
  EXPECT_FALSE(no_keys.verified);
  EXPECT_NE(no_keys.problem.find("no trusted key"), std::string::npos) << no_keys.problem;
}

TEST(RegistryRecords, AnAlteredPayloadOrAnotherImageIsRefused) {
  auto key = provenance::SigningKey::generate();
  nlohmann::json env = sign_record(Promotion(kImage, "", "2026-11-22T03:04:05.123Z"), key);

  nlohmann::json altered = env;
  nlohmann::json statement = nlohmann::json::parse(provenance::base64_decode(env["payload"].get<std::string>()));
  statement["predicate"]["reason"] = "nobody looked";
  altered["payload"] = provenance::base64_encode(statement.dump());
  CheckedRecord a = check_record(altered, kImage, KeysOf(key));
  EXPECT_FALSE(a.verified);
  EXPECT_NE(a.problem.find("signature"), std::string::npos) << a.problem;

  // A valid record of one image attached (copied) next to another one does not count for it.
  CheckedRecord moved = check_record(env, kOther, KeysOf(key));
  EXPECT_FALSE(moved.verified);
  EXPECT_NE(moved.problem.find("not about " + kOther), std::string::npos) << moved.problem;
}

TEST(RegistryRecords, RecordsSortByTimeAcrossPrecisionsAndThenByTheChain) {
  std::vector<CheckedRecord> recs = {
      Checked(Promotion(kOther, kImage, "2026-11-22T03:04:05.500Z", "sha256:1"), "sha256:2"),
      Checked(Promotion(kImage, "", "2026-11-22T03:04:05Z"), "sha256:1"),  // a local entry: seconds only
      Checked(Promotion(kImage, kOther, "2026-11-22T03:04:05.500Z", "sha256:2"), "sha256:0"),
  };
  sort_records(recs);
  EXPECT_EQ(recs[0].digest, "sha256:1");
  EXPECT_EQ(recs[1].digest, "sha256:2");
  EXPECT_EQ(recs[2].digest, "sha256:0");  // same instant: it names sha256:2 as previous
}

TEST(RegistryRecords, RollbackReplaysOnlyTrustedRecordsOfTheChannel) {
  const std::string d1 = "sha256:" + std::string(64, '1'), d2 = "sha256:" + std::string(64, '2'),
                    d3 = "sha256:" + std::string(64, '3');
  std::vector<CheckedRecord> recs = {
      Checked(Promotion(d1, "", "2026-11-22T03:00:00.000Z"), "sha256:r1"),
      Checked(Promotion(d2, d1, "2026-11-22T03:01:00.000Z"), "sha256:r2"),
      Checked(Promotion(d3, d2, "2026-11-22T03:02:00.000Z"), "sha256:forged", false),
  };
  Record other_channel = Promotion(d3, d2, "2026-11-22T03:03:00.000Z");
  other_channel.channel = "production";
  recs.push_back(Checked(other_channel, "sha256:r3"));
  Record imported = Promotion(d3, d2, "2026-11-22T03:04:00.000Z");
  imported.imported_from = kImportedFromLocalStore;
  recs.push_back(Checked(imported, "sha256:r4"));

  EXPECT_EQ(rollback_target(recs, "reg.test/team/app", "staging"), d1);
  EXPECT_EQ(chain_head(recs, "reg.test/team/app", "staging"), "sha256:r2");

  Record back = Promotion(d1, d2, "2026-11-22T03:05:00.000Z", "sha256:r2");
  back.action = "rollback";
  recs.push_back(Checked(back, "sha256:r5"));
  // After the rollback the channel's records hold d1 only, promoted onto an empty tag.
  try {
    rollback_target(recs, "reg.test/team/app", "staging");
    FAIL() << "a rollback past the first promotion must be refused";
  } catch (const BuildError& e) {
    EXPECT_NE(std::string(e.what()).find("no earlier image"), std::string::npos) << e.what();
  }
  EXPECT_THROW(rollback_target(recs, "reg.test/team/app", "qa"), BuildError);
}

TEST(RegistryRecords, RegistryReferencesAreToldFromStoreReferences) {
  EXPECT_TRUE(names_registry("127.0.0.1:5000/team/app:1"));
  EXPECT_TRUE(names_registry("ghcr.io/team/app@sha256:abc"));
  EXPECT_TRUE(names_registry("localhost/app"));
  EXPECT_TRUE(names_registry("docker://registry.example/app"));
  EXPECT_FALSE(names_registry("web:3"));
  EXPECT_FALSE(names_registry("web@sha256:abc"));
  EXPECT_FALSE(names_registry("my.app:production"));
  EXPECT_FALSE(names_registry("team/app"));
}

}  // namespace
