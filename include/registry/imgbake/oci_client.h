// A client for OCI distribution registries (Harbor, ECR, GHCR, Artifactory, the distribution
// registry) on libcurl: blobs (HEAD, cross-repository mount, monolithic PUT, chunked PATCH with
// resume), manifests, tags, and referrers (OCI 1.1 API or the referrers tag schema); anonymous,
// basic and bearer-token auth; bounded retries. Credentials and tokens never reach a log.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "imgbake/cancel.h"
#include "imgbake/error.h"
#include "imgbake/oci.h"

namespace imgbake::registry {

// registry/repository[:tag][@digest], as docker and skopeo spell it ("docker://" is accepted).
struct Reference {
  std::string registry;    // "127.0.0.1:5000", "ghcr.io"; Docker Hub is "registry-1.docker.io"
  std::string repository;  // "team/app" (a one-part Docker Hub name gets "library/")
  std::string tag;         // may be empty
  std::string digest;      // "sha256:…", may be empty
  // Throws UsageError saying what is wrong.
  static Reference parse(const std::string& text);
  std::string str() const;
};

struct Credentials {
  std::string username;
  std::string password;        // or a token used as password
  std::string identity_token;  // docker's "identitytoken" (OAuth2 refresh token)
};

// Credentials for a registry host, looked up as docker does: $DOCKER_CONFIG/config.json (else
// ~/.docker/config.json): credHelpers[host], then credsStore (both via `docker-credential-NAME
// get`), then auths[host] ("auth" base64 user:password, or username/password, identitytoken);
// then imgbake's own file written by `imgbake login` ($IMGBAKE_CONFIG_HOME/auth.json, the same
// format). nullopt: anonymous.
std::optional<Credentials> find_credentials(const std::string& registry);
// What `imgbake login` stores (mode 0600, written atomically).
void store_credentials(const std::string& registry, const Credentials& c);
// What `imgbake logout` removes: the registry's entry in imgbake's own file (written atomically).
// Returns false when there was none. Docker's config.json is never changed.
bool remove_credentials(const std::string& registry);

struct ClientOptions {
  bool plain_http = false;  // --insecure-registry HOST:PORT: http:// instead of https://
  bool tls_verify = true;
  int max_retries = 4;  // 429, 5xx and dropped connections, with backoff
  // Larger blobs go up in PATCH chunks of this size (IMGBAKE_REGISTRY_CHUNK_SIZE overrides it).
  // Large: distribution saves and reloads its hash state at every chunk (2 GiB push, 8 MiB chunks:
  // 0.98x skopeo; 256 MiB: 1.29x); the body is streamed from the file either way.
  uint64_t chunk_size = 256ull << 20;
  std::function<void(std::string_view)> log;  // retries, resumes, mounts: never credentials
  // Bytes moved of each blob being uploaded or downloaded: at most about 10 calls a second per
  // blob, and always a last call with done == total when the blob is complete. Blobs that are
  // not sent (the registry has them, or they are mounted) get no calls. include/imgbake/progress.h
  // turns these calls into terminal lines or JSON events. May be called from any thread that
  // uses the Client; an exception thrown here stops the transfer.
  std::function<void(const std::string& digest, uint64_t done, uint64_t total)> progress;
};

using TransferProgress = std::function<void(uint64_t done, uint64_t total)>;

struct BlobPushResult {
  bool existed = false;  // HEAD found it: nothing sent
  bool mounted = false;  // cross-repository mount
  bool resumed = false;  // an interrupted upload was continued
  uint64_t bytes_sent = 0;
};

struct Manifest {
  std::string media_type;
  std::string bytes;   // exactly as served
  std::string digest;  // sha256 of `bytes`
};

// An error a registry answered with: its HTTP status and its own error code and message
// ("MANIFEST_UNKNOWN: manifest unknown").
class RegistryError : public BuildError {
 public:
  RegistryError(const std::string& what, int status, std::string code)
      : BuildError(what), status_(status), code_(std::move(code)) {}
  int status() const { return status_; }
  const std::string& code() const { return code_; }

 private:
  int status_;
  std::string code_;
};

using BlobReader = std::function<size_t(char* buffer, size_t capacity)>;

class Client {
 public:
  Client(std::string registry, ClientOptions options, std::optional<Credentials> credentials);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // GET /v2/: reachable and the credentials work. Throws RegistryError/BuildError otherwise.
  void ping();
  bool has_blob(const std::string& repo, const std::string& digest);
  // HEAD (skip when present), then a cross-repository mount when `mount_from` is a repository
  // of this registry that may hold it, then a monolithic PUT (size <= chunk_size) or PATCH
  // chunks; after a dropped connection the upload is resumed from the offset the registry
  // reports (GET on the upload URL, Range header). The Location header is used as returned.
  BlobPushResult push_blob(const std::string& repo, const std::string& digest, uint64_t size,
                           const std::filesystem::path& file, const std::string& mount_from,
                           const TransferProgress& progress, const CancelToken& cancel);
  BlobPushResult push_blob_bytes(const std::string& repo, const std::string& digest, std::string_view data,
                                 const CancelToken& cancel);
  // Uploads `size` bytes that `read` delivers in order (it returns how many it put in the
  // buffer, 0 when the stream failed): a registry-to-registry copy without a temp file. HEAD
  // first, as push_blob. A stream cannot be sent twice, so a dropped connection or a busy
  // answer is an error here (the caller may start the blob over), not a resume.
  BlobPushResult push_blob_stream(const std::string& repo, const std::string& digest, uint64_t size,
                                  const BlobReader& read, const CancelToken& cancel);
  // Only the cheap ways: the blob is already in `repo` (existed) or a cross-repository mount
  // from `from_repo` works (mounted). When the registry refuses the mount, the upload session
  // it opened instead is cancelled (DELETE) and neither flag is set; no byte is sent.
  BlobPushResult mount_blob(const std::string& repo, const std::string& digest, const std::string& from_repo,
                            const CancelToken& cancel);
  // Streams the blob into `sink`, checking size and digest as it arrives; throws on mismatch.
  void get_blob(const std::string& repo, const std::string& digest, uint64_t expected_size,
                const std::function<void(const char*, size_t)>& sink, const TransferProgress& progress,
                const CancelToken& cancel);
  // nullopt when the registry answers 404 (MANIFEST_UNKNOWN / NAME_UNKNOWN).
  std::optional<Manifest> get_manifest(const std::string& repo, const std::string& reference);
  // PUT with the given media type; returns the digest of `bytes` (checked against the
  // registry's Docker-Content-Digest when it sends one).
  std::string put_manifest(const std::string& repo, const std::string& reference, const std::string& media_type,
                           const std::string& bytes);
  std::vector<std::string> tags(const std::string& repo);
  // Referrers of `digest` (optionally of one artifactType): the OCI 1.1 referrers API when the
  // registry has it, else the index at the referrers tag schema tag "sha256-HEX".
  std::vector<oci::Descriptor> referrers(const std::string& repo, const std::string& digest,
                                         const std::string& artifact_type = "");
  // Whether GET /v2/REPO/referrers/DIGEST is implemented (distribution 2.8 answers 404).
  bool has_referrers_api(const std::string& repo);

  // Blob bytes sent by this client so far (a re-push of an unchanged image sends 0).
  uint64_t blob_bytes_sent() const;
  const std::string& registry() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace imgbake::registry
