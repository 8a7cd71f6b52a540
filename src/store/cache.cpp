// The build cache: the rootfs builder's layers and the qemu builder's checkpoints by step key,
// and the key each build step (slot) had last time, to explain a miss.
#include "catalog.h"
#include "imgbake/cache_remote.h"

#include <optional>
#include <string>

namespace imgbake::store {

using detail::now_rfc3339;
using detail::Stmt;
using detail::Transaction;

namespace {

CacheEntry cache_entry_from(const Stmt& s) {
  CacheEntry e;
  e.key = s.text(0);
  e.material = s.text(1);
  e.empty = s.integer(2) != 0;
  e.blob.media_type = s.text(3);
  e.blob.digest = s.text(4);
  e.blob.size = static_cast<uint64_t>(s.integer(5));
  e.diff_id = s.text(6);
  e.created_by = s.text(7);
  e.created = s.text(8);
  e.state.media_type = s.text(9);
  e.state.digest = s.text(10);
  e.state.size = static_cast<uint64_t>(s.integer(11));
  return e;
}

constexpr const char* kCacheColumns =
    "key, material, empty, media_type, digest, size, diff_id, created_by, created, state_media_type, state_digest, "
    "state_size";

}  // namespace

std::optional<CacheEntry> Store::cache_get(const std::string& key) const {
  Stmt s(db_->db, (std::string("SELECT ") + kCacheColumns + " FROM layer_cache WHERE key = ?").c_str());
  s.bind(1, key);
  if (!s.step()) return std::nullopt;
  CacheEntry e = cache_entry_from(s);
  // A layer that gc or a damaged store lost is a miss, not an error.
  if (!e.empty && !blobs_.exists(e.blob.digest)) return std::nullopt;
  if (!e.state.digest.empty() && !blobs_.exists(e.state.digest)) return std::nullopt;
  return e;
}

void Store::cache_put(const CacheEntry& e, const std::string& slot) {
  Transaction tx(db_->db);
  Stmt s(db_->db,
         (std::string("INSERT OR REPLACE INTO layer_cache(") + kCacheColumns + ") VALUES(?,?,?,?,?,?,?,?,?,?,?,?)")
             .c_str());
  s.bind(1, e.key).bind(2, e.material).bind(3, int64_t{e.empty ? 1 : 0}).bind(4, e.blob.media_type);
  s.bind(5, e.blob.digest).bind(6, static_cast<int64_t>(e.blob.size)).bind(7, e.diff_id).bind(8, e.created_by);
  s.bind(9, e.created.empty() ? now_rfc3339() : e.created);
  s.bind(10, e.state.media_type).bind(11, e.state.digest).bind(12, static_cast<int64_t>(e.state.size));
  s.run();
  if (!slot.empty()) {
    Stmt sl(db_->db, "INSERT OR REPLACE INTO layer_cache_slots(slot, key) VALUES(?,?)");
    sl.bind(1, slot).bind(2, e.key);
    sl.run();
  }
  tx.commit();
}

std::optional<CacheEntry> Store::cache_last_in_slot(const std::string& slot) const {
  Stmt s(db_->db, (std::string("SELECT c.key, c.material, c.empty, c.media_type, c.digest, c.size, c.diff_id, "
                               "c.created_by, c.created, c.state_media_type, c.state_digest, c.state_size FROM "
                               "layer_cache_slots sl JOIN layer_cache c ON c.key = sl.key WHERE sl.slot = ?"))
                      .c_str());
  s.bind(1, slot);
  if (!s.step()) return std::nullopt;
  return cache_entry_from(s);
}

size_t Store::cache_size() const {
  Stmt s(db_->db, "SELECT COUNT(*) FROM layer_cache");
  s.step();
  return static_cast<size_t>(s.integer(0));
}

}  // namespace imgbake::store

namespace imgbake::store {

std::optional<CacheEntry> cache_find(Store& store, CacheRemote* remote, const std::string& key,
                                     const std::string& slot) {
  std::optional<CacheEntry> e = store.cache_get(key);
  if (!e && remote) e = remote->fetch(store, key, slot);
  if (e && remote) remote->note(*e);
  return e;
}

void cache_record(Store& store, CacheRemote* remote, const CacheEntry& entry, const std::string& slot) {
  store.cache_put(entry, slot);
  if (remote) remote->note(entry);
}

}  // namespace imgbake::store
