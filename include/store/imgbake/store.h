// The local image store: a plain OCI image layout (oci-layout, index.json,
// blobs/sha256) that skopeo/umoci read, plus a SQLite catalog (WAL) of images,
// versions, labels, channels, revocations and a hash-chained audit log.
//
// The catalog is the source of truth; index.json is a view derived from it and
// rewritten (atomically) after every change, and on open when a crash left it behind.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "imgbake/artifact.h"
#include "imgbake/oci.h"

namespace imgbake::provenance {
class VerifyingKey;
}

namespace imgbake::store {

using oci::Descriptor;

class BlobStore {
 public:
  explicit BlobStore(std::filesystem::path root);

  Descriptor put_bytes(std::string_view data, std::string media_type);
  // Reads the file once, hashing while it is copied (or reflinked) into a temp blob;
  // fsync; rename into place. An existing blob with the same digest is kept.
  Descriptor put_file(const std::filesystem::path& src, std::string media_type);
  std::filesystem::path path(const std::string& digest) const;
  bool exists(const std::string& digest) const;
  std::string read(const std::string& digest) const;  // small blobs (manifests, envelopes)
  // Recomputes the digest. Returns "" when fine, else what is wrong.
  std::string check(const std::string& digest) const;
  // Throws StoreError unless the blob is a regular file (not a link, FIFO or device): before
  // its path goes to a reader that would follow or wait on it.
  void check_regular(const std::string& digest) const;
  std::vector<std::string> list() const;  // "sha256:…" of every blob
  // Files that are not blobs: temp files of interrupted writes.
  std::vector<std::filesystem::path> leftovers() const;
  void remove(const std::string& digest);
  const std::filesystem::path& root() const { return root_; }
  std::filesystem::path temp_dir() const;
  // Moves a file the caller wrote under temp_dir() (and hashed while writing) into place as
  // blob `digest`: fsync, read-only, rename. No second read. An existing blob is kept and the
  // file removed.
  Descriptor adopt(const std::filesystem::path& temp_file, const std::string& digest, uint64_t size,
                   std::string media_type);

 private:
  std::filesystem::path root_;  // the layout's root (blobs/sha256 below it)
};

// Writes one blob from a stream (a pull): hashes while writing a temp file in the store's
// tmp/; commit() fsyncs it and renames it into place when the digest and size are the ones
// expected. The destructor removes an uncommitted temp file; the file is also registered
// so that a second Ctrl-C (which exits at once) does not leave it behind.
class BlobWriter {
 public:
  explicit BlobWriter(BlobStore& blobs);
  ~BlobWriter();
  BlobWriter(const BlobWriter&) = delete;
  BlobWriter& operator=(const BlobWriter&) = delete;

  void write(const char* data, size_t n);
  uint64_t bytes_written() const;
  // Throws StoreError when the content's digest or size is not `expected_digest`/`expected_size`
  // (the temp file is removed then). An existing blob with that digest is kept as it is.
  Descriptor commit(const std::string& expected_digest, uint64_t expected_size, std::string media_type);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

struct ImageRecord {
  int64_t id = 0;
  std::string name;
  std::string version;
  std::string manifest_digest;
  uint64_t manifest_size = 0;
  std::string created;  // RFC 3339 UTC
  std::string builder_type;
  std::string template_digest;
  std::string git_commit;
  std::string parent;             // base digest or store ref, may be empty
  std::string provenance_digest;  // the DSSE envelope blob
  std::string referrer_digest;    // the provenance referrer manifest
  uint64_t referrer_size = 0;
  bool revoked = false;
  std::string revoked_reason;
  std::map<std::string, std::string> labels;
  std::vector<std::string> channels;  // channels that point here now
  bool unchanged = false;             // commit(): the same content was already this version
  // commit(): channels of the request that were not moved because their policy demands a passing
  // test the new image cannot have yet.
  std::vector<std::string> held_channels;

