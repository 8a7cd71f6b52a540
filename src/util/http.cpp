// The HTTP transport on libcurl. Redirects are followed here, not by libcurl, so that the
// Authorization header goes to the request's own origin (scheme, host and port) only, so that
// an https:// request is never redirected to plain http://, and so that a redirect is retried
// and logged like any other answer.
#include "imgbake/http.h"

#include <curl/curl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <exception>
#include <mutex>

#include "imgbake/util.h"
#include "imgbake/version.h"

namespace imgbake::http {

namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr long kConnectTimeoutSeconds = 30;
// A transfer slower than 1 KB/s for a minute is stuck, not slow.
constexpr long kLowSpeedBytesPerSecond = 1024;
constexpr long kLowSpeedSeconds = 60;
constexpr auto kFirstBackoff = 500ms;
constexpr auto kMaxBackoff = 4s;
constexpr auto kMaxRetryAfter = 60s;
constexpr auto kProgressInterval = 100ms;
// With a sink, a non-2xx answer is an error page: its start is enough to explain it.
constexpr size_t kMaxErrorPage = 64u << 10;

void init_curl_once() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
      throw BuildError("libcurl could not be initialised (curl_global_init failed)");
  });
}

struct CurlDeleter {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
};
struct SlistDeleter {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};
using SlistPtr = std::unique_ptr<curl_slist, SlistDeleter>;

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

std::string scheme_of(const std::string& url) {
  size_t p = url.find("://");
  return p == std::string::npos ? "" : lower(url.substr(0, p));
}

bool is_retryable(CURLcode rc) {
  return rc == CURLE_SEND_ERROR || rc == CURLE_RECV_ERROR || rc == CURLE_COULDNT_CONNECT || rc == CURLE_GOT_NOTHING ||
         rc == CURLE_PARTIAL_FILE;
}

