// The build cache shared through a registry (`imgbake build --cache-from REF --cache-to REF`,
// docs/build-cache.md): each cache entry (a rootfs layer, a qemu checkpoint) is an OCI artifact
// tagged `cache-KEY` in one repository. Its config is the entry (key, key material, blob
// descriptors) in a DSSE envelope signed with the build's key; its layers are the entry's blobs.
// An entry is used only when a trusted key signed it, its material hashes to the key asked for,
// and every blob matches its digest: a registry, or anyone who can push to the repository,
// cannot make a build use content no trusted signer produced for that step.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "imgbake/cache_remote.h"
#include "imgbake/cancel.h"
#include "imgbake/oci_client.h"
#include "imgbake/provenance.h"

namespace imgbake::registry {

inline constexpr const char* kCacheArtifactType = "application/vnd.imgbake.cache.v1";
inline constexpr const char* kCacheEntryMediaType = "application/vnd.imgbake.cache.entry.v1+dsse+json";
inline constexpr const char* kCacheEntryPayloadType = "application/vnd.imgbake.cache.entry.v1+json";

// The tag an entry is kept under.
std::string cache_tag(const std::string& key);

// One entry as the registry holds it: the config blob (a signed envelope) and the manifest.
struct CacheArtifact {
  std::string config;
  std::string manifest;
  oci::Descriptor config_descriptor;
  std::vector<oci::Descriptor> layers;  // the entry's blobs (the empty descriptor when it has none)
};
CacheArtifact make_cache_artifact(const store::CacheEntry& entry, const provenance::SigningKey& key);

// The entry that `manifest` and `config` describe, when it is the entry for `key`: signed by one of
// `keys`, its material hashing to `key`, its blobs those the manifest lists, of the media types a
// cache entry has. Throws BuildError saying what is wrong.
store::CacheEntry read_cache_artifact(const std::string& key, const std::string& manifest, const std::string& config,
                                      const std::vector<provenance::VerifyingKey>& keys);

// A repository to read from or write to, with its client.
struct CacheRepository {
  Reference ref;  // registry and repository (a tag or digest is refused by the CLI)
  std::unique_ptr<Client> client;
};

struct CacheExportReport {
  size_t entries = 0;        // entries written
  size_t entries_there = 0;  // the registry had them already (same manifest)
  size_t blobs_sent = 0;
  uint64_t bytes_sent = 0;
  std::vector<std::string> failures;  // entries that could not be exported (warnings)
};

class RegistryCache : public store::CacheRemote {
 public:
  using Log = std::function<void(std::string_view)>;
  // `from`: looked up in order on a miss of the store. `to`: where noted entries go (export()).
  // `keys`: the keys whose signature makes an entry usable. `say`/`warn`: lines for the build's
  // view.
  RegistryCache(std::vector<CacheRepository> from, std::optional<CacheRepository> to,
                std::vector<provenance::VerifyingKey> keys, Log say, Log warn, const CancelToken& cancel);
  ~RegistryCache() override;

  std::optional<store::CacheEntry> fetch(store::Store& store, const std::string& key, const std::string& slot) override;
  void note(const store::CacheEntry& entry) override;

  bool exports() const { return to_.has_value(); }
  // Sends every noted entry (its blobs from `store`) to the `to` repository, signed with `key`. An
  // entry that fails is a warning in the report, never an error of the build.
  CacheExportReport export_noted(store::Store& store, const provenance::SigningKey& key);

  size_t fetched() const { return fetched_; }

 private:
  std::optional<store::CacheEntry> fetch_from(CacheRepository& repo, store::Store& store, const std::string& key);

  std::vector<CacheRepository> from_;
  std::optional<CacheRepository> to_;
  std::vector<provenance::VerifyingKey> keys_;
  Log say_, warn_;
  const CancelToken& cancel_;
  std::mutex mu_;
  std::set<std::string> unreachable_;  // repositories that failed once: not asked again
  std::map<std::string, store::CacheEntry> noted_;
  std::vector<std::string> order_;  // keys in the order noted
  size_t fetched_ = 0;
};

}  // namespace imgbake::registry