  std::string ref() const { return name + ":" + version; }
};

struct AuditEntry {
  int64_t seq = 0;
  std::string time;
  std::string who;     // user@host
  std::string action;  // commit, pull, label, promote, rollback, revoke, protect, remove, test, policy
  std::string name;
  std::string channel;
  std::string from_ref;
  std::string to_ref;
  std::string reason;
  std::string detail;  // JSON with action-specific facts
  std::string prev_hash;
  std::string hash;
  // {"keyid": "sha256:…", "sig": base64}: an Ed25519 signature of the hash by the key of the user
  // who wrote the entry ($IMGBAKE_SIGNING_KEY, else the default key). Not part of the hash.
  std::string signature;
};

// The artifact type of a test-result referrer: an image's signed in-toto test-result statement
// (a DSSE envelope, its one layer), which `imgbake test` records next to the provenance.
inline constexpr const char* kTestResultArtifactType = "application/vnd.imgbake.test-result.v1+json";
inline constexpr const char* kTestResultPredicateType = "https://in-toto.io/attestation/test-result/v0.1";

// One recorded test run of an image (imgbake test).
struct TestRun {
  int64_t id = 0;
  std::string suite;
  bool passed = false;
  std::vector<std::string> failed;  // the names of the checks that failed
  std::string time;                 // RFC 3339 UTC, when it was recorded
  std::string envelope_digest;      // the signed statement (DSSE envelope blob)
  std::string referrer_digest;      // the referrer manifest whose subject is the image
  uint64_t referrer_size = 0;
};
struct TestRunRequest {
  std::string suite;
  bool passed = false;
  std::vector<std::string> failed;
  nlohmann::json envelope;  // the signed statement (imagetest's test_result_statement, signed)
  // A pull: the referrer manifest as the registry holds it (its subject must be the image and its
  // one layer the envelope), kept byte for byte; empty: record_test makes one.
  std::string referrer_manifest_bytes;
};
// A channel's policy: promoting into it needs a passing, trusted test result of every suite.
// `name` "" means the channel of that name of every image.
struct ChannelPolicy {
  std::string name;
  std::string channel;
  std::vector<std::string> require_tests;
};

struct ChannelRecord {
  std::string name;
  std::string channel;
  std::string version;
  bool is_protected = false;
};

// A container image whose layers are already blobs (the rootfs builder writes them while
// it builds): committed as a plain OCI image (no artifactType), with the config the
// builder describes. Nothing in it depends on the version or on the time of the commit,
// so the same inputs give the same manifest digest.
using OciImage = oci::Image;

// What a cached step left, kept under the step's content key: a layer the rootfs builder made,
// or a checkpoint of the qemu builder (`blob` the disk's qcow2 overlay for the step, `state` the
// VM's saved state to resume after it; no `state` for the disk after shutdown or the base disk).
struct CacheEntry {
  std::string key;       // sha256 hex of the step's key material chained with the previous key
  std::string material;  // the key's preimage (canonical JSON), for --explain-cache
  bool empty = false;    // the step changed nothing: no layer
  Descriptor blob;
  std::string diff_id;
  std::string created_by;  // the history line
  std::string created;     // when the entry was made
  Descriptor state;        // qemu: the VM's saved state (migration stream); empty digest when none
};

// What a build hands to the store.
struct CommitRequest {
  std::string name;
  std::optional<std::string> version;  // auto-numbered when absent
  std::map<std::string, std::string> labels;
  std::string builder_type;
  std::vector<ArtifactFile> files;
  std::string template_digest;
  std::string git_commit;
  std::string parent;
  std::vector<std::string> channels;  // promote to these after the commit
  bool signature_trusted = false;     // the signing key is one the store trusts (protected channels)
  // Adds build-info.json (name, version, template digest, git commit, build time, parent)
  // to the image's files. Builders with a machine also upload it into the machine.
  bool embed_build_info = true;
  // Builds the provenance envelope (JSON) once the version and digests are known.
  std::function<nlohmann::json(const std::string& version, const std::string& manifest_digest,
                               const std::vector<Descriptor>& layers)>
      make_provenance;
  // Set by image builders (rootfs): the image is this OCI image, `files` is ignored, and
  // build-info.json is not added (it would change the digest of every build).
  std::optional<OciImage> oci;
};

// A pulled image to catalogue (Store::import_image). Every blob both manifests name must
// already be in the store (BlobWriter); the manifests themselves are written by the import.
struct ImportRequest {
  std::string name;                     // the local image name
  std::optional<std::string> version;   // default: the version the image says it is (its
                                        // org.opencontainers.image.version / build-info), else auto
  std::string manifest_bytes;           // the image manifest exactly as pulled
  std::string referrer_manifest_bytes;  // the provenance referrer manifest, may be empty
  std::string source;                   // where it came from, e.g. "127.0.0.1:5000/team/app@sha256:…"
  // Why the provenance's signature is not trusted, when the user imported it anyway
  // (--allow-untrusted): recorded in the pull's audit entry.
  std::string untrusted_signature;
};

// One manifest of an image (Store::referenced_blobs): the image manifest or one of its referrers,
// with the blobs it names.
struct ManifestBlobs {
  std::string role;     // "the image manifest", "the provenance referrer"
  Descriptor manifest;  // the manifest blob itself
  // Why the manifest could not be read or is not an OCI image manifest, naming the image, the
  // manifest and the cause ("web:3: the provenance referrer sha256:… is not JSON: …"); then config
  // and layers are empty. "" when it was read.
  std::string problem;
  Descriptor config;
  std::vector<Descriptor> layers;
};

// Every blob an image needs: its manifest, config and layers, and each referrer the store holds
// for it (the provenance today; test results or signatures would be more) with that referrer's
// manifest, config and every layer. The one walk that gc keeps, store check hashes, a push
// uploads (blobs_of) and revoke --descendants finds children by.
struct ReferencedBlobs {
  std::vector<ManifestBlobs> manifests;  // the image manifest first, then its referrers
  std::string envelope_digest;           // the DSSE envelope the catalog names (a referrer's layer too)
  // Every digest, once, in walk order. A manifest that could not be read adds only itself.
  std::vector<std::string> digests() const;
  // The problem of each manifest that could not be read; empty when the walk is complete.
  std::vector<std::string> problems() const;
};

struct CheckReport {
  std::vector<std::string> problems;  // each one exact: what, where
  std::vector<std::string> notes;     // harmless findings (orphan blobs gc would remove)
  size_t images = 0;
  size_t blobs_checked = 0;
  size_t audit_entries = 0;
  std::vector<std::string> trusted;  // the trust anchors used, "sha256:… (FILE)"
  // The last audit entry this user saw (the witness kept in their config directory), as
  // "entry N (sha256:…)", or "" when they had none; a clean check moves it to the log's end.
  std::string witness;
  bool ok() const { return problems.empty(); }
};

struct GcReport {
  size_t removed = 0;       // unreferenced blobs
  size_t temp_removed = 0;  // temp files and directories of interrupted writes and builds
  uint64_t bytes = 0;
  size_t kept = 0;
  size_t cache_forgotten = 0;  // cache entries dropped by prune_cache
  // Another process had the store open (a build, pull, push, export…): its temp files and the
  // blobs it wrote but has not committed yet look like leftovers, so gc removed neither.
  bool busy = false;
  size_t left = 0;  // unreferenced blobs and temp entries left because of that, or of `problems`
  // Manifests of images (or of their referrers) that could not be read, each naming the image, the
  // manifest and the cause. The blobs only such a manifest names look unreferenced, so then gc
  // removed no blob (they are counted in `left`); store check reports the same.
  std::vector<std::string> problems;
  // What gc could not do or read, each naming the file and the cause: a size it could not read
  // (the entry was removed, its bytes are not counted), an entry it could not remove (not counted).
  std::vector<std::string> warnings;
};

struct RevokeReport {
  std::vector<std::string> revoked;  // NAME:VERSION of each image revoked now
  // With descendants: images whose manifest could not be read, each naming the image and the cause.
  // An image built on one of their files (its parent is a layer's digest) cannot be found, so it
  // may not be revoked.
  std::vector<std::string> problems;
};

// What a build needs from the store to commit its image, and nothing more (ninja's
// DiskInterface pattern): the build executor (src/pipeline/build.cpp) depends on this narrow
// interface only, `Store` implements it, and the pipeline's unit tests fake it.
class ImageSink {
 public:
  virtual ~ImageSink() = default;
  // Where the store lives (the build names it when it says what it committed).
  virtual const std::filesystem::path& home() const = 0;
  // Whether signatures by the key `keyid` ("sha256:…") are trusted here (see trusted_keys in
  // publish.h): a protected channel takes only a commit whose provenance such a key signed.
  virtual bool trusts(const std::string& keyid) const = 0;
  // Commits the image described by `req` as NAME:VERSION (Store::commit).
  virtual ImageRecord commit(const CommitRequest& req) = 0;
};

class Store : public ImageSink {
 public:
  // $IMGBAKE_HOME, else $XDG_DATA_HOME/imgbake, else ~/.local/share/imgbake.
  static std::filesystem::path default_home();