bool is_redirect(long status) {
  return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

bool is_authorization(const std::string& header) {
  return header.size() >= 14 && lower(std::string_view(header).substr(0, 14)) == "authorization:";
}

// What the callbacks of one attempt share.
struct Attempt {
  Attempt(const Request& r, const std::optional<Body>& b, const CancelToken& c, Response& resp)
      : request(r), body(b), cancel(c), response(resp) {}
  const Request& request;
  const std::optional<Body>& body;
  const CancelToken& cancel;
  Response& response;
  uint64_t body_sent = 0;  // request body bytes handed to libcurl
  uint64_t received = 0;   // bytes of a 2xx answer's body
  bool delivered = false;  // answer bytes went to the sink: a retry would repeat them
  std::string failure;     // why a callback stopped the transfer
  std::exception_ptr callback_error;
  Clock::time_point last_progress{};

  bool success() const { return response.status >= 200 && response.status < 300; }
};

size_t on_header(char* data, size_t size, size_t count, void* user) {
  auto* a = static_cast<Attempt*>(user);
  std::string_view line(data, size * count);
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.remove_suffix(1);
  if (line.starts_with("HTTP/")) {  // a new response (after 100 Continue, say)
    a->response.headers.clear();
    size_t space = line.find(' ');
    a->response.status =
        space == std::string_view::npos ? 0 : std::atol(std::string(line.substr(space + 1, 3)).c_str());
  } else if (size_t colon = line.find(':'); colon != std::string_view::npos) {
    a->response.headers[lower(line.substr(0, colon))] = util::trim(line.substr(colon + 1));
  }
  return size * count;
}

size_t on_data(char* data, size_t size, size_t count, void* user) {
  auto* a = static_cast<Attempt*>(user);
  size_t n = size * count;
  if (a->cancel.cancelled()) return 0;
  if (a->success() && a->request.sink) {
    try {
      a->request.sink(data, n);
      a->delivered = true;
      a->received += n;
    } catch (...) {
      a->callback_error = std::current_exception();
      return 0;
    }
    return n;
  }
  if (a->success()) a->received += n;
  std::string& body = a->response.body;
  if (a->request.sink) {  // an error page: keep its start
    body.append(data, std::min(n, kMaxErrorPage - std::min(kMaxErrorPage, body.size())));
    return n;
  }
  if (body.size() + n > a->request.max_collected_body) {
    a->failure = "the answer is larger than " + std::to_string(a->request.max_collected_body >> 20) + " MiB";
    return 0;
  }
  body.append(data, n);
  return n;
}

size_t on_read(char* buffer, size_t size, size_t count, void* user) {
  auto* a = static_cast<Attempt*>(user);
  if (a->cancel.cancelled()) return CURL_READFUNC_ABORT;
  const Body& body = *a->body;
  size_t n = static_cast<size_t>(std::min<uint64_t>(size * count, body.length - a->body_sent));
  if (n == 0) return 0;
  if (body.reader) {
    size_t got = (*body.reader)(buffer, n);
    if (got == 0) {
      a->failure = "the stream being uploaded ended early";
      return CURL_READFUNC_ABORT;
    }
    n = got;
  } else if (body.fd < 0) {
    std::memcpy(buffer, body.bytes.data() + a->body_sent, n);
  } else {
    ssize_t got = ::pread(body.fd, buffer, n, static_cast<off_t>(body.offset + a->body_sent));
    if (got <= 0) {
      a->failure = got == 0 ? "the file became shorter while it was being uploaded"
                            : std::string("cannot read the file being uploaded: ") + std::strerror(errno);
      return CURL_READFUNC_ABORT;
    }
    n = static_cast<size_t>(got);
  }
  a->body_sent += n;
  return n;
}

// libcurl calls this at least once a second, also when nothing moves: cancellation is noticed
// promptly even on a stalled connection.
int on_progress(void* user, curl_off_t download_total, curl_off_t, curl_off_t, curl_off_t uploaded) {
  auto* a = static_cast<Attempt*>(user);
  if (a->cancel.cancelled()) return 1;
  if (!a->request.progress) return 0;
  auto now = Clock::now();
  if (now - a->last_progress < kProgressInterval) return 0;
  uint64_t done = 0, total = 0;
  if (a->body) {
    done = static_cast<uint64_t>(uploaded);
    total = a->body->length;
  } else if (a->success()) {  // an error page's bytes are not progress
    done = a->received;
    total = static_cast<uint64_t>(std::max<curl_off_t>(download_total, 0));
  } else {
    return 0;
  }
  a->last_progress = now;
  try {
    a->request.progress(done, total);
  } catch (...) {
    a->callback_error = std::current_exception();
    return 1;
  }
  return 0;
}

std::string describe(CURLcode rc, const char* error_text) {
  std::string detail = error_text[0] ? error_text : curl_easy_strerror(rc);
  if (rc == CURLE_OPERATION_TIMEDOUT)
    detail += " (imgbake gives up when connecting takes over 30 s or fewer than 1 KB/s move for 60 s)";
  return detail;
}

}  // namespace

Body Body::slice(uint64_t from, uint64_t n) const {
  if (reader) return Body{{}, -1, 0, n, reader};
  if (fd >= 0) return Body{{}, fd, offset + from, n, nullptr};
  return Body{bytes.substr(from, n), -1, 0, n, nullptr};
}

bool TransportError::couldnt_connect() const {
  return curl_code_ == CURLE_COULDNT_CONNECT || curl_code_ == CURLE_COULDNT_RESOLVE_HOST;
}

bool TransportError::tls_failed() const {
  return curl_code_ == CURLE_SSL_CONNECT_ERROR || curl_code_ == CURLE_PEER_FAILED_VERIFICATION;
}

std::string authority_of(const std::string& url) {
  size_t p = url.find("://");
  if (p == std::string::npos) return "";
  size_t end = url.find_first_of("/?#", p + 3);
  return lower(url.substr(p + 3, end == std::string::npos ? std::string::npos : end - p - 3));
}

