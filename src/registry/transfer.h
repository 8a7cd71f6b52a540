// Moving images between the local store and registries: push (image, its blobs, its
// provenance referrer), pull (into the store, digests checked as they stream), copy
// (registry to registry by digest, mounting blobs when both are on one registry).
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "imgbake/cancel.h"
#include "imgbake/oci_client.h"
#include "imgbake/store.h"

namespace imgbake::registry {

using TransferLog = std::function<void(std::string_view)>;

struct TransferReport {
  std::string manifest_digest;
  std::vector<std::string> tags;
  size_t blobs_sent = 0;     // uploaded (or downloaded, for pull)
  size_t blobs_skipped = 0;  // already there
  size_t blobs_mounted = 0;  // cross-repository mounts
  uint64_t blob_bytes = 0;   // blob bytes moved
  std::string referrer_digest;
  bool referrers_tag_schema = false;  // the registry has no referrers API: the fallback tag was written
  std::string local_ref;              // pull: NAME:VERSION in the store
};

// The tag under which the referrers tag schema keeps the index of `digest`'s referrers.
std::string referrers_tag(const std::string& digest);

// Pushes `img` to dest (its tag, else the image's version, plus `extra_tags`).
TransferReport push_image(store::Store& st, const store::ImageRecord& img, Client& client, const Reference& dest,
                          const std::vector<std::string>& extra_tags, const TransferLog& log,
                          const CancelToken& cancel);

// Pulls src (tag or digest) into the store as `name` (default: the image's own name, else the
// repository's last component) and `version` (default: the image's own version).
TransferReport pull_image(store::Store& st, Client& client, const Reference& src, const std::string& name,
                          const std::string& version, const TransferLog& log, const CancelToken& cancel);

// Copies src to dest by digest (the digest never changes), with its provenance referrer.
TransferReport copy_image(Client& from, const Reference& src, Client& to, const Reference& dest,
                          const std::string& staging_dir, const TransferLog& log, const CancelToken& cancel);

}  // namespace imgbake::registry
