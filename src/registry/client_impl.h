// What the registry client's files share (client.cpp: the API; auth.cpp: challenges, tokens,
// credentials; upload.cpp: blob uploads): the request shape, Client::Impl and small helpers.
// Private to src/registry.
#pragma once

#include <algorithm>
#include <cctype>
#include <chrono>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "imgbake/http.h"
#include "imgbake/oci_client.h"
#include "imgbake/text_encoding.h"
#include "imgbake/util.h"

namespace imgbake::registry {

namespace client_detail {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// Manifests are limited to 4 MiB by most registries; error and token answers are small.
inline constexpr size_t kMaxBufferedBody = 32u << 20;
inline constexpr int kMaxRedirects = 10;
inline constexpr auto kProgressInterval = 100ms;
inline constexpr size_t kTagPageSize = 1000;

inline constexpr const char* kOciIndexMediaType = "application/vnd.oci.image.index.v1+json";
inline constexpr const char* kManifestAccept =
    "Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, "
    "application/vnd.docker.distribution.manifest.v2+json, "
    "application/vnd.docker.distribution.manifest.list.v2+json";
inline constexpr const char* kOctetStream = "Content-Type: application/octet-stream";

inline std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

using http::is_busy;
using http::path_of;
using http::resolve_url;
using http::TransportError;
using Body = http::Body;
using Response = http::Response;

inline std::string with_query(const std::string& url, const std::string& query) {
  return url + (url.find('?') == std::string::npos ? "?" : "&") + query;
}

// One WWW-Authenticate challenge: `Bearer realm="…",service="…",scope="…"` or `Basic realm="…"`.
struct Challenge {
  std::string scheme;  // lower case
  std::map<std::string, std::string> params;
};

// nullopt when the header names no scheme.
std::optional<Challenge> parse_challenge(std::string_view header);

struct BlobProgress;

struct Request {
  std::string method = "GET";
  std::string url;
  std::vector<std::string> headers;
  std::optional<Body> body;
  std::vector<std::string> scopes;  // the token scopes this request needs
  bool registry_auth = true;        // false: token requests, which carry `fixed_authorization`
  std::string fixed_authorization;
  const std::function<void(const char*, size_t)>* sink = nullptr;  // the body of a 2xx answer
  const TransferProgress* progress = nullptr;
  BlobProgress* blob_progress = nullptr;  // ClientOptions::progress of the blob this request moves
  uint64_t progress_base = 0;
  uint64_t progress_total = 0;
  const CancelToken* cancel = nullptr;

  // false: failures and 429/5xx answers come back at once, because the caller recovers itself
  // (an upload asks the registry how much arrived before it sends more).
  bool retry = true;
};

// An answer to a blob upload request that the registry may give again in a moment (429, 5xx):
// the upload code asks the registry where the upload stands before it sends more.
class BusyAnswer : public std::exception {
 public:
  BusyAnswer(std::string action, Response response) : action_(std::move(action)), response_(std::move(response)) {}
  const char* what() const noexcept override { return "the registry is busy"; }
  const std::string& action() const { return action_; }
  const Response& response() const { return response_; }

 private:
  std::string action_;
  Response response_;
};

// The registry no longer knows an upload it said it had: distribution cancels an interrupted
// upload when it notices the broken connection, which may be after it answered the status GET.
class UploadGone : public std::exception {
 public:
  const char* what() const noexcept override { return "the registry dropped the upload"; }
};

// ClientOptions::progress for one blob: the calls of all its requests (chunks, retries) together
// are limited to one per kProgressInterval, plus the last one.
struct BlobProgress {
  const std::function<void(const std::string&, uint64_t, uint64_t)>* callback = nullptr;
  std::string digest;
  uint64_t total = 0;
  Clock::time_point last_call{};

  void report(uint64_t done, bool complete) {
    if (!callback || !*callback) return;
    auto now = Clock::now();
    if (!complete && now - last_call < kProgressInterval) return;
    last_call = now;
    (*callback)(digest, std::min(done, total), total);
  }
};

// "MANIFEST_INVALID: manifest invalid (detail)" and the first code, from the registry's JSON error body.
std::pair<std::string, std::string> registry_errors(const std::string& body);

inline std::string digest_hex(const std::string& digest) { return digest.substr(digest.find(':') + 1); }

}  // namespace client_detail

using namespace client_detail;  // NOLINT(google-build-using-namespace)

struct Client::Impl {
  std::string registry;
  ClientOptions options;
  std::optional<Credentials> credentials;
  std::string base_url;  // "https://HOST"
  std::string registry_authority;
  std::unique_ptr<http::Session> session;

  std::optional<Challenge> challenge;  // what the registry asked for, once it did
  struct Token {
    std::string value;
    Clock::time_point renew_after;
  };
  std::map<std::string, Token> tokens;  // scopes → bearer token

  uint64_t bytes_sent() const { return session->bytes_sent(); }

  void log(const std::string& line) const {
    if (options.log) options.log(line);
  }

  // The failure of a request to reach the registry, with what to check.
  TransportError described(const TransportError& e) const;

  // ---- authorization ------------------------------------------------------------------------
  std::string basic_authorization() const;
  std::string authorization(const std::vector<std::string>& scopes, const CancelToken& cancel);
  Token fetch_token(const std::vector<std::string>& scopes, const CancelToken& cancel);
  std::string credentials_hint(long status) const;

  // Learns the challenge of a 401; false when there is nothing better to send.
  bool answer_challenge(const Response& resp, const Request& req, const CancelToken& cancel);

  // ---- a request with auth, redirects and retries -------------------------------------------
  Response send(const Request& req);
  void backoff(int retry, std::optional<std::chrono::milliseconds> asked, const std::string& why,
               const CancelToken& cancel);
  [[noreturn]] void fail(const std::string& action, const Response& resp) const;

  std::string url_for(const std::string& path) const { return base_url + path; }
  static std::string pull(const std::string& repo) { return "repository:" + repo + ":pull"; }
  static std::string push(const std::string& repo) { return "repository:" + repo + ":pull,push"; }

  // ---- blob uploads ---------------------------------------------------------------------------
  std::string start_upload(const std::string& repo, const CancelToken& cancel);

  // The registry's offset of an interrupted upload, with the URL to continue at; nullopt when
  // it dropped the upload (distribution does when part of a chunk arrived).
  std::optional<std::pair<uint64_t, std::string>> upload_status(const std::string& repo, const std::string& location,
                                                                const CancelToken& cancel);
  void upload(const std::string& repo, const std::string& digest, const Body& whole, std::string location,
              const TransferProgress* progress, const CancelToken& cancel, BlobPushResult& result);

  // Sent once: after a broken connection or a busy answer the caller asks the registry how much
  // arrived before it sends anything again.
  void finish_upload(const std::string& repo, const std::string& digest, const std::string& location, const Body& body,
                     const TransferProgress* progress, BlobProgress* blob_progress, bool resumed,
                     const CancelToken& cancel);
  BlobPushResult push(const std::string& repo, const std::string& digest, const Body& body,
                      const std::string& mount_from, const TransferProgress* progress, const CancelToken& cancel);

  // POST …/blobs/uploads/?mount=…&from=…: "" when the blob was mounted, else the location of
  // the upload session the registry opened instead.
  std::string request_mount(const std::string& repo, const std::string& digest, const std::string& from,
                            const CancelToken& cancel);
  BlobPushResult mount_only(const std::string& repo, const std::string& digest, const std::string& from,
                            const CancelToken& cancel);
  bool has_blob(const std::string& repo, const std::string& digest, const CancelToken& cancel);
};

}  // namespace imgbake::registry
