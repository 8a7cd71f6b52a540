// Signed records of what happened to an image in a registry: promotions, rollbacks and
// revocations, each a referrer artifact of the image manifest (subject = the image) holding a
// DSSE envelope (the provenance's key and code) around an in-toto statement. The records of one
// repository+channel form a chain (each names the previous one), so history and rollback are
// read from the registry itself and a record signed by an untrusted key is never acted upon.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "imgbake/oci_client.h"
#include "imgbake/provenance.h"
#include "imgbake/store.h"

namespace imgbake::registry {

// The artifactType of a record's referrer manifest (next to oci::kProvenanceArtifactType).
inline constexpr const char* kRecordArtifactType = "application/vnd.imgbake.record.v1+json";
// The in-toto predicateType of a record's statement.
inline constexpr const char* kRecordPredicateType = "https://imgbake.dev/record/v1";
// Set as imported_from on the records `imgbake push` makes of the local audit log.
inline constexpr const char* kImportedFromLocalStore = "local store";

struct Record {
  std::string action;       // promote | rollback | revoke
  std::string repository;   // REGISTRY/REPO whose channel (tag) moved
  std::string channel;      // the tag; empty for revoke
  std::string from_digest;  // what the channel held before, may be empty
  std::string to_digest;    // the image the record is about (the statement's subject)
  std::string reason;
  std::string who;   // USER@HOST
  std::string time;  // RFC 3339 UTC, milliseconds for records made here
  // The digest of the previous trusted record of the same repository+channel ("" for the first).
  std::string previous;
  // kImportedFromLocalStore (and the local entry's hash in local_hash) for records made of a
  // local audit entry by push; such records are shown by history and ignored by rollback.
  std::string imported_from;
  std::string local_name;  // imported: the image name in the local store
  std::string local_hash;  // imported: the audit entry's hash in the local store
};

// The in-toto Statement v1 of a record (subject: the image digest).
nlohmann::json record_statement(const Record& record);
// The DSSE envelope of the statement, signed as provenance is.
nlohmann::json sign_record(const Record& record, const provenance::SigningKey& key);

// A record read from a registry and what checking it found.
struct CheckedRecord {
  Record record;
  std::string digest;   // the record's referrer manifest
  std::string subject;  // the image manifest it is attached to
  bool verified = false;
  std::string problem;  // why it is not trusted (empty when verified)
  std::string keyid;    // of the signature that verified
};

// Checks an envelope found as a referrer of `subject`: a signature by one of `keys`, an in-toto
// statement of a record whose subject and to_digest are `subject`. The record's fields are
// filled whenever the payload decodes, also when the check fails (history shows them flagged).
CheckedRecord check_record(const nlohmann::json& envelope, const std::string& subject,
                           const std::vector<provenance::VerifyingKey>& keys);

// Pushes the envelope as a referrer of `subject` (the image manifest's descriptor): the envelope
// blob, the empty config, the referrer manifest, and the referrers tag schema index when the
// registry has no referrers API. Returns the record's digest. Pushing the same record again
// changes nothing.
std::string push_record(Client& client, const std::string& repo, const oci::Descriptor& subject,
                        const nlohmann::json& envelope, const CancelToken& cancel);

// The records attached to one image, checked, oldest first.
std::vector<CheckedRecord> image_records(Client& client, const std::string& repo, const std::string& digest,
                                         const std::vector<provenance::VerifyingKey>& keys, const CancelToken& cancel);
// Every record attached to an image of the repository (the images its tags name, and the
// subjects of its referrers tag schema tags), checked, oldest first.
std::vector<CheckedRecord> repository_records(Client& client, const std::string& repo,
                                              const std::vector<provenance::VerifyingKey>& keys,
                                              const CancelToken& cancel);
// Sorts oldest first by time (the chain decides between records of the same instant).
void sort_records(std::vector<CheckedRecord>& records);

// The trusted revocation of an image, if any (the newest).
std::optional<CheckedRecord> find_revocation(const std::vector<CheckedRecord>& records);

// What the channel should point back at: replays the trusted, non-imported promote and
// rollback records of `repository`+`channel` (a promotion pushes, a rollback pops) and returns
// the digest before the latest promotion. Throws BuildError saying why there is none.
std::string rollback_target(const std::vector<CheckedRecord>& records, const std::string& repository,
                            const std::string& channel);
// The digest of the newest trusted record of repository+channel ("" when there is none): the
// `previous` of the next record.
std::string chain_head(const std::vector<CheckedRecord>& records, const std::string& repository,
                       const std::string& channel);

// Who and with which key records are made.
struct RecordAuthor {
  const provenance::SigningKey* key = nullptr;
  std::string who;                   // USER@HOST
  std::function<std::string()> now;  // RFC 3339 UTC; default: now_rfc3339_ms
};
std::string now_rfc3339_ms();

struct ChannelMove {
  std::string repository;  // REGISTRY/REPO
  std::string channel;
  std::string from_digest;  // may be empty
  std::string to_digest;
  std::string record_digest;
  bool already = false;  // revoke: a trusted revocation was there already (record_digest is it)
};

// promote: moves tag `channel` of ref's repository to the image ref names (tag or digest) with
// the manifest bytes unchanged, then pushes the signed promotion record. Refuses an image with
// a trusted revocation record and a channel that already holds the image.
ChannelMove promote_remote(Client& client, const Reference& image, const std::string& channel,
                           const std::string& reason, const RecordAuthor& author,
                           const std::vector<provenance::VerifyingKey>& keys, const CancelToken& cancel);
// rollback: points `channel` back at the digest it held before its latest promotion (from the
// trusted records) and pushes a rollback record. Refuses a revoked target.
ChannelMove rollback_remote(Client& client, const Reference& repository, const std::string& channel,
                            const std::string& reason, const RecordAuthor& author,
                            const std::vector<provenance::VerifyingKey>& keys, const CancelToken& cancel);
// revoke: pushes a revocation record for the image ref names. Returns the record's digest.
ChannelMove revoke_remote(Client& client, const Reference& image, const std::string& reason, const RecordAuthor& author,
                          const std::vector<provenance::VerifyingKey>& keys, const CancelToken& cancel);

// push: the records made of the image's local audit entries (promote, rollback and revoke
// entries whose target is the image), signed now and marked imported from the local store.
// Deterministic: a re-push makes the same records. Returns their digests.
std::vector<std::string> push_local_records(const store::Store& st, const store::ImageRecord& img, Client& client,
                                            const Reference& dest, const provenance::SigningKey& key,
                                            const CancelToken& cancel);

// verify on a registry: the provenance referrer of the image, its signature with `keys`, its
// statement's subjects against the manifest and its blobs (which must be in the repository).
struct RemoteVerification {
  bool ok = false;
  std::vector<std::string> problems;
  std::string manifest_digest;
  std::string referrer_digest;
  std::string keyid;
  nlohmann::json statement;  // when the envelope decodes
};
RemoteVerification verify_remote(Client& client, const Reference& image,
                                 const std::vector<provenance::VerifyingKey>& keys, const CancelToken& cancel);

// Whether a command-line reference names a registry (REGISTRY/REPO…: the first part has a dot
// or a port, or is localhost) rather than an image of the local store (NAME[:VERSION]).
bool names_registry(std::string_view ref);

}  // namespace imgbake::registry