std::string origin_of(const std::string& url) {
  std::string scheme = scheme_of(url);
  std::string authority = authority_of(url);
  // "host" and "host:443" are one origin; an IPv6 literal's colons are inside brackets.
  size_t bracket = authority.rfind(']');
  size_t colon = authority.rfind(':');
  bool has_port = colon != std::string::npos && (bracket == std::string::npos || colon > bracket);
  if (!has_port) authority += scheme == "https" ? ":443" : scheme == "http" ? ":80" : "";
  return scheme + "://" + authority;
}

std::string path_of(const std::string& url) {
  size_t p = url.find("://");
  size_t slash = p == std::string::npos ? std::string::npos : url.find('/', p + 3);
  std::string path = slash == std::string::npos ? "/" : url.substr(slash);
  return path.substr(0, path.find('?'));
}

std::string resolve_url(const std::string& base, const std::string& location) {
  if (location.find("://") != std::string::npos) return location;
  std::string scheme = scheme_of(base);
  std::string authority = authority_of(base);
  if (location.starts_with("//")) return scheme + ":" + location;
  if (location.starts_with("/")) return scheme + "://" + authority + location;
  size_t p = base.find("://");
  size_t slash = base.find('/', p + 3);
  std::string dir = slash == std::string::npos ? "/" : base.substr(slash);
  dir = dir.substr(0, dir.find('?'));
  dir = dir.substr(0, dir.rfind('/') + 1);
  return scheme + "://" + authority + dir + location;
}

std::optional<std::chrono::milliseconds> retry_after(const Response& response) {
  std::string value = response.header("retry-after");
  if (value.empty() || !std::all_of(value.begin(), value.end(), ::isdigit) || value.size() > 6) return std::nullopt;
  return std::min<std::chrono::milliseconds>(std::chrono::seconds(std::stol(value)), kMaxRetryAfter);
}

std::chrono::milliseconds backoff_delay(int retry) {
  return std::min<std::chrono::milliseconds>(kFirstBackoff * (1 << std::min(retry, 10)), kMaxBackoff);
}

struct Session::Handle {
  std::unique_ptr<CURL, CurlDeleter> curl;
  char error[CURL_ERROR_SIZE] = {};
};

Session::Session(SessionOptions options) : handle_(std::make_unique<Handle>()), options_(std::move(options)) {
  init_curl_once();
  handle_->curl.reset(curl_easy_init());
  if (!handle_->curl) throw BuildError("libcurl could not create a transfer handle");
}

Session::~Session() = default;

namespace {

// One attempt: one request and one answer, no redirect followed.
CURLcode perform(CURL* c, char* error_text, const SessionOptions& o, const std::string& method, const std::string& url,
                 const std::vector<std::string>& headers, Attempt& a) {
  curl_easy_reset(c);  // keeps the connection cache
  static const std::string user_agent = std::string("imgbake/") + kVersion;
  error_text[0] = 0;
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);  // followed by Session::send
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);        // builds run in threads
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, kConnectTimeoutSeconds);
  if (o.timeout.count() > 0) {
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(o.timeout.count()));
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(o.timeout.count()));
  }
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, kLowSpeedBytesPerSecond);
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, kLowSpeedSeconds);
  curl_easy_setopt(c, CURLOPT_USERAGENT, user_agent.c_str());
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, error_text);
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, o.tls_verify ? 1L : 0L);
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, o.tls_verify ? 2L : 0L);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &a);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &a);
  curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
  curl_easy_setopt(c, CURLOPT_XFERINFODATA, &a);
  if (method == "HEAD") {
    curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
  } else if (method == "GET") {
    curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
  } else {
    // Every other verb sends a body (possibly empty) with a Content-Length.
    curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method.c_str());
    curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(a.body ? a.body->length : 0));
    curl_easy_setopt(c, CURLOPT_READFUNCTION, on_read);
    curl_easy_setopt(c, CURLOPT_READDATA, &a);
  }
  SlistPtr list;
  auto append = [&list](const std::string& h) {
    curl_slist* head = curl_slist_append(list.get(), h.c_str());
    if (!head) throw BuildError("libcurl could not allocate a header list");
    if (!list) list.reset(head);  // appending to a list returns its head, which `list` owns
  };
  for (const std::string& h : headers) append(h);
  append("Expect:");  // no 1 s wait for "100 Continue"
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, list.get());
  CURLcode rc = curl_easy_perform(c);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, nullptr);
  return rc;
}

}  // namespace

