// After the commit: labels, channels (promote, rollback), the audit history of a name or a
// channel, and revocation (of an image and its descendants).
#include "catalog.h"
#include "imgbake/provenance.h"

#include <optional>
#include <set>
#include <string>
#include <vector>

namespace imgbake::store {

using detail::append_audit;
using detail::channel_head;
using detail::find_image;
using detail::kImageColumns;
using detail::move_channel;
using detail::read_image;
using detail::Stmt;
using detail::Transaction;
using detail::valid_name_part;

namespace detail {

std::optional<ChannelHead> channel_head(sqlite3* db, const std::string& name, const std::string& channel) {
  Stmt c(db,
         "SELECT i.version, c.protected FROM channels c JOIN images i ON c.image_id = i.id "
         "WHERE c.name = ? AND c.channel = ?");
  c.bind(1, name).bind(2, channel);
  if (!c.step()) return std::nullopt;
  return ChannelHead{c.text(0), c.integer(1) != 0};
}

void move_channel(sqlite3* db, const std::string& name, const std::string& channel, int64_t image_id, bool protect) {
  Stmt up(db,
          "INSERT INTO channels(name, channel, image_id, protected) VALUES(?,?,?,?) "
          "ON CONFLICT(name, channel) DO UPDATE SET image_id = excluded.image_id, "
          "protected = MAX(protected, excluded.protected)");
  up.bind(1, name).bind(2, channel).bind(3, image_id).bind(4, static_cast<int64_t>(protect ? 1 : 0));
  up.run();
}

}  // namespace detail

std::vector<ChannelRecord> Store::channels(const std::string& name) const {
  std::vector<ChannelRecord> out;
  Stmt s(db_->db,
         "SELECT c.name, c.channel, i.version, c.protected FROM channels c JOIN images i ON c.image_id = i.id "
         "WHERE c.name = ? ORDER BY c.channel");
  s.bind(1, name);
  while (s.step()) out.push_back({s.text(0), s.text(1), s.text(2), s.integer(3) != 0});
  return out;
}

void Store::label(const std::string& ref, const std::map<std::string, std::string>& labels) {
  sqlite3* db = db_->db;
  Transaction tx(db);
  ImageRecord img = resolve(ref);
  for (const auto& [k, v] : labels) {
    std::string old = img.labels.count(k) ? img.labels.at(k) : "";
    Stmt up(db,
            "INSERT INTO labels(image_id, key, value) VALUES(?,?,?) "
            "ON CONFLICT(image_id, key) DO UPDATE SET value = excluded.value");
    up.bind(1, img.id).bind(2, k).bind(3, v);
    up.run();
    nlohmann::json detail = {{"key", k}, {"old", old}, {"new", v}};
    append_audit(tx, AuditEntry{0, "", who(), "label", img.name, "", "", img.ref(), "", detail.dump(), "", "", ""});
  }
  tx.commit();
}

void Store::promote(const std::string& ref, const std::string& channel, const std::string& reason, bool signature_ok,
                    bool protect, const std::vector<provenance::VerifyingKey>* keys) {
  if (!valid_name_part(channel)) throw StoreError("invalid channel name '" + channel + "'");
  sqlite3* db = db_->db;
  {
    Transaction tx(db);
    ImageRecord img = resolve(ref);
    if (img.revoked)
      throw StoreError("refusing to promote " + img.ref() + ": it is revoked (" + img.revoked_reason + ")");
    if (find_image(db, "name = ? AND version = ?", {img.name, channel}))
      throw StoreError("'" + channel + "' is a version of " + img.name + ", not a channel name");
    std::string from;
    bool is_protected = false;
    if (auto head = channel_head(db, img.name, channel)) {
      from = img.name + ":" + head->version;
      is_protected = head->is_protected;
    }
    if ((is_protected || protect) && !signature_ok)
      throw StoreError("refusing to promote " + img.ref() + " to protected channel '" + channel +
                       "': its provenance signature does not verify with a trusted key");
    // The channel's policy: a passing, trusted test result of each suite it requires. The
    // results that let the image in are named in the audit entry.
    static const std::vector<provenance::VerifyingKey> kNoKeys;
    if (std::string gate = gate_problem(img, channel, keys ? *keys : kNoKeys); !gate.empty())
      throw StoreError("refusing to promote " + img.ref() + ": " + gate);
    nlohmann::json evidence = nlohmann::json::array();
    for (const auto& suite : required_tests(img.name, channel)) {
      const TestRun* last = nullptr;
      const std::vector<TestRun> runs = test_runs(img);
      for (const TestRun& r : runs)
        if (r.suite == suite) last = &r;
      if (last) evidence.push_back({{"suite", suite}, {"envelope", last->envelope_digest}});
    }
    if (from == img.ref()) {
      if (!protect || is_protected) throw StoreError(img.ref() + " is already in channel '" + channel + "'");
      // Only marking the channel protected: not a move, so not a step rollback can undo.
      Stmt pr(db, "UPDATE channels SET protected = 1 WHERE name = ? AND channel = ?");
      pr.bind(1, img.name).bind(2, channel);
      pr.run();
      append_audit(tx, AuditEntry{0, "", who(), "protect", img.name, channel, "", img.ref(), reason, "{}", "", "", ""});
      tx.commit();
      return;
    }
    move_channel(db, img.name, channel, img.id, protect);
    nlohmann::json detail = {{"manifest", img.manifest_digest}, {"protected", is_protected || protect}};
    if (!evidence.empty()) detail["tests"] = evidence;
    append_audit(
        tx, AuditEntry{0, "", who(), "promote", img.name, channel, from, img.ref(), reason, detail.dump(), "", "", ""});
    tx.commit();
  }
  sync_index();
}

ImageRecord Store::rollback(const std::string& name, const std::string& channel, const std::string& reason,
                            const std::function<bool(const ImageRecord&)>& signature_ok) {
  sqlite3* db = db_->db;
  ImageRecord target;
  {
    Transaction tx(db);
    // Replay the channel's history: a promotion pushes, a rollback pops. Each entry remembers
    // whether the channel was protected when it accepted the image (a verified promotion).
    struct Held {
      std::string ref;
      bool accepted_protected = false;
    };
    std::vector<Held> stack;
    Stmt h(db, "SELECT action, to_ref, detail FROM audit WHERE name = ? AND channel = ? ORDER BY seq");
    h.bind(1, name).bind(2, channel);
    while (h.step()) {
      if (h.text(0) == "promote") {
        nlohmann::json detail = nlohmann::json::parse(h.text(2), nullptr, false);
        bool prot = detail.is_object() && detail.value("protected", false);
        stack.push_back({h.text(1), prot});
      } else if (h.text(0) == "rollback") {
        if (!stack.empty()) stack.pop_back();
        // Stores written before 0.1 could roll back past the channel's history; such an entry
        // is what the channel then held, never accepted under protection.
        if (stack.empty() || stack.back().ref != h.text(1)) stack.push_back({h.text(1), false});
      }
    }
    if (stack.empty()) throw StoreError("channel '" + channel + "' of " + name + " has never been promoted to");
    std::string from = stack.back().ref;
    // Only back to what the channel itself held: never to a version it did not hold.
    if (stack.size() < 2)
      throw StoreError("channel '" + channel + "' of " + name + " has no earlier image to roll back to: it has held " +
                       "only " + from + " (imgbake history " + name + " --channel " + channel +
                       "); promote the image you want instead");
    const Held& prev = stack[stack.size() - 2];
    std::string to = prev.ref;
    std::string rule = "the image the channel held before " + from;
    {
      Stmt c(db, "SELECT protected FROM channels WHERE name = ? AND channel = ?");
      c.bind(1, name).bind(2, channel);
      if (c.step() && c.integer(0) != 0 && !prev.accepted_protected)
        throw StoreError("refusing to roll back protected channel '" + channel + "' to " + to + ": " + to +
                         " entered the channel before it was protected, so no verified promotion accepted it; "
                         "promote it instead (its signature is checked then)");
    }
    target = resolve(to);
    {
      Stmt c(db, "SELECT protected FROM channels WHERE name = ? AND channel = ?");
      c.bind(1, name).bind(2, channel);
      if (c.step() && c.integer(0) != 0 && (!signature_ok || !signature_ok(target)))
        throw StoreError("refusing to roll back protected channel '" + channel + "' to " + to +
                         ": its provenance signature does not verify with a trusted key");
    }
    if (target.revoked)
      throw StoreError("refusing to roll back '" + channel + "' to " + to + ": it is revoked (" +
                       target.revoked_reason + "); promote another version instead");
    Stmt up(db, "UPDATE channels SET image_id = ? WHERE name = ? AND channel = ?");
    up.bind(1, target.id).bind(2, name).bind(3, channel);
    up.run();
    nlohmann::json detail = {{"manifest", target.manifest_digest}, {"rule", rule}};
    append_audit(tx, AuditEntry{0, "", who(), "rollback", name, channel, from, to, reason, detail.dump(), "", "", ""});
    tx.commit();
  }
  sync_index();
  return resolve(target.ref());
}

std::vector<AuditEntry> Store::history(const std::string& name, const std::string& channel) const {
  std::vector<AuditEntry> out;
  std::string sql = std::string("SELECT ") + detail::kAuditColumns + " FROM audit WHERE name = ?" +
                    (channel.empty() ? "" : " AND channel = ?") + " ORDER BY seq";
  Stmt s(db_->db, sql.c_str());
  s.bind(1, name);
  if (!channel.empty()) s.bind(2, channel);
  while (s.step()) out.push_back(detail::read_audit(s));
  return out;
}

RevokeReport Store::revoke(const std::string& ref, const std::string& reason, bool descendants) {
  if (reason.empty()) throw StoreError("revoke needs a --reason");
  sqlite3* db = db_->db;
  RevokeReport rep;
  {
    Transaction tx(db);
    ImageRecord img = resolve(ref);
    std::vector<ImageRecord> todo = {img};
    std::set<int64_t> seen;
    while (!todo.empty()) {
      ImageRecord cur = todo.back();
      todo.pop_back();
      if (!seen.insert(cur.id).second) continue;
      if (!cur.revoked) {
        Stmt up(db, "UPDATE images SET revoked = 1, revoked_reason = ? WHERE id = ?");
        up.bind(1, reason).bind(2, cur.id);
        up.run();
        nlohmann::json detail = {{"manifest", cur.manifest_digest}, {"via", cur.id == img.id ? "" : img.ref()}};
        append_audit(
            tx, AuditEntry{0, "", who(), "revoke", cur.name, "", "", cur.ref(), reason, detail.dump(), "", "", ""});
        rep.revoked.push_back(cur.ref());
      }
      if (!descendants) continue;
      // Children name their parent by store ref, by manifest digest, or by the digest of
      // a file of it they were made from (a disk used as a base).
      std::vector<std::string> ids = {cur.ref(), cur.manifest_digest, cur.name + "@" + cur.manifest_digest};
      const ManifestBlobs image = referenced_blobs(cur).manifests.front();
      for (const auto& l : image.layers) ids.push_back(l.digest);
      if (!image.problem.empty())
        rep.problems.push_back(image.problem + " (images built on one of its files cannot be found)");
      for (const auto& id : ids) {
        Stmt c(db, (std::string("SELECT ") + kImageColumns + " FROM images WHERE parent = ?").c_str());
        c.bind(1, id);
        while (c.step()) todo.push_back(read_image(c));
      }
    }
    tx.commit();
  }
  return rep;
}

}  // namespace imgbake::store
