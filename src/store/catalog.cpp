// The catalog: the SQLite database (opening, schema) and the helpers over it that the
// store's source files share (catalog.h).
#include "catalog.h"

#include <algorithm>
#include <chrono>

#include "imgbake/util.h"

namespace imgbake::store {

namespace fs = std::filesystem;

Store::Catalog::Catalog(const fs::path& file) {
  if (sqlite3_open_v2(file.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, nullptr) !=
      SQLITE_OK)
    throw StoreError("cannot open the catalog " + file.string() + ": " + (db ? sqlite3_errmsg(db) : "?"));
  // Concurrent builds and promotions wait for each other instead of failing.
  sqlite3_busy_timeout(db, 60000);
  exec("PRAGMA journal_mode=WAL");
  exec("PRAGMA synchronous=FULL");
  exec("PRAGMA foreign_keys=ON");
  exec(R"(CREATE TABLE IF NOT EXISTS images(
      id INTEGER PRIMARY KEY, name TEXT NOT NULL, version TEXT NOT NULL, seq INTEGER NOT NULL,
      manifest_digest TEXT NOT NULL, manifest_size INTEGER NOT NULL, created TEXT NOT NULL,
      builder_type TEXT NOT NULL DEFAULT '', template_digest TEXT NOT NULL DEFAULT '',
      git_commit TEXT NOT NULL DEFAULT '', parent TEXT NOT NULL DEFAULT '',
      provenance_digest TEXT NOT NULL DEFAULT '', referrer_digest TEXT NOT NULL DEFAULT '',
      referrer_size INTEGER NOT NULL DEFAULT 0,
      revoked INTEGER NOT NULL DEFAULT 0, revoked_reason TEXT NOT NULL DEFAULT '',
      UNIQUE(name, version));
      CREATE TABLE IF NOT EXISTS labels(image_id INTEGER NOT NULL REFERENCES images(id), key TEXT NOT NULL,
        value TEXT NOT NULL, PRIMARY KEY(image_id, key));
      CREATE TABLE IF NOT EXISTS channels(name TEXT NOT NULL, channel TEXT NOT NULL,
        image_id INTEGER NOT NULL REFERENCES images(id), protected INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY(name, channel));
      CREATE TABLE IF NOT EXISTS audit(seq INTEGER PRIMARY KEY, time TEXT NOT NULL, who TEXT NOT NULL,
        action TEXT NOT NULL, name TEXT NOT NULL, channel TEXT NOT NULL, from_ref TEXT NOT NULL,
        to_ref TEXT NOT NULL, reason TEXT NOT NULL, detail TEXT NOT NULL, prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL, signature TEXT NOT NULL DEFAULT '');
      CREATE TABLE IF NOT EXISTS layer_cache(key TEXT PRIMARY KEY, material TEXT NOT NULL,
        empty INTEGER NOT NULL, media_type TEXT NOT NULL, digest TEXT NOT NULL, size INTEGER NOT NULL,
        diff_id TEXT NOT NULL, created_by TEXT NOT NULL, created TEXT NOT NULL,
        state_media_type TEXT NOT NULL DEFAULT '', state_digest TEXT NOT NULL DEFAULT '',
        state_size INTEGER NOT NULL DEFAULT 0);
      CREATE TABLE IF NOT EXISTS layer_cache_slots(slot TEXT PRIMARY KEY, key TEXT NOT NULL);
      CREATE TABLE IF NOT EXISTS layer_diff_ids(digest TEXT PRIMARY KEY, diff_id TEXT NOT NULL);
      CREATE TABLE IF NOT EXISTS test_runs(id INTEGER PRIMARY KEY,
        image_id INTEGER NOT NULL REFERENCES images(id), suite TEXT NOT NULL, passed INTEGER NOT NULL,
        failed TEXT NOT NULL, time TEXT NOT NULL, envelope_digest TEXT NOT NULL,
        referrer_digest TEXT NOT NULL, referrer_size INTEGER NOT NULL);
      CREATE TABLE IF NOT EXISTS channel_policies(name TEXT NOT NULL, channel TEXT NOT NULL,
        suite TEXT NOT NULL, PRIMARY KEY(name, channel, suite));)");
  // Catalogs made before audit entries were signed gain the column (their entries stay unsigned,
  // which store check reports).
  bool has_signature = false;
  {
    detail::Stmt cols(db, "PRAGMA table_info(audit)");
    while (cols.step()) has_signature = has_signature || cols.text(1) == "signature";
  }
  if (!has_signature) exec("ALTER TABLE audit ADD COLUMN signature TEXT NOT NULL DEFAULT ''");
  // Build caches made before the qemu builder's checkpoints gain the VM state columns.
  bool has_state = false;
  {
    detail::Stmt cols(db, "PRAGMA table_info(layer_cache)");
    while (cols.step()) has_state = has_state || cols.text(1) == "state_digest";
  }
  if (!has_state)
    exec(
        "ALTER TABLE layer_cache ADD COLUMN state_media_type TEXT NOT NULL DEFAULT ''; "
        "ALTER TABLE layer_cache ADD COLUMN state_digest TEXT NOT NULL DEFAULT ''; "
        "ALTER TABLE layer_cache ADD COLUMN state_size INTEGER NOT NULL DEFAULT 0");
}

