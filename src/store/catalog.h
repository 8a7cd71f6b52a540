// Private to the store module: the SQLite catalog (Store::Catalog: opening, schema), a thin
// RAII layer over the SQLite C API, the store's lock files, and the catalog helpers that the
// store's source files share. Defined in catalog.cpp, the channel helpers in channels.cpp.
#pragma once

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/file.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "imgbake/provenance.h"
#include "imgbake/store.h"
#include "imgbake/unique_fd.h"

namespace imgbake::store {

// ---------------------------------------------------------------------------
// A thin RAII layer over the SQLite C API.

struct Store::Catalog {
  sqlite3* db = nullptr;

  // Opens (creating) the catalog and its tables.
  explicit Catalog(const std::filesystem::path& file);
  ~Catalog();

  void exec(const std::string& sql);
};

namespace detail {

class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql) : db_(db) {
    if (sqlite3_prepare_v2(db, sql, -1, &s_, nullptr) != SQLITE_OK)
      throw StoreError(std::string("catalog: ") + sqlite3_errmsg(db));
  }
  ~Stmt() { sqlite3_finalize(s_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  Stmt& bind(int i, const std::string& v) {
    sqlite3_bind_text(s_, i, v.c_str(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Stmt& bind(int i, int64_t v) {
    sqlite3_bind_int64(s_, i, v);
    return *this;
  }
  // True while there is a row.
  bool step() {
    int rc = sqlite3_step(s_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    throw StoreError(std::string("catalog: ") + sqlite3_errmsg(db_));
  }
  void run() {
    while (step()) {
    }
  }
  std::string text(int col) const {
    auto* p = sqlite3_column_text(s_, col);
    return p ? reinterpret_cast<const char*>(p) : "";
  }
  int64_t integer(int col) const { return sqlite3_column_int64(s_, col); }

 private:
  sqlite3* db_;
  sqlite3_stmt* s_ = nullptr;
};

// BEGIN IMMEDIATE takes the write lock up front, so two writers never both read the
// same "next version" and then conflict; rolled back unless commit() is called.
// A transaction that appended audit entries moves the user's witness (advance_witness) once it
// has committed them.
class Transaction {
 public:
  explicit Transaction(sqlite3* db) : db_(db) { exec("BEGIN IMMEDIATE"); }
  ~Transaction() {
    if (!done_) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
  }
  void commit();
  sqlite3* db() const { return db_; }
  // Called by append_audit.
  void audited() { audited_ = true; }

 private:
  void exec(const char* sql) {
    char* err = nullptr;
    if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
      std::string msg = err ? err : "?";
      sqlite3_free(err);
      throw StoreError(std::string("catalog: ") + msg);
    }
  }
  sqlite3* db_;
  bool done_ = false;
  bool audited_ = false;
};

// Commits hold the store's lock file shared, gc holds it exclusively: gc never sees a
// commit's blobs before the catalog references them, and commits run side by side.
class StoreLock {
 public:
  StoreLock(const std::filesystem::path& home, bool exclusive, const char* file = ".lock") {
    fd_.reset(open((home / file).c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644));
    if (!fd_) throw StoreError("cannot open the store's lock file in " + home.string());
    flock(fd_.get(), exclusive ? LOCK_EX : LOCK_SH);
  }
  StoreLock(const StoreLock&) = delete;
  StoreLock& operator=(const StoreLock&) = delete;

 private:
  util::UniqueFd fd_;  // unlocked when closed
};

std::string now_rfc3339();

// index.json as it was before imgbake rewrote it, kept when it had been edited: in the store's
// directory, named this prefix + the time.
inline constexpr const char* kEditedIndexPrefix = "index.json.edited-";

// Refuses a store whose layout (blobs/, blobs/sha256, tmp/, the catalog, index.json, the lock
// files) holds a symbolic link: gc and every write would act on the link's target, outside the
// store. The store's home itself may be a link.
void refuse_symlinks_in_layout(const std::filesystem::path& home);

// The columns read_image reads, in its order.
inline constexpr const char* kImageColumns =
    "id, name, version, manifest_digest, manifest_size, created, builder_type, template_digest, git_commit, parent, "
    "provenance_digest, referrer_digest, referrer_size, revoked, revoked_reason";

ImageRecord read_image(const Stmt& s);
// The image's labels and the channels that point at it.
void fill_details(sqlite3* db, ImageRecord& r);
std::optional<ImageRecord> find_image(sqlite3* db, const std::string& where, const std::vector<std::string>& args);

bool valid_name_part(const std::string& s);
bool valid_version(const std::string& s);

// ---------------------------------------------------------------------------
// The audit log (audit.cpp).

// The hash of an audit entry: its content and the previous entry's hash.
std::string entry_hash(const AuditEntry& e);
// Appends an audit entry chained to the previous one and signed (AuditEntry::signature), inside `tx`.
void append_audit(Transaction& tx, AuditEntry e);
// The columns of an audit row, in AuditEntry's order, and the entry read from a row of them.
inline constexpr const char* kAuditColumns =
    "seq, time, who, action, name, channel, from_ref, to_ref, reason, detail, prev_hash, hash, signature";
AuditEntry read_audit(const Stmt& s);
// Moves this user's witness of the store (its last audit entry, kept in config_home()) to the
// log's end, unless the log no longer holds the entry the witness names (store check says so).
void advance_witness(sqlite3* db);

// The state the audit log replays to, and what is wrong with the log itself.
struct ReplayedImage {
  int64_t seq = 0;  // the entry that made it (commit or pull)
  std::string manifest, provenance, parent;
  bool labels_known = false;  // entries written before 0.2 do not record an image's first labels
  std::map<std::string, std::string> labels;
  bool revoked = false;
  std::string revoked_reason;
  int64_t revoked_seq = 0;
  std::set<std::string> test_envelopes;  // the test results recorded for it (their envelopes)
};
struct ReplayedChannel {
  int64_t seq = 0;  // the entry that last moved or protected it
  std::string ref;
  bool is_protected = false;
};
struct AuditReplay {
  size_t entries = 0;
  // Problems with the log itself (chain, hashes, signatures, witness), and the refs they concern.
  std::vector<std::pair<std::string, std::string>> problems;                // (ref or "", problem)
  std::string witness;                                                      // CheckReport::witness
  std::map<std::string, ReplayedImage> images;                              // by NAME:VERSION
  std::map<std::pair<std::string, std::string>, ReplayedChannel> channels;  // by (name, channel)
  // Channel policies: (name, channel) -> the entry that set them and the suites required.
  std::map<std::pair<std::string, std::string>, std::pair<int64_t, std::vector<std::string>>> policies;
};
AuditReplay replay_audit(sqlite3* db, const std::vector<provenance::VerifyingKey>& anchors);
// What the catalog says about `img` that the replayed log contradicts.
std::vector<std::string> compare_image(const AuditReplay& log, const ImageRecord& img);
// Channels in the catalog that the replayed log contradicts, and the log's channels it lacks.
std::vector<std::string> compare_channels(sqlite3* db, const AuditReplay& log);
// Channel policies in the catalog that the replayed log contradicts (a policy removed or weakened
// behind the log's back opens a gate), and the log's policies the catalog lacks.
std::vector<std::string> compare_policies(sqlite3* db, const AuditReplay& log);

// The seq the next version of `name` gets, and its next automatic version number.
std::pair<int64_t, int64_t> next_seq_and_number(sqlite3* db, const std::string& name);

// Where channel `channel` of `name` points now, and whether it is protected.
struct ChannelHead {
  std::string version;
  bool is_protected = false;
};
// Nothing when the channel does not exist (yet).
std::optional<ChannelHead> channel_head(sqlite3* db, const std::string& name, const std::string& channel);
// Points the channel at the image, creating the channel. `protect` marks it protected; a
// protected channel stays protected. The caller checks and writes the audit entry.
void move_channel(sqlite3* db, const std::string& name, const std::string& channel, int64_t image_id, bool protect);

// A tar layer (OCI or Docker media type), the kind whose diff_id an image config lists.
bool is_tar_layer(const std::string& media_type);
// A layer and the diff_id an image config claims for it.
using LayerClaim = std::pair<Descriptor, std::string>;
struct CheckedDiffId {
  std::string digest;
  std::string diff_id;
};
// Throws StoreError (starting with `what`, naming the layer) when a tar layer's diff_id is not
// the one claimed. A layer not checked before is decompressed once; the pairs checked now are
// returned for record_diff_ids (inside the caller's transaction). Other layers are skipped.
std::vector<CheckedDiffId> check_diff_ids(sqlite3* db, const BlobStore& blobs, const std::vector<LayerClaim>& layers,
                                          const std::string& what);
void record_diff_ids(sqlite3* db, const std::vector<CheckedDiffId>& checked);

}  // namespace detail

}  // namespace imgbake::store