  // Opens (creating when missing) the store at `home`, and brings index.json in line
  // with the catalog if an interrupted change left it behind.
  explicit Store(std::filesystem::path home);
  ~Store() override;
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  const std::filesystem::path& home() const override { return home_; }
  // A key of trusted_keys(*this) (publish.h) has this keyid.
  bool trusts(const std::string& keyid) const override;
  BlobStore& blobs() { return blobs_; }
  const BlobStore& blobs() const { return blobs_; }

  ImageRecord commit(const CommitRequest& req) override;
  // Catalogues a pulled image as NAME:VERSION with the manifest digest it was pulled with
  // (the bytes are stored as they are, never re-serialized). Builder type, template digest,
  // git commit, parent and labels come from the image's own manifest annotations, config and
  // build-info.json when it has them; an image imgbake did not build is accepted too. Checks
  // that every blob of both manifests is stored; records the provenance referrer and an audit
  // entry "pull" with the source. The same digest imported again under the same name returns
  // the existing record; a version that exists with another digest is a StoreError.
  ImageRecord import_image(const ImportRequest& req);

  // REF = name (latest version), name:version, name:channel, name@sha256:…
  ImageRecord resolve(const std::string& ref) const;
  // An image a new build starts from (its parent): refuses a revoked one.
  ImageRecord resolve_parent(const std::string& ref) const;
  std::vector<ImageRecord> images(const std::string& name = "") const;
  std::vector<ChannelRecord> channels(const std::string& name) const;

