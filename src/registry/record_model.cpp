// Signed records, the model (no network): building, signing, checking and ordering promotion,
// rollback and revocation records, and replaying a channel's chain (rollback target, head).
// remote_channels.cpp pushes and reads them on a registry.
#include "imgbake/records.h"

#include <algorithm>
#include <chrono>
#include <ctime>
#include <set>

#include "imgbake/error.h"
#include "imgbake/util.h"
#include "record_model.h"

namespace imgbake::registry {

namespace detail {

const std::set<std::string>& record_actions() {
  static const std::set<std::string> actions = {"promote", "rollback", "revoke"};
  return actions;
}

std::string json_string(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : "";
}

provenance::EnvelopeCheck check_signature(const nlohmann::json& envelope,
                                          const std::vector<provenance::VerifyingKey>& keys) {
  provenance::EnvelopeCheck check = provenance::verify_envelope(envelope, keys);
  if (check.failure == provenance::EnvelopeFailure::kNoTrustedKey)
    check.error += " (imgbake keygen, or a .pub in ~/.config/imgbake/trusted/ or /etc/imgbake/trusted/)";
  return check;
}

}  // namespace detail

using detail::check_signature;
using detail::json_string;
using detail::record_actions;

namespace {

constexpr const char* kStatementType = "https://in-toto.io/Statement/v1";

// Milliseconds since the epoch of an RFC 3339 UTC time ("…T03:04:05Z" or "…T03:04:05.123Z");
// 0 when it does not parse (such a record sorts first).
int64_t time_ms(const std::string& t) {
  std::tm tm = {};
  const char* rest = strptime(t.c_str(), "%Y-%m-%dT%H:%M:%S", &tm);
  if (!rest) return 0;
  int64_t ms = static_cast<int64_t>(timegm(&tm)) * 1000;
  if (*rest == '.') {
    int64_t scale = 100;
    for (++rest; *rest >= '0' && *rest <= '9'; ++rest, scale /= 10) ms += (*rest - '0') * scale;
  }
  return ms;
}

}  // namespace

std::string now_rfc3339_ms() {
  auto now = std::chrono::system_clock::now();
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
  std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm = {};
  gmtime_r(&secs, &tm);
  char buf[40];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  char out[48];
  std::snprintf(out, sizeof out, "%s.%03dZ", buf, static_cast<int>(ms % 1000));
  return out;
}

nlohmann::json record_statement(const Record& r) {
  nlohmann::json predicate = {
      {"action", r.action},       {"repository", r.repository}, {"channel", r.channel}, {"from_digest", r.from_digest},
      {"to_digest", r.to_digest}, {"reason", r.reason},         {"who", r.who},         {"time", r.time},
      {"previous", r.previous}};
  if (!r.imported_from.empty()) {
    predicate["imported_from"] = r.imported_from;
    predicate["local_name"] = r.local_name;
    predicate["local_hash"] = r.local_hash;
  }
  std::string hex = r.to_digest.starts_with("sha256:") ? r.to_digest.substr(7) : r.to_digest;
  return {{"_type", kStatementType},
          {"subject", nlohmann::json::array({{{"name", r.repository}, {"digest", {{"sha256", hex}}}}})},
          {"predicateType", kRecordPredicateType},
          {"predicate", predicate}};
}

nlohmann::json sign_record(const Record& record, const provenance::SigningKey& key) {
  return provenance::sign_envelope(key, provenance::kInTotoPayloadType, record_statement(record).dump());
}

CheckedRecord check_record(const nlohmann::json& envelope, const std::string& subject,
                           const std::vector<provenance::VerifyingKey>& keys) {
  CheckedRecord out;
  out.subject = subject;
  std::vector<std::string> problems;
  provenance::EnvelopeCheck sig = check_signature(envelope, keys);
  if (!sig.ok) problems.push_back("signature: " + sig.error);
  out.keyid = sig.ok ? sig.keyid : "";
  std::string payload = sig.payload;
  if (payload.empty()) {
    try {
      payload = provenance::base64_decode(json_string(envelope, "payload"));
    } catch (const std::exception&) {
      payload.clear();
    }
  }
  nlohmann::json statement = nlohmann::json::parse(payload, nullptr, false);
  if (!statement.is_object()) {
    problems.push_back("the payload is not an in-toto statement");
  } else {
    if (json_string(statement, "predicateType") != kRecordPredicateType)
      problems.push_back("the statement's predicateType is '" + json_string(statement, "predicateType") +
                         "', not a record's");
    const nlohmann::json pred = statement.value("predicate", nlohmann::json::object());
    Record& r = out.record;
    r.action = json_string(pred, "action");
    r.repository = json_string(pred, "repository");
    r.channel = json_string(pred, "channel");
    r.from_digest = json_string(pred, "from_digest");
    r.to_digest = json_string(pred, "to_digest");
    r.reason = json_string(pred, "reason");
    r.who = json_string(pred, "who");
    r.time = json_string(pred, "time");
    r.previous = json_string(pred, "previous");
    r.imported_from = json_string(pred, "imported_from");
    r.local_name = json_string(pred, "local_name");
    r.local_hash = json_string(pred, "local_hash");
    if (!record_actions().contains(r.action)) problems.push_back("unknown action '" + r.action + "'");
    if (r.action != "revoke" && r.channel.empty()) problems.push_back("the record names no channel");
    // A record signed for one image must not count for another it was copied next to.
    bool subject_ok = false;
    for (const auto& s : statement.value("subject", nlohmann::json::array()))
      if (s.is_object() && s.contains("digest") && "sha256:" + json_string(s["digest"], "sha256") == subject)
        subject_ok = true;
    if (!subject_ok) problems.push_back("the statement is not about " + subject + " (the image it is attached to)");
    if (r.to_digest != subject) problems.push_back("the record moves to " + r.to_digest + ", not " + subject);
  }
  out.verified = problems.empty();
  out.problem = util::join(problems, "; ");
  return out;
}

void sort_records(std::vector<CheckedRecord>& records) {
  std::stable_sort(records.begin(), records.end(), [](const CheckedRecord& a, const CheckedRecord& b) {
    int64_t ta = time_ms(a.record.time), tb = time_ms(b.record.time);
    if (ta != tb) return ta < tb;
    if (b.record.previous == a.digest) return true;
    if (a.record.previous == b.digest) return false;
    return a.digest < b.digest;
  });
}

std::optional<CheckedRecord> find_revocation(const std::vector<CheckedRecord>& records) {
  std::optional<CheckedRecord> found;
  for (const auto& r : records)
    if (r.verified && r.record.action == "revoke") found = r;
  return found;
}

namespace {

bool in_chain(const CheckedRecord& r, const std::string& repository, const std::string& channel) {
  return r.verified && r.record.imported_from.empty() && r.record.repository == repository &&
         r.record.channel == channel;
}

}  // namespace

std::string rollback_target(const std::vector<CheckedRecord>& records, const std::string& repository,
                            const std::string& channel) {
  std::vector<std::string> stack;
  const CheckedRecord* latest_promotion = nullptr;
  for (const auto& r : records) {
    if (!in_chain(r, repository, channel)) continue;
    if (r.record.action == "promote") {
      stack.push_back(r.record.to_digest);
      latest_promotion = &r;
    } else if (r.record.action == "rollback") {
      if (!stack.empty()) stack.pop_back();
      if (stack.empty() || stack.back() != r.record.to_digest) stack.push_back(r.record.to_digest);
    }
  }
  if (stack.empty() || !latest_promotion)
    throw BuildError("channel '" + channel + "' of " + repository +
                     " has no trusted promotion record to roll back (imgbake history " + repository + " --channel " +
                     channel + " shows what there is)");
  if (stack.size() >= 2) return stack[stack.size() - 2];
  // The channel's records hold one image: back to what the tag held before it was promoted.
  if (!latest_promotion->record.from_digest.empty() && latest_promotion->record.from_digest != stack.back())
    return latest_promotion->record.from_digest;
  throw BuildError("channel '" + channel + "' of " + repository + " has no earlier image to roll back to (it holds " +
                   stack.back() + ", and no trusted record says what it held before)");
}

std::string chain_head(const std::vector<CheckedRecord>& records, const std::string& repository,
                       const std::string& channel) {
  std::string head;
  for (const auto& r : records)
    if (in_chain(r, repository, channel)) head = r.digest;
  return head;
}

}  // namespace imgbake::registry
