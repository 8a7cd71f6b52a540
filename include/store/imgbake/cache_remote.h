// A build cache kept somewhere else than the store (a registry: `imgbake build --cache-from` and
// `--cache-to`, docs/build-cache.md). The builders that cache steps (rootfs, qemu) look a key up
// in their store first, then here; what they make or use is noted, and exported when the build
// ends.
#pragma once

#include <optional>
#include <string>

#include "imgbake/store.h"

namespace imgbake::store {

class CacheRemote {
 public:
  virtual ~CacheRemote() = default;
  // The entry for `key` from elsewhere: its blobs are brought into `store`, each checked against
  // its digest, and it is recorded in the store's cache under `slot`. nullopt when no source has
  // it, or when what a source has is not usable (said as a warning; the step then runs).
  virtual std::optional<CacheEntry> fetch(Store& store, const std::string& key, const std::string& slot) = 0;
  // The build made or used `entry`: exported when the build ends (a remote that exports nothing
  // ignores it).
  virtual void note(const CacheEntry& entry) = 0;
};

// The entry for `key`: the store's, else `remote`'s (nullptr: no remote). A hit is noted.
std::optional<CacheEntry> cache_find(Store& store, CacheRemote* remote, const std::string& key,
                                     const std::string& slot);
// store.cache_put(entry, slot), and noted for export.
void cache_record(Store& store, CacheRemote* remote, const CacheEntry& entry, const std::string& slot);

}  // namespace imgbake::store