  void label(const std::string& ref, const std::map<std::string, std::string>& labels);
  // Moves channel C of the image's name to it. `signature_ok` tells whether its
  // provenance verifies; a protected channel refuses an image without it. A channel whose policy
  // requires test suites refuses an image without a passing result of each, signed by one of
  // `*keys` (gate_problem; no keys: refused).
  void promote(const std::string& ref, const std::string& channel, const std::string& reason, bool signature_ok,
               bool protect = false, const std::vector<provenance::VerifyingKey>* keys = nullptr);
  // Test evidence (test_runs.cpp): records a signed test result as a referrer of the image, with
  // an audit entry (once: the same envelope again returns the run recorded before); the image's
  // runs, newest last.
  TestRun record_test(const ImageRecord& img, const TestRunRequest& req);
  std::vector<TestRun> test_runs(const ImageRecord& img) const;
  // Why `run` is not trustworthy evidence about `img`: its envelope does not verify with `keys`,
  // its statement is not a test result about this image's digest, or says something else than
  // the catalog (suite, result). "" when it is.
  std::string test_run_problem(const ImageRecord& img, const TestRun& run,
                               const std::vector<provenance::VerifyingKey>& keys) const;
  // Why `img` may not enter `channel` under its policy ("" when it may, or there is no policy).
  std::string gate_problem(const ImageRecord& img, const std::string& channel,
                           const std::vector<provenance::VerifyingKey>& keys) const;
  // Channel policies: sets (replaces) the suites a channel requires; empty clears the policy.
  void set_policy(const std::string& name, const std::string& channel, const std::vector<std::string>& require_tests,
                  const std::string& reason);
  std::vector<ChannelPolicy> policies() const;
  // The suites `name`'s `channel` requires (its own policy and the one for every name).
  std::vector<std::string> required_tests(const std::string& name, const std::string& channel) const;
  // Points the channel back at the image it held before its current one (its own history:
  // never an image it did not hold; refused when it held only one). A protected channel only
  // goes back to an image it accepted while protected and for which `signature_ok` holds.
  ImageRecord rollback(const std::string& name, const std::string& channel, const std::string& reason,
                       const std::function<bool(const ImageRecord&)>& signature_ok = nullptr);
  std::vector<AuditEntry> history(const std::string& name, const std::string& channel = "") const;
  // Revokes the image (and with `descendants`, every image whose parent chain leads to it). Every
  // image that can be found is revoked, even when a manifest on the way cannot be read: that is
  // reported in RevokeReport::problems, not thrown, so damage never holds a revocation back.
  RevokeReport revoke(const std::string& ref, const std::string& reason, bool descendants);
  // Deletes a version from the catalog (its blobs stay until gc), with an audit entry; refused
  // while a channel points at it. Its version number is never given to another image.
  ImageRecord remove(const std::string& ref, const std::string& reason);