Store::Catalog::~Catalog() { sqlite3_close_v2(db); }

void Store::Catalog::exec(const std::string& sql) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : "?";
    sqlite3_free(err);
    throw StoreError("catalog: " + msg);
  }
}

namespace detail {

void Transaction::commit() {
  exec("COMMIT");
  done_ = true;
  if (audited_) advance_witness(db_);
}

void refuse_symlinks_in_layout(const fs::path& home) {
  static constexpr const char* kLayout[] = {
      "blobs",          "blobs/sha256",   "tmp",   "oci-layout",  "index.json",        "catalog.db",
      "catalog.db-wal", "catalog.db-shm", ".lock", ".users.lock", ".catalog-open.lock"};
  for (const char* name : kLayout) {
    std::error_code ec;
    if (!fs::is_symlink(fs::symlink_status(home / name, ec))) continue;
    std::string target = fs::read_symlink(home / name, ec).string();
    throw StoreError("the store " + home.string() + " is refused: " + name + " is a symbolic link (to " +
                     (ec ? "an unreadable target" : target) +
                     "); imgbake never follows links inside a store, where gc would delete through them. "
                     "Replace it with the directory or file itself, or point IMGBAKE_HOME at the real store");
  }
}

std::string now_rfc3339() { return util::format_rfc3339(std::chrono::system_clock::now()); }

ImageRecord read_image(const Stmt& s) {
  ImageRecord r;
  r.id = s.integer(0);
  r.name = s.text(1);
  r.version = s.text(2);
  r.manifest_digest = s.text(3);
  r.manifest_size = static_cast<uint64_t>(s.integer(4));
  r.created = s.text(5);
  r.builder_type = s.text(6);
  r.template_digest = s.text(7);
  r.git_commit = s.text(8);
  r.parent = s.text(9);
  r.provenance_digest = s.text(10);
  r.referrer_digest = s.text(11);
  r.referrer_size = static_cast<uint64_t>(s.integer(12));
  r.revoked = s.integer(13) != 0;
  r.revoked_reason = s.text(14);
  return r;
}

void fill_details(sqlite3* db, ImageRecord& r) {
  Stmt l(db, "SELECT key, value FROM labels WHERE image_id = ? ORDER BY key");
  l.bind(1, r.id);
  while (l.step()) r.labels[l.text(0)] = l.text(1);
  Stmt c(db, "SELECT channel FROM channels WHERE image_id = ? ORDER BY channel");
  c.bind(1, r.id);
  while (c.step()) r.channels.push_back(c.text(0));
}

std::optional<ImageRecord> find_image(sqlite3* db, const std::string& where, const std::vector<std::string>& args) {
  std::string sql = std::string("SELECT ") + kImageColumns + " FROM images WHERE " + where;
  Stmt s(db, sql.c_str());
  for (size_t i = 0; i < args.size(); ++i) s.bind(static_cast<int>(i + 1), args[i]);
  if (!s.step()) return std::nullopt;
  ImageRecord r = read_image(s);
  fill_details(db, r);
  return r;
}

bool valid_name_part(const std::string& s) {
  return !s.empty() && s.find_first_of(":@ \t\n") == std::string::npos && s.size() <= 128;
}

bool valid_version(const std::string& s) { return valid_name_part(s) && s.find('/') == std::string::npos; }

// The seq the next version of `name` gets, and its next automatic version number.
std::pair<int64_t, int64_t> next_seq_and_number(sqlite3* db, const std::string& name) {
  int64_t seq = 1, next_number = 1;
  Stmt s(db, "SELECT version, seq FROM images WHERE name = ?");
  s.bind(1, name);
  while (s.step()) {
    seq = std::max(seq, s.integer(1) + 1);
    const std::string v = s.text(0);
    if (!v.empty() && v.find_first_not_of("0123456789") == std::string::npos && v.size() < 18)
      next_number = std::max<int64_t>(next_number, std::stoll(v) + 1);
  }
  // A removed version's number is not given again: the audit log still names it.
  Stmt r(db, "SELECT to_ref FROM audit WHERE name = ? AND action = 'remove'");
  r.bind(1, name);
  while (r.step()) {
    const std::string v = r.text(0).substr(name.size() + 1);
    if (!v.empty() && v.find_first_not_of("0123456789") == std::string::npos && v.size() < 18)
      next_number = std::max<int64_t>(next_number, std::stoll(v) + 1);
  }
  return {seq, next_number};
}

}  // namespace detail

}  // namespace imgbake::store