Response Session::send(const Request& req) {
  const CancelToken& cancel = req.cancel ? *req.cancel : global_cancel();
  std::string method = req.method;
  std::string url = req.url;
  std::optional<Body> body = method == "GET" || method == "HEAD" ? std::nullopt : req.body;
  const std::string origin = origin_of(req.url);
  const bool repeatable = !body || body->repeatable();
  const int max_retries = repeatable ? req.max_retries : 0;
  int retries = 0, redirects = 0;
  auto backoff = [&](std::optional<std::chrono::milliseconds> asked, const std::string& why) {
    auto delay = asked ? *asked : backoff_delay(retries);
    ++retries;
    if (options_.log)
      options_.log("retry: " + why + "; trying again in " + util::format_duration(delay) + " (retry " +
                   std::to_string(retries) + " of " + std::to_string(req.max_retries) + ")");
    cancel.sleep_for(delay);
  };
  while (true) {
    cancel.throw_if_cancelled();
    // The credentials are for the origin the caller named; a redirect elsewhere gets none.
    std::vector<std::string> headers;
    bool same_origin = origin_of(url) == origin;
    for (const std::string& h : req.headers)
      if (same_origin || !is_authorization(h)) headers.push_back(h);
    Response resp;
    resp.url = url;
    Attempt a(req, body, cancel, resp);
    CURLcode rc = perform(handle_->curl.get(), handle_->error, options_, method, url, headers, a);
    bytes_sent_ += a.body_sent;
    if (a.callback_error) std::rethrow_exception(a.callback_error);
    if (cancel.cancelled()) throw Cancelled();
    if (!a.failure.empty()) throw BodyError(a.failure);
    if (rc != CURLE_OK) {
      if (is_retryable(rc) && !a.delivered && retries < max_retries) {
        backoff(std::nullopt, method + " " + path_of(url) + ": " + curl_easy_strerror(rc));
        continue;
      }
      throw TransportError(describe(rc, handle_->error), rc, url);
    }
    long status = resp.status;
    if (is_redirect(status) && !resp.header("location").empty() && req.max_redirects > 0) {
      if (++redirects > req.max_redirects)
        throw BuildError(path_of(req.url) + " was redirected more than " + std::to_string(req.max_redirects) +
                         " times; check the server's configuration");
      std::string next = resolve_url(url, resp.header("location"));
      std::string scheme = scheme_of(next);
      if (scheme != "http" && scheme != "https")
        throw BuildError(path_of(url) + " was redirected to a URL that is neither http:// nor https://");
      // TLS once asked for is never given up: the answer may be a man in the middle's.
      if (scheme_of(url) == "https" && scheme == "http")
        throw BuildError(method + " " + path_of(url) + " on https://" + authority_of(url) +
                         " was redirected to plain http://" + authority_of(next) + path_of(next) +
                         "; refusing to leave TLS (nothing was sent there)");
      if (origin_of(next) != origin_of(url) && options_.log)
        options_.log("redirect: " + method + " " + path_of(url) + " → " +
                     (scheme == scheme_of(url) ? authority_of(next) : scheme + "://" + authority_of(next)) +
                     (origin_of(next) == origin ? "" : " (no credentials sent there)"));
      if (status == 303) {
        method = "GET";
        body.reset();
      } else if (!repeatable) {
        throw BuildError(method + " " + path_of(url) +
                         " was redirected, but its body was a stream that cannot be "
                         "sent again");
      }
      url = next;
      continue;
    }
    if (is_busy(status) && retries < max_retries) {
      backoff(retry_after(resp), method + " " + path_of(url) + " answered HTTP " + std::to_string(status));
      continue;
    }
    return resp;
  }
}

}  // namespace imgbake::http
