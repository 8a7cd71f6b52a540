// The one HTTP transport (libcurl): downloads (fetch.h) and the OCI registry client use it.
// One request shape (method, URL, headers, a body from memory, a file descriptor or a stream),
// answers collected or streamed into a sink, bounded retries of busy answers and dropped
// connections, redirects followed by hand so that an Authorization header never goes to another
// host, progress, and cancellation through a CancelToken. Bodies and headers never reach a log.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "imgbake/cancel.h"
#include "imgbake/error.h"

namespace imgbake::http {

// Reads up to `capacity` bytes of a stream into `buffer`; 0 when the stream failed.
using Reader = std::function<size_t(char* buffer, size_t capacity)>;

// A request body: bytes in memory, a range of a file (read with pread, so it can be sent again),
// or a stream that can be read once, in order (`reader`).
struct Body {
  std::string_view bytes;
  int fd = -1;  // borrowed, not closed
  uint64_t offset = 0;
  uint64_t length = 0;
  const Reader* reader = nullptr;

  static Body of_bytes(std::string_view data) { return Body{data, -1, 0, data.size(), nullptr}; }
  static Body of_file(int fd, uint64_t offset, uint64_t length) { return Body{{}, fd, offset, length, nullptr}; }
  static Body of_stream(const Reader* reader, uint64_t length) { return Body{{}, -1, 0, length, reader}; }
  // Bytes [from, from + n) of this body (of a stream: its next n bytes).
  Body slice(uint64_t from, uint64_t n) const;
  // A stream cannot be sent twice: no retry, no redirect with a body.
  bool repeatable() const { return reader == nullptr; }
};

// done: request body bytes sent (when the request has a body), else bytes of a 2xx answer's body
// received; total: the body's length, else the answer's Content-Length (0 when unknown).
using Progress = std::function<void(uint64_t done, uint64_t total)>;

struct Request {
  std::string method = "GET";  // HEAD and GET send no body; every other method sends `body`
  std::string url;             // http:// or https:// only
  // "Name: value". An "Authorization:" header goes to the host (and port) of `url` only, never
  // after a redirect to another one.
  std::vector<std::string> headers;
  std::optional<Body> body;
  // The body of a 2xx answer goes here as it arrives (it may throw to stop the transfer); other
  // answers, and all answers when it is empty, are collected in Response::body.
  std::function<void(const char* data, size_t n)> sink;
  Progress progress;                    // called at most about every 100 ms; may throw to stop the transfer
  const CancelToken* cancel = nullptr;  // nullptr: global_cancel()
  // 429 and 5xx answers and dropped connections are tried again this many times, with backoff
  // (500 ms doubling up to 4 s, or the answer's Retry-After up to 60 s). Not after part of an
  // answer went to the sink, and never with a stream body.
  int max_retries = 0;
  int max_redirects = 20;  // 301, 302, 303, 307, 308 with a Location; 0: answered as they are
  size_t max_collected_body = 32u << 20;
};

struct Response {
  long status = 0;
  std::map<std::string, std::string> headers;  // lower-case names, of the last answer
  std::string body;                            // unless it went to the request's sink
  std::string url;                             // the URL that answered (after redirects)
  std::string header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? "" : it->second;
  }
};

// The connection could not be made, broke, or stalled (no answer came): what() is libcurl's
// reason, with a hint for timeouts.
class TransportError : public BuildError {
 public:
  TransportError(const std::string& what, int curl_code, std::string url)
      : BuildError(what), curl_code_(curl_code), url_(std::move(url)) {}
  int curl_code() const { return curl_code_; }
  const std::string& url() const { return url_; }  // where it happened
  bool couldnt_connect() const;                    // resolving or connecting failed
  bool tls_failed() const;                         // handshake or certificate

 private:
  int curl_code_;
  std::string url_;
};

// The request body could not be read, or a collected answer was too large: what() says why.
class BodyError : public BuildError {
 public:
  using BuildError::BuildError;
};

struct SessionOptions {
  bool tls_verify = true;                     // certificate and host name checks
  std::function<void(std::string_view)> log;  // retries and cross-host redirects; never secrets
  // Each attempt's limit, connecting included (0: none beyond the 30 s connect timeout). For
  // endpoints that answer at once or not at all, such as EC2's instance metadata service.
  std::chrono::milliseconds timeout{0};
};

// Requests on one reused libcurl handle (keep-alive). Not for two threads at once.
class Session {
 public:
  explicit Session(SessionOptions options = {});
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // An answer with any status (check Response::status). Throws Cancelled, TransportError,
  // BodyError, or what the sink or the progress callback threw.
  Response send(const Request& request);
  // Request body bytes handed to libcurl by this session, over all requests and attempts.
  uint64_t bytes_sent() const { return bytes_sent_; }

 private:
  struct Handle;
  std::unique_ptr<Handle> handle_;
  SessionOptions options_;
  uint64_t bytes_sent_ = 0;
};

// What a log line or an error may show of a URL: the path, never the query (signed URLs, upload
// state tokens).
std::string path_of(const std::string& url);
// The "host:port" part of a URL, lower case.
std::string authority_of(const std::string& url);
// A URL's origin (RFC 6454): "scheme://host:port", lower case, the scheme's default port made
// explicit. Credentials go only to the origin the caller named.
std::string origin_of(const std::string& url);
// A Location header (absolute, scheme-relative, host-relative or relative) against `base`.
std::string resolve_url(const std::string& base, const std::string& location);
// 429 or 5xx: the server may answer otherwise in a moment.
inline bool is_busy(long status) { return status == 429 || status >= 500; }
// The delay a Retry-After header in seconds asks for (at most 60 s); nullopt without one.
std::optional<std::chrono::milliseconds> retry_after(const Response& response);
// The backoff before retry number `retry` (0-based): 500 ms doubling, at most 4 s.
std::chrono::milliseconds backoff_delay(int retry);

}  // namespace imgbake::http
