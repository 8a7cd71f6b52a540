// The audit log: appending hash-chained entries signed by the writer's key; the witness of the
// log's end that each user keeps outside the store; and the replay of the log into the state the
// catalog must hold (store check, verify). docs/store.md, "The audit log".
#include <sys/stat.h>

#include <mutex>
#include <optional>
#include <set>

#include "catalog.h"
#include "imgbake/publish.h"
#include "imgbake/util.h"

namespace imgbake::store {

namespace fs = std::filesystem;

namespace detail {

namespace {

// What an audit signature signs: this prefix and the entry's hash (which covers its content and,
// through prev_hash, every entry before it).
constexpr std::string_view kSignedPrefix = "imgbake audit entry v1\n";

std::string signed_message(const std::string& hash) { return std::string(kSignedPrefix) + hash; }

std::mutex key_mu;
std::string chosen_key;  // AuditSigningKey

// The key audit entries are signed with, loaded once per key file: the one the command chose
// (a build's --signing-key), else $IMGBAKE_SIGNING_KEY, else the user's default key (created on
// first use, as a build does).
std::string sign_hash(const std::string& hash) {
  static std::string loaded_path;
  static std::optional<provenance::SigningKey> key;
  std::lock_guard lock(key_mu);
  std::string path = chosen_key;
  if (const char* e = std::getenv("IMGBAKE_SIGNING_KEY"); path.empty() && e && *e) path = e;
  const std::string resolved = path.empty() ? default_signing_key_path().string() : path;
  if (!key || loaded_path != resolved) {
    try {
      bool created = false;
      key.emplace(load_signing_key(path, created));
    } catch (const std::exception& e) {
      key.reset();
      throw StoreError(std::string("cannot sign the audit entry: ") + e.what() +
                       " (audit entries are signed with $IMGBAKE_SIGNING_KEY, else the default key)");
    }
    loaded_path = resolved;
  }
  return nlohmann::json{{"keyid", key->keyid()}, {"sig", provenance::base64_encode(key->sign(signed_message(hash)))}}
      .dump();
}

// The last entry a user saw of one store: config_home()/witness/<digest of the store's path>.json.
struct Witness {
  int64_t seq = 0;
  std::string hash, time;
};

fs::path store_home(sqlite3* db) {
  const char* f = sqlite3_db_filename(db, "main");
  return fs::path(f ? f : "").parent_path();
}

fs::path witness_file(sqlite3* db) {
  std::error_code ec;
  fs::path home = store_home(db);
  fs::path canon = fs::weakly_canonical(home, ec);
  if (ec) canon = home;
  return config_home() / "witness" / (util::sha256_hex(canon.string()).substr(0, 32) + ".json");
}

std::optional<Witness> read_witness(const fs::path& file) {
  std::error_code ec;
  if (!fs::exists(file, ec)) return std::nullopt;
  nlohmann::json j = nlohmann::json::parse(util::read_file(file), nullptr, false);
  if (!j.is_object() || !j.contains("seq") || !j["seq"].is_number_integer()) return std::nullopt;
  return Witness{j["seq"].get<int64_t>(), j.value("hash", ""), j.value("time", "")};
}

std::string describe(const AuditEntry& e) {
  return "entry " + std::to_string(e.seq) + " (" + e.action + " " + e.to_ref + ")";
}

// Consecutive numbers as "1-4, 7".
std::string ranges(const std::vector<int64_t>& seqs) {
  std::string out;
  for (size_t i = 0; i < seqs.size();) {
    size_t j = i;
    while (j + 1 < seqs.size() && seqs[j + 1] == seqs[j] + 1) ++j;
    if (!out.empty()) out += ", ";
    out += std::to_string(seqs[i]) + (j > i ? "-" + std::to_string(seqs[j]) : "");
    i = j + 1;
  }
  return out;
}

// Why the entry's signature does not show that a trust anchor wrote it, or "".
std::string signature_problem(const AuditEntry& e, const std::vector<provenance::VerifyingKey>& anchors) {
  nlohmann::json s = nlohmann::json::parse(e.signature, nullptr, false);
  if (!s.is_object() || !s.contains("keyid") || !s.contains("sig") || !s["keyid"].is_string() || !s["sig"].is_string())
    return describe(e) + " has an unreadable signature";
  const std::string keyid = s["keyid"];
  for (const auto& k : anchors) {
    if (k.keyid() != keyid) continue;
    std::string sig;
    try {
      sig = provenance::base64_decode(s["sig"].get<std::string>());
    } catch (const std::exception&) {
      return describe(e) + " has an unreadable signature";
    }
    if (k.verify(signed_message(entry_hash(e)), sig)) return "";
    return describe(e) + ": its signature does not verify (the entry, or the chain before it, was rewritten)";
  }
  return describe(e) + " is signed by " + keyid + ", which is not a trusted key (store check lists them)";
}

// Applies the entry to the replayed state; `d` is its detail (an object; empty when unreadable).
void apply(AuditReplay& r, const AuditEntry& e, const nlohmann::json& d) {
  auto text = [&](const char* k) { return d.contains(k) && d[k].is_string() ? d[k].get<std::string>() : ""; };
  if (e.action == "commit" || e.action == "pull") {
    ReplayedImage im;
    im.seq = e.seq;
    im.manifest = text("manifest");
    im.provenance = text("provenance");
    im.parent = text("parent");
    if (d.contains("labels") && d["labels"].is_object()) {
      im.labels_known = true;
      for (const auto& [k, v] : d["labels"].items())
        if (v.is_string()) im.labels[k] = v.get<std::string>();
    }
    r.images[e.to_ref] = std::move(im);
  } else if (e.action == "label") {
    if (auto it = r.images.find(e.to_ref); it != r.images.end()) it->second.labels[text("key")] = text("new");
  } else if (e.action == "revoke") {
    if (auto it = r.images.find(e.to_ref); it != r.images.end()) {
      it->second.revoked = true;
      it->second.revoked_reason = e.reason;
      it->second.revoked_seq = e.seq;
    }
  } else if (e.action == "remove") {
    r.images.erase(e.to_ref);
  } else if (e.action == "promote") {
    r.channels[{e.name, e.channel}] = {e.seq, e.to_ref, d.value("protected", false)};
  } else if (e.action == "test") {
    if (auto it = r.images.find(e.to_ref); it != r.images.end()) it->second.test_envelopes.insert(text("envelope"));
  } else if (e.action == "policy") {
    std::vector<std::string> suites;
    if (d.contains("require_tests") && d["require_tests"].is_array())
      for (const auto& t : d["require_tests"])
        if (t.is_string()) suites.push_back(t.get<std::string>());
    if (suites.empty())
      r.policies.erase({e.name, e.channel});
    else
      r.policies[{e.name, e.channel}] = {e.seq, suites};
  } else if (e.action == "protect" || e.action == "rollback") {
    ReplayedChannel& c = r.channels[{e.name, e.channel}];
    c.seq = e.seq;
    c.ref = e.to_ref;
    if (e.action == "protect") c.is_protected = true;
  }
}

}  // namespace

std::string entry_hash(const AuditEntry& e) {
  nlohmann::json j = {{"seq", e.seq},       {"time", e.time},       {"who", e.who},       {"action", e.action},
                      {"name", e.name},     {"channel", e.channel}, {"from", e.from_ref}, {"to", e.to_ref},
                      {"reason", e.reason}, {"detail", e.detail},   {"prev", e.prev_hash}};
  return "sha256:" + util::sha256_hex(j.dump());
}

AuditEntry read_audit(const Stmt& s) {
  return AuditEntry{s.integer(0), s.text(1), s.text(2), s.text(3),  s.text(4),  s.text(5), s.text(6),
                    s.text(7),    s.text(8), s.text(9), s.text(10), s.text(11), s.text(12)};
}

void append_audit(Transaction& tx, AuditEntry e) {
  sqlite3* db = tx.db();
  Stmt last(db, "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1");
  e.seq = 1;
  e.prev_hash = "";
  if (last.step()) {
    e.seq = last.integer(0) + 1;
    e.prev_hash = last.text(1);
  }
  e.time = now_rfc3339();
  e.hash = entry_hash(e);
  e.signature = sign_hash(e.hash);
  Stmt ins(
      db,
      "INSERT INTO audit(seq, time, who, action, name, channel, from_ref, to_ref, reason, detail, prev_hash, hash, "
      "signature) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?)");
  ins.bind(1, e.seq).bind(2, e.time).bind(3, e.who).bind(4, e.action).bind(5, e.name).bind(6, e.channel);
  ins.bind(7, e.from_ref).bind(8, e.to_ref).bind(9, e.reason).bind(10, e.detail).bind(11, e.prev_hash).bind(12, e.hash);
  ins.bind(13, e.signature);
  ins.run();
  tx.audited();
}

void advance_witness(sqlite3* db) {
  try {
    Stmt last(db, "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1");
    if (!last.step()) return;
    const Witness now{last.integer(0), last.text(1), now_rfc3339()};
    const fs::path file = witness_file(db);
    if (auto w = read_witness(file)) {
      // Never moved back or past a rewritten entry: that evidence is store check's to report.
      if (w->seq >= now.seq) return;
      Stmt at(db, "SELECT hash FROM audit WHERE seq = ?");
      at.bind(1, w->seq);
      if (!at.step() || at.text(0) != w->hash) return;
    }
    fs::create_directories(file.parent_path());
    ::chmod(file.parent_path().c_str(), 0700);
    nlohmann::json j = {{"store", store_home(db).string()}, {"seq", now.seq}, {"hash", now.hash}, {"time", now.time}};
    util::write_file_atomic(file, j.dump(2) + "\n", 0600);
  } catch (const std::exception&) {
    // Best effort: a configuration directory that cannot be written loses this check only.
  }
}

AuditReplay replay_audit(sqlite3* db, const std::vector<provenance::VerifyingKey>& anchors) {
  AuditReplay r;
  auto problem = [&](const std::string& ref, const std::string& p) { r.problems.emplace_back(ref, "audit: " + p); };
  const fs::path wfile = witness_file(db);
  std::optional<Witness> witness;
  try {
    witness = read_witness(wfile);
  } catch (const std::exception&) {
  }
  std::optional<std::string> hash_at_witness;
  std::vector<int64_t> unsigned_entries;
  Stmt a(db, (std::string("SELECT ") + kAuditColumns + " FROM audit ORDER BY seq").c_str());
  std::string prev;
  int64_t expect_seq = 1, last_seq = 0;
  while (a.step()) {
    const AuditEntry e = read_audit(a);
    ++r.entries;
    last_seq = e.seq;
    if (witness && e.seq == witness->seq) hash_at_witness = e.hash;
    if (e.seq != expect_seq) problem("", "entry " + std::to_string(expect_seq) + " is missing");
    expect_seq = e.seq + 1;
    if (e.prev_hash != prev)
      problem(e.to_ref, "entry " + std::to_string(e.seq) + " does not follow entry " + std::to_string(e.seq - 1) +
                            " (the chain is broken)");
    prev = e.hash;
    if (entry_hash(e) != e.hash)
      problem(e.to_ref, describe(e) + " was altered: its hash does not match its content");
    else if (e.signature.empty())
      unsigned_entries.push_back(e.seq);
    else if (std::string p = signature_problem(e, anchors); !p.empty())
      problem(e.to_ref, p);
    nlohmann::json detail = nlohmann::json::parse(e.detail, nullptr, false);
    if (!detail.is_object()) {
      if (e.action == "commit" || e.action == "pull")
        problem(e.to_ref, "entry " + std::to_string(e.seq) + " has an unreadable detail");
      detail = nlohmann::json::object();
    }
    apply(r, e, detail);
  }
  if (!unsigned_entries.empty())
    problem("", "entries " + ranges(unsigned_entries) +
                    " are not signed (written by an imgbake before 0.2, or their signatures were removed)");
  if (witness) {
    r.witness = "entry " + std::to_string(witness->seq) + " (" + witness->hash + ")";
    const std::string saw = "this user saw entry " + std::to_string(witness->seq) + " on " + witness->time +
                            " (witness " + wfile.string() + ")";
    if (last_seq < witness->seq)
      problem("", "the log ends at entry " + std::to_string(last_seq) + " but " + saw +
                      ": entries were removed from its end, or an older copy of the catalog was put back");
    else if (hash_at_witness && *hash_at_witness != witness->hash)
      problem("", "entry " + std::to_string(witness->seq) + " is not the one " + saw +
                      ": the log was rewritten from there");
  }
  return r;
}

std::vector<std::string> compare_image(const AuditReplay& log, const ImageRecord& img) {
  std::vector<std::string> out;
  const std::string ref = img.ref();
  auto it = log.images.find(ref);
  if (it == log.images.end()) return {ref + ": no commit entry in the audit log"};
  const ReplayedImage& li = it->second;
  const std::string entry = "audit entry " + std::to_string(li.seq);
  if (li.manifest != img.manifest_digest)
    out.push_back(ref + ": the catalog says manifest " + img.manifest_digest + " but it was committed as " +
                  li.manifest);
  if (!li.provenance.empty() && li.provenance != img.provenance_digest)
    out.push_back(ref + ": the catalog says provenance " + img.provenance_digest + " but " + entry + " recorded " +
                  li.provenance);
  if (li.parent != img.parent)
    out.push_back(ref + ": the catalog says parent '" + img.parent + "' but " + entry + " recorded '" + li.parent +
                  "'");
  if (li.revoked && !img.revoked)
    out.push_back(ref + ": audit entry " + std::to_string(li.revoked_seq) + " revoked it (" + li.revoked_reason +
                  ") but the catalog says it is not revoked");
  else if (!li.revoked && img.revoked)
    out.push_back(ref + ": the catalog says it is revoked (" + img.revoked_reason + ") but no audit entry revoked it");
  else if (li.revoked && li.revoked_reason != img.revoked_reason)
    out.push_back(ref + ": the catalog's revocation reason '" + img.revoked_reason + "' is not the one audit entry " +
                  std::to_string(li.revoked_seq) + " recorded ('" + li.revoked_reason + "')");
  std::set<std::string> keys;
  for (const auto& [k, v] : img.labels) keys.insert(k);
  for (const auto& [k, v] : li.labels) keys.insert(k);
  for (const auto& k : keys) {
    auto in_log = li.labels.find(k);
    auto in_catalog = img.labels.find(k);
    if (in_log == li.labels.end()) {
      if (li.labels_known)
        out.push_back(ref + ": label " + k + "='" + in_catalog->second +
                      "' is in the catalog but no audit entry set it");
    } else if (in_catalog == img.labels.end()) {
      out.push_back(ref + ": label " + k + "='" + in_log->second + "' (per the audit log) is missing from the catalog");
    } else if (in_catalog->second != in_log->second) {
      out.push_back(ref + ": label " + k + " is '" + in_catalog->second + "' in the catalog but '" + in_log->second +
                    "' per the audit log");
    }
  }
  return out;
}

std::vector<std::string> compare_channels(sqlite3* db, const AuditReplay& log) {
  std::vector<std::string> out;
  std::set<std::pair<std::string, std::string>> seen;
  Stmt s(db,
         "SELECT c.name, c.channel, i.name || ':' || i.version, c.protected FROM channels c "
         "JOIN images i ON c.image_id = i.id ORDER BY c.name, c.channel");
  while (s.step()) {
    const std::pair<std::string, std::string> key{s.text(0), s.text(1)};
    seen.insert(key);
    const std::string what = "channel '" + key.second + "' of " + key.first;
    const std::string ref = s.text(2);
    const bool prot = s.integer(3) != 0;
    auto it = log.channels.find(key);
    if (it == log.channels.end()) {
      out.push_back(what + " points at " + ref + " but no audit entry put it there");
      continue;
    }
    const std::string entry = "audit entry " + std::to_string(it->second.seq);
    if (it->second.ref != ref)
      out.push_back(what + " points at " + ref + " but " + entry + " says it holds " + it->second.ref);
    if (it->second.is_protected != prot)
      out.push_back(what + " is " + (prot ? "" : "not ") + "protected in the catalog but " + entry + " says it is " +
                    (it->second.is_protected ? "" : "not ") + "protected");
  }
  for (const auto& [key, c] : log.channels)
    if (!seen.count(key))
      out.push_back("channel '" + key.second + "' of " + key.first + " is missing from the catalog; audit entry " +
                    std::to_string(c.seq) + " says it holds " + c.ref);
  return out;
}

std::vector<std::string> compare_policies(sqlite3* db, const AuditReplay& log) {
  std::vector<std::string> out;
  std::map<std::pair<std::string, std::string>, std::vector<std::string>> catalog;
  {
    Stmt s(db, "SELECT name, channel, suite FROM channel_policies ORDER BY name, channel, suite");
    while (s.step()) catalog[{s.text(0), s.text(1)}].push_back(s.text(2));
  }
  auto what = [](const std::pair<std::string, std::string>& k) {
    return "the policy of channel '" + k.second + "'" + (k.first.empty() ? "" : " of " + k.first);
  };
  for (const auto& [key, suites] : catalog) {
    auto it = log.policies.find(key);
    if (it == log.policies.end())
      out.push_back(what(key) + " (requires " + util::join(suites, ", ") + ") was set by no audit entry");
    else if (it->second.second != suites)
      out.push_back(what(key) + " requires " + util::join(suites, ", ") + " but audit entry " +
                    std::to_string(it->second.first) + " set " + util::join(it->second.second, ", "));
  }
  for (const auto& [key, entry] : log.policies)
    if (!catalog.count(key))
      out.push_back(what(key) + " (requires " + util::join(entry.second, ", ") + ", audit entry " +
                    std::to_string(entry.first) + ") is missing from the catalog: its gate is open");
  return out;
}

}  // namespace detail

std::vector<std::string> Store::audit_problems(const ImageRecord& img,
                                               const std::vector<provenance::VerifyingKey>& keys) const {
  const detail::AuditReplay log = detail::replay_audit(db_->db, keys);
  std::vector<std::string> out;
  for (const auto& [ref, p] : log.problems)
    if (ref.empty() || ref == img.ref()) out.push_back(p);
  for (auto& p : detail::compare_image(log, img)) out.push_back(std::move(p));
  return out;
}

}  // namespace imgbake::store

namespace imgbake {

AuditSigningKey::AuditSigningKey(const std::string& path) {
  std::lock_guard lock(store::detail::key_mu);
  previous_ = store::detail::chosen_key;
  if (!path.empty()) store::detail::chosen_key = path;
}

AuditSigningKey::~AuditSigningKey() {
  std::lock_guard lock(store::detail::key_mu);
  store::detail::chosen_key = previous_;
}

}  // namespace imgbake
