// Moving images between the local store and registries: push (image, its blobs, its
// provenance referrer, its local audit records), pull (into the store, digests checked as they
// stream), copy (registry to registry by digest: blobs mounted when both are on one registry,
// else streamed through memory). Pull and copy refuse an image with a trusted revocation record.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "imgbake/cancel.h"
#include "imgbake/oci_client.h"
#include "imgbake/provenance.h"
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
  bool referrers_tag_schema = false;        // the registry has no referrers API: the fallback tag was written
  std::string local_ref;                    // pull: NAME:VERSION in the store
  size_t blobs_staged = 0;                  // copy: blobs that went through a temp file (too big for memory)
  std::vector<std::string> record_digests;  // push: the records made of the local audit log
  std::string revocation;                   // pull/copy --allow-revoked: the revocation record let through
  size_t test_results = 0;                  // pull: signed test results recorded with the image
};

// What pull and copy need to judge revocation records.
struct RevocationPolicy {
  const std::vector<provenance::VerifyingKey>* keys = nullptr;  // the trusted keys
  bool allow_revoked = false;  // --allow-revoked: go on (a pulled image is revoked locally too)
  // --allow-untrusted: import an image whose provenance is not signed by a trusted key (the
  // pull's audit entry says so); without it such a pull imports nothing.
  bool allow_untrusted = false;
};

// Blobs up to this size are copied through memory; larger ones stream from the source registry
// to the destination (a temp file only when that stream fails and the upload has to resume).
inline constexpr uint64_t kCopyMemoryLimit = 16ull << 20;

// The tag under which the referrers tag schema keeps the index of `digest`'s referrers.
std::string referrers_tag(const std::string& digest);

// PUTs a referrer manifest (its blobs must be there) and, when the registry has no referrers
// API, adds it to the referrers tag schema index of `subject`. Returns whether the tag was used.
bool put_referrer(Client& client, const std::string& repo, const std::string& subject,
                  const std::string& referrer_bytes, const std::string& referrer_digest);

// Pushes `img` to dest (its tag, else the image's version, plus `extra_tags`), its provenance
// and, signed with `record_key` when given, the records of its local promotions, rollbacks
// and revocations. A tag that already points at another manifest is refused (BuildError naming
// both digests, before anything is uploaded) unless `replace_tags`: version tags are immutable,
// and channel tags move through promote/rollback.
TransferReport push_image(store::Store& st, const store::ImageRecord& img, Client& client, const Reference& dest,
                          const std::vector<std::string>& extra_tags, bool replace_tags,
                          const provenance::SigningKey* record_key, const TransferLog& log, const CancelToken& cancel);

// Pulls src (tag or digest) into the store as `name` (default: the image's own name, else the
// repository's last component) and `version` (default: the image's own version).
// Refuses (BuildError naming the reason and the record) an image with a trusted revocation
// record unless policy.allow_revoked; then the local image is revoked too.
TransferReport pull_image(store::Store& st, Client& client, const Reference& src, const std::string& name,
                          const std::string& version, const RevocationPolicy& policy, const TransferLog& log,
                          const CancelToken& cancel);

// Copies src to dest by digest (the digest never changes), with its referrers (provenance,
// records). On one registry each blob is mounted first; otherwise blobs up to kCopyMemoryLimit
// go through memory and larger ones stream download-to-upload; `staging_dir` is used only when
// such a stream breaks (the retry goes through a temp file, which the client can resume from).
// Refuses a revoked image as pull does.
TransferReport copy_image(Client& from, const Reference& src, Client& to, const Reference& dest,
                          const std::string& staging_dir, const RevocationPolicy& policy, const TransferLog& log,
                          const CancelToken& cancel);

}  // namespace imgbake::registry