  // The catalog's integrity; the audit log: its hash chain, each entry's signature by a trust anchor
  // (publish.h), its end against the witness this user keeps outside the store (truncation, an older
  // catalog restored), and the state it replays to (images, revocations, labels, channels) against
  // the catalog's; every blob; each image's provenance with `verify_signature`. A clean check moves
  // the witness to the log's end.
  CheckReport check(const std::function<std::string(const ImageRecord&)>& verify_signature) const;
  // What the audit log says about one image that the catalog contradicts (revoked in the log but not
  // in the catalog, labels, manifest, provenance), and entries about it whose hash or signature fails
  // (signatures checked with `keys`, the keys verify trusts).
  std::vector<std::string> audit_problems(const ImageRecord& img,
                                          const std::vector<provenance::VerifyingKey>& keys) const;
  // Unreferenced blobs go; layers of the build cache are kept unless `prune_cache`, which
  // first forgets every cache entry.
  GcReport gc(bool prune_cache = false);

  // The build cache (rootfs builder layers by step key). `slot` names a step of a build
  // ("BUILD#N") so that a miss can be explained against the key that slot had last time.
  std::optional<CacheEntry> cache_get(const std::string& key) const;
  void cache_put(const CacheEntry& entry, const std::string& slot);
  std::optional<CacheEntry> cache_last_in_slot(const std::string& slot) const;
  size_t cache_size() const;

  // The manifest JSON of an image.
  nlohmann::json manifest(const ImageRecord& img) const;
  // The blobs the image needs (see ReferencedBlobs). Never throws for a damaged image: a manifest
  // that cannot be read is named in its ManifestBlobs::problem.
  ReferencedBlobs referenced_blobs(const ImageRecord& img) const;
  // What a push uploads besides the image manifest itself (referenced_blobs, in upload order): the
  // config, the layers (with their annotations), then, when the image has provenance, the
  // referrer's config and every layer (the DSSE envelope and any other) and last the referrer
  // manifest (media type oci::kManifestMediaType: PUT it as a manifest, after the image manifest
  // it names as subject). Every descriptor's file is blobs().path(digest). Throws StoreError
  // naming the first manifest that cannot be read.
  std::vector<Descriptor> blobs_of(const ImageRecord& img) const;

 private:
  struct Catalog;
  std::filesystem::path home_;
  // .users.lock, held shared while this Store is open; gc cleans up only when it can take it
  // exclusively, i.e. when no other process is writing temp files or uncommitted blobs.
  int users_fd_ = -1;
  BlobStore blobs_;
  std::unique_ptr<Catalog> db_;

  void sync_index() const;
  // The index.json the catalog gives.
  nlohmann::ordered_json derived_index() const;
  // Why an index.json on disk cannot be a copy of the catalog's that an interrupted command
  // left behind (entries missing, a channel at an earlier image), or "" when it can.
  std::string index_edit(const std::string& on_disk) const;
  std::string who() const;
};

class StoreError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace imgbake::store
