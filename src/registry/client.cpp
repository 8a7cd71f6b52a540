// The OCI distribution client on one reused libcurl easy handle (keep-alive). Every request goes
// through Impl::send: authorization (anonymous first, then what the 401 challenge asks for),
// redirects followed by hand so that credentials never go to another host, and bounded retries.
#include <curl/curl.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <exception>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "imgbake/oci_client.h"
#include "imgbake/provenance.h"
#include "imgbake/util.h"
#include "imgbake/version.h"

namespace imgbake::registry {

namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr long kConnectTimeoutSeconds = 30;
// A transfer slower than 1 KB/s for a minute is stuck, not slow.
constexpr long kLowSpeedBytesPerSecond = 1024;
constexpr long kLowSpeedSeconds = 60;
// Manifests are limited to 4 MiB by most registries; error and token answers are small.
constexpr size_t kMaxBufferedBody = 32u << 20;
constexpr int kMaxRedirects = 10;
constexpr auto kFirstBackoff = 500ms;
constexpr auto kMaxBackoff = 4s;
constexpr auto kMaxRetryAfter = 60s;
constexpr auto kProgressInterval = 100ms;
constexpr size_t kTagPageSize = 1000;

constexpr const char* kOciIndexMediaType = "application/vnd.oci.image.index.v1+json";
constexpr const char* kManifestAccept =
    "Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, "
    "application/vnd.docker.distribution.manifest.v2+json, "
    "application/vnd.docker.distribution.manifest.list.v2+json";
constexpr const char* kOctetStream = "Content-Type: application/octet-stream";

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

std::string url_encode(std::string_view s) {
  static const char* const kHex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

// "https://host:5000/v2/x?y" → {"https", "host:5000", "/v2/x?y"}.
struct UrlParts {
  std::string scheme;
  std::string authority;
  std::string path;  // with the query
};

UrlParts split_url(const std::string& url) {
  UrlParts parts;
  size_t p = url.find("://");
  if (p == std::string::npos) return parts;
  parts.scheme = lower(url.substr(0, p));
  size_t slash = url.find('/', p + 3);
  parts.authority = lower(url.substr(p + 3, slash == std::string::npos ? std::string::npos : slash - p - 3));
  parts.path = slash == std::string::npos ? "/" : url.substr(slash);
  return parts;
}

// What a log line or an error may show of a URL: the path, never the query (upload state tokens,
// signed redirect URLs).
std::string path_of(const std::string& url) {
  std::string path = split_url(url).path;
  return path.substr(0, path.find('?'));
}

// Location headers may be absolute, host-relative or relative to the request's path.
std::string resolve_url(const std::string& base, const std::string& location) {
  if (location.find("://") != std::string::npos) return location;
  UrlParts b = split_url(base);
  if (location.starts_with("//")) return b.scheme + ":" + location;
  if (location.starts_with("/")) return b.scheme + "://" + b.authority + location;
  std::string dir = b.path.substr(0, b.path.find('?'));
  dir = dir.substr(0, dir.rfind('/') + 1);
  return b.scheme + "://" + b.authority + dir + location;
}

std::string with_query(const std::string& url, const std::string& query) {
  return url + (url.find('?') == std::string::npos ? "?" : "&") + query;
}

// One WWW-Authenticate challenge: `Bearer realm="…",service="…",scope="…"` or `Basic realm="…"`.
struct Challenge {
  std::string scheme;  // lower case
  std::map<std::string, std::string> params;
};

std::optional<Challenge> parse_challenge(std::string_view header) {
  Challenge c;
  size_t i = 0;
  while (i < header.size() && header[i] == ' ') ++i;
  size_t start = i;
  while (i < header.size() && header[i] != ' ') ++i;
  c.scheme = lower(header.substr(start, i - start));
  if (c.scheme.empty()) return std::nullopt;
  while (i < header.size()) {
    while (i < header.size() && (header[i] == ' ' || header[i] == ',')) ++i;
    size_t key_start = i;
    while (i < header.size() && header[i] != '=' && header[i] != ',') ++i;
    std::string key = lower(util::trim(header.substr(key_start, i - key_start)));
    if (i >= header.size() || header[i] != '=') continue;
    ++i;
    std::string value;
    if (i < header.size() && header[i] == '"') {
      for (++i; i < header.size() && header[i] != '"'; ++i) {
        if (header[i] == '\\' && i + 1 < header.size()) ++i;
        value += header[i];
      }
      ++i;
    } else {
      size_t value_start = i;
      while (i < header.size() && header[i] != ',') ++i;
      value = util::trim(header.substr(value_start, i - value_start));
    }
    if (!key.empty()) c.params[key] = value;
  }
  return c;
}

// The connection broke (or never came up): the upload code resumes after these.
class TransportError : public BuildError {
 public:
  TransportError(const std::string& what, CURLcode code) : BuildError(what), code_(code) {}
  CURLcode code() const { return code_; }

 private:
  CURLcode code_;
};

bool is_retryable(CURLcode rc) {
  return rc == CURLE_SEND_ERROR || rc == CURLE_RECV_ERROR || rc == CURLE_COULDNT_CONNECT || rc == CURLE_GOT_NOTHING ||
         rc == CURLE_PARTIAL_FILE;
}

// What a request sends: nothing, bytes in memory, or a range of an open file (streamed, so a
// 2 GiB disk never sits in memory).
// A request body: bytes in memory, a range of a file (read with pread, so it can be sent
// again), or a stream that can be read once, in order (`reader`: a registry-to-registry copy).
struct Body {
  std::string_view bytes;
  int fd = -1;
  uint64_t offset = 0;
  uint64_t length = 0;
  const BlobReader* reader = nullptr;

  static Body of_bytes(std::string_view data) { return Body{data, -1, 0, data.size(), nullptr}; }
  Body slice(uint64_t from, uint64_t n) const {
    if (reader) return Body{{}, -1, 0, n, reader};  // the next n bytes of the stream
    if (fd >= 0) return Body{{}, fd, offset + from, n, nullptr};
    return Body{bytes.substr(from, n), -1, 0, n, nullptr};
  }
};

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

struct Response {
  long status = 0;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;                            // unless streamed into the request's sink
  std::string header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? "" : it->second;
  }
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

bool is_busy(long status) { return status == 429 || status >= 500; }

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

// What the callbacks of one attempt share.
struct Transfer {
  Transfer(const Request& req, Response& resp) : request(req), response(resp) {}
  const Request& request;
  Response& response;
  uint64_t body_sent = 0;  // request body bytes handed to libcurl
  bool delivered = false;  // response body bytes went to the sink: a retry would repeat them
  std::string failure;     // why a callback stopped the transfer
  std::exception_ptr callback_error;
  Clock::time_point last_progress{};
};

size_t on_header(char* data, size_t size, size_t count, void* user) {
  auto* t = static_cast<Transfer*>(user);
  std::string_view line(data, size * count);
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.remove_suffix(1);
  if (line.starts_with("HTTP/")) {  // a new response (after 100 Continue, say)
    t->response.headers.clear();
    size_t space = line.find(' ');
    t->response.status =
        space == std::string_view::npos ? 0 : std::atol(std::string(line.substr(space + 1, 3)).c_str());
  } else if (size_t colon = line.find(':'); colon != std::string_view::npos) {
    t->response.headers[lower(line.substr(0, colon))] = util::trim(line.substr(colon + 1));
  }
  return size * count;
}

size_t on_data(char* data, size_t size, size_t count, void* user) {
  auto* t = static_cast<Transfer*>(user);
  size_t n = size * count;
  if (t->request.cancel->cancelled()) return 0;
  bool success = t->response.status >= 200 && t->response.status < 300;
  if (success && t->request.sink) {
    try {
      (*t->request.sink)(data, n);
      t->delivered = true;
    } catch (...) {
      t->callback_error = std::current_exception();
      return 0;
    }
    return n;
  }
  if (t->response.body.size() + n > kMaxBufferedBody) {
    t->failure = "the answer is larger than " + std::to_string(kMaxBufferedBody >> 20) + " MiB";
    return 0;
  }
  t->response.body.append(data, n);
  return n;
}

size_t on_read(char* buffer, size_t size, size_t count, void* user) {
  auto* t = static_cast<Transfer*>(user);
  if (t->request.cancel->cancelled()) return CURL_READFUNC_ABORT;
  const Body& body = *t->request.body;
  size_t n = static_cast<size_t>(std::min<uint64_t>(size * count, body.length - t->body_sent));
  if (n == 0) return 0;
  if (body.reader) {
    size_t got = (*body.reader)(buffer, n);
    if (got == 0) {
      t->failure = "the stream being uploaded ended early";
      return CURL_READFUNC_ABORT;
    }
    n = got;
  } else if (body.fd < 0) {
    std::memcpy(buffer, body.bytes.data() + t->body_sent, n);
  } else {
    ssize_t got = ::pread(body.fd, buffer, n, static_cast<off_t>(body.offset + t->body_sent));
    if (got <= 0) {
      t->failure = got == 0 ? "the file became shorter while it was being uploaded"
                            : std::string("cannot read the file being uploaded: ") + std::strerror(errno);
      return CURL_READFUNC_ABORT;
    }
    n = static_cast<size_t>(got);
  }
  t->body_sent += n;
  return n;
}

int on_progress(void* user, curl_off_t download_total, curl_off_t downloaded, curl_off_t, curl_off_t uploaded) {
  auto* t = static_cast<Transfer*>(user);
  if (t->request.cancel->cancelled()) return 1;
  const TransferProgress* progress = t->request.progress;
  bool success = t->response.status == 0 || (t->response.status >= 200 && t->response.status < 300);
  uint64_t done = t->request.body ? static_cast<uint64_t>(uploaded) : static_cast<uint64_t>(downloaded);
  try {
    // A download's bytes count only when they are the blob (not a 401 or an error page).
    if (t->request.blob_progress && (t->request.body || success))
      t->request.blob_progress->report(t->request.progress_base + done, false);
    if (!progress || !*progress) return 0;
    auto now = Clock::now();
    if (now - t->last_progress < kProgressInterval) return 0;
    t->last_progress = now;
    uint64_t total = t->request.progress_total ? t->request.progress_total : static_cast<uint64_t>(download_total);
    (*progress)(t->request.progress_base + done, total);
  } catch (...) {
    t->callback_error = std::current_exception();
    return 1;
  }
  return 0;
}

void init_curl_once() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
      throw BuildError("libcurl could not be initialised (curl_global_init failed)");
  });
}

// "MANIFEST_INVALID: manifest invalid (detail)" from the registry's JSON error body.
std::pair<std::string, std::string> registry_errors(const std::string& body) {
  std::string codes_and_messages, first_code;
  try {
    auto doc = nlohmann::json::parse(body);
    auto errors = doc.find("errors");
    if (errors != doc.end() && errors->is_array()) {
      for (const auto& e : *errors) {
        std::string code = e.value("code", "");
        std::string message = e.value("message", "");
        if (first_code.empty()) first_code = code;
        std::string text = code + (message.empty() ? "" : ": " + message);
        if (auto detail = e.find("detail"); detail != e.end() && !detail->is_null()) {
          std::string d = detail->is_string() ? detail->get<std::string>() : detail->dump();
          if (d.size() > 300) d = d.substr(0, 300) + "…";
          if (!d.empty() && d != "{}") text += " (" + d + ")";
        }
        codes_and_messages += (codes_and_messages.empty() ? "" : "; ") + text;
      }
    } else if (auto details = doc.find("details"); details != doc.end() && details->is_string()) {
      codes_and_messages = details->get<std::string>();  // Docker Hub's token service
    }
  } catch (const nlohmann::json::exception&) {
    std::string text = util::trim(body.substr(0, 200));
    if (!text.empty() && text.find('<') == std::string::npos) codes_and_messages = text;
  }
  return {codes_and_messages, first_code};
}

std::string digest_hex(const std::string& digest) { return digest.substr(digest.find(':') + 1); }

}  // namespace

struct Client::Impl {
  std::string registry;
  ClientOptions options;
  std::optional<Credentials> credentials;
  std::string base_url;  // "https://HOST"
  std::string registry_authority;
  CURL* curl = nullptr;
  char curl_error[CURL_ERROR_SIZE] = {};

  std::optional<Challenge> challenge;  // what the registry asked for, once it did
  struct Token {
    std::string value;
    Clock::time_point renew_after;
  };
  std::map<std::string, Token> tokens;  // scopes → bearer token
  uint64_t bytes_sent = 0;

  void log(const std::string& line) const {
    if (options.log) options.log(line);
  }

  // ---- one attempt --------------------------------------------------------------------------

  CURLcode perform(const Request& req, const std::string& method, const std::string& url,
                   const std::string& authorization, Transfer& t) {
    curl_easy_reset(curl);  // keeps the connection cache
    static const std::string user_agent = std::string("imgbake/") + kVersion;
    curl_error[0] = 0;
    curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);  // followed by hand: see send()
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, kConnectTimeoutSeconds);
    curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, kLowSpeedBytesPerSecond);
    curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, kLowSpeedSeconds);
    curl_easy_setopt(curl, CURLOPT_USERAGENT, user_agent.c_str());
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, curl_error);
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, options.tls_verify ? 1L : 0L);
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, options.tls_verify ? 2L : 0L);
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, &t);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &t);
    // The progress callback runs at least once a second, also when nothing moves: cancellation
    // is noticed promptly.
    curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(curl, CURLOPT_XFERINFODATA, &t);
    if (method == "HEAD") {
      curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
    } else if (method == "GET") {
      curl_easy_setopt(curl, CURLOPT_HTTPGET, 1L);
    } else {
      // Every other verb sends a body (possibly empty) with a Content-Length.
      curl_easy_setopt(curl, CURLOPT_UPLOAD, 1L);
      curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method.c_str());
      curl_easy_setopt(curl, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(req.body ? req.body->length : 0));
      curl_easy_setopt(curl, CURLOPT_READFUNCTION, on_read);
      curl_easy_setopt(curl, CURLOPT_READDATA, &t);
    }
    curl_slist* headers = nullptr;
    for (const std::string& h : req.headers) headers = curl_slist_append(headers, h.c_str());
    if (!authorization.empty()) headers = curl_slist_append(headers, authorization.c_str());
    headers = curl_slist_append(headers, "Expect:");  // no 1 s wait for "100 Continue"
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    CURLcode rc = curl_easy_perform(curl);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, nullptr);
    curl_slist_free_all(headers);
    bytes_sent += t.body_sent;
    return rc;
  }

  std::string describe(CURLcode rc, const std::string& url) const {
    std::string text = curl_error[0] ? curl_error : curl_easy_strerror(rc);
    std::string out = "cannot reach registry " + registry + " (" + path_of(url) + "): " + text;
    if (rc == CURLE_OPERATION_TIMEDOUT)
      out += " (imgbake gives up when connecting takes over 30 s or fewer than 1 KB/s move for 60 s)";
    else if (rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST)
      out += "; check the registry address and that it is running";
    else if (rc == CURLE_SSL_CONNECT_ERROR || rc == CURLE_PEER_FAILED_VERIFICATION)
      out += "; for a registry without TLS use --insecure-registry " + registry;
    return out;
  }

  // ---- authorization ------------------------------------------------------------------------

  std::string basic_authorization() const {
    return "Authorization: Basic " + provenance::base64_encode(credentials->username + ":" + credentials->password);
  }

  std::string authorization(const std::vector<std::string>& scopes, const CancelToken& cancel) {
    if (!challenge) return "";
    if (challenge->scheme == "basic") return credentials ? basic_authorization() : "";
    if (challenge->scheme != "bearer") return "";
    std::string key = util::join(scopes, " ");
    auto it = tokens.find(key);
    // A token about to expire is renewed before it is used: a refused PATCH would have sent a
    // whole chunk for nothing.
    if (it != tokens.end() && Clock::now() >= it->second.renew_after) {
      tokens.erase(it);
      it = tokens.end();
    }
    if (it == tokens.end()) it = tokens.emplace(key, fetch_token(scopes, cancel)).first;
    return it->second.value.empty() ? "" : "Authorization: Bearer " + it->second.value;
  }

  Token fetch_token(const std::vector<std::string>& scopes, const CancelToken& cancel) {
    std::string realm = challenge->params["realm"];
    if (realm.empty())
      throw RegistryError("registry " + registry + " asked for a bearer token but named no token service (realm)", 401,
                          "UNAUTHORIZED");
    std::string service = challenge->params["service"];
    Request req;
    req.registry_auth = false;
    req.cancel = &cancel;
    std::string form;
    if (credentials && !credentials->identity_token.empty()) {
      // An identity token is an OAuth2 refresh token: POST it to the realm.
      form = "grant_type=refresh_token&client_id=imgbake&service=" + url_encode(service) +
             "&refresh_token=" + url_encode(credentials->identity_token);
      for (const std::string& s : scopes) form += "&scope=" + url_encode(s);
      req.method = "POST";
      req.url = realm;
      req.headers = {"Content-Type: application/x-www-form-urlencoded"};
      req.body = Body::of_bytes(form);
    } else {
      req.url = realm;
      if (!service.empty()) req.url = with_query(req.url, "service=" + url_encode(service));
      for (const std::string& s : scopes) req.url = with_query(req.url, "scope=" + url_encode(s));
      if (credentials) req.fixed_authorization = basic_authorization();
    }
    Response resp = send(req);
    Token token;
    if (resp.status == 200) {
      // The token specification's default lifetime is 60 s when the service names none.
      int64_t lifetime_seconds = 60;
      try {
        auto doc = nlohmann::json::parse(resp.body);
        token.value = doc.value("token", "");
        if (token.value.empty()) token.value = doc.value("access_token", "");
        if (auto e = doc.find("expires_in"); e != doc.end() && e->is_number_integer() && e->get<int64_t>() > 0)
          lifetime_seconds = e->get<int64_t>();
      } catch (const nlohmann::json::exception&) {
      }
      // Renewed a little early (clocks and the time the request takes), at most 30 s early.
      token.renew_after =
          Clock::now() + std::chrono::seconds(lifetime_seconds - std::min<int64_t>(30, lifetime_seconds / 4));
      if (token.value.empty())
        throw RegistryError("the token service of registry " + registry + " (" + split_url(realm).authority +
                                ") answered without a token; check the registry's auth configuration",
                            200, "");
      return token;
    }
    auto [errors, code] = registry_errors(resp.body);
    throw RegistryError("the token service of registry " + registry + " (" + split_url(realm).authority +
                            path_of(realm) + ") refused a token: HTTP " + std::to_string(resp.status) +
                            (errors.empty() ? "" : ": " + errors) + credentials_hint(resp.status),
                        static_cast<int>(resp.status), code);
  }

  std::string credentials_hint(long status) const {
    if (status == 401)
      return credentials
                 ? "; the credentials for " + registry + " were refused: log in again (imgbake login " + registry + ")"
                 : "; " + registry + " needs credentials: imgbake login " + registry + " (or docker login)";
    if (status == 403) return "; the credentials lack permission for this repository";
    return "";
  }

  // Learns the challenge of a 401; false when there is nothing better to send.
  bool answer_challenge(const Response& resp, const Request& req, const CancelToken& cancel) {
    auto parsed = parse_challenge(resp.header("www-authenticate"));
    if (!parsed) return false;
    challenge = parsed;
    if (parsed->scheme == "basic") return credentials.has_value();
    if (parsed->scheme != "bearer") return false;
    tokens.erase(util::join(req.scopes, " "));  // expired or too narrow: ask again once
    authorization(req.scopes, cancel);
    return true;
  }

  // ---- a request with auth, redirects and retries -------------------------------------------

  Response send(const Request& req) {
    const CancelToken& cancel = req.cancel ? *req.cancel : global_cancel();
    Request attempt_req = req;
    attempt_req.cancel = &cancel;
    std::string method = req.method;
    std::string url = req.url;
    const std::string origin = split_url(req.url).authority;
    int retries = 0, redirects = 0;
    const int max_retries = req.retry ? options.max_retries : 0;
    bool challenge_answered = false;
    while (true) {
      cancel.throw_if_cancelled();
      std::string authority = split_url(url).authority;
      std::string authz;
      if (req.registry_auth && authority == registry_authority)
        authz = authorization(req.scopes, cancel);
      else if (!req.registry_auth && authority == origin)
        authz = req.fixed_authorization;
      Response resp;
      Transfer t(attempt_req, resp);
      CURLcode rc = perform(attempt_req, method, url, authz, t);
      if (t.callback_error) std::rethrow_exception(t.callback_error);
      if (cancel.cancelled()) throw Cancelled();
      if (!t.failure.empty()) throw BuildError(method + " " + path_of(url) + " on " + registry + ": " + t.failure);
      if (rc != CURLE_OK) {
        if (is_retryable(rc) && !t.delivered && retries < max_retries) {
          backoff(retries++, std::nullopt, method + " " + path_of(url) + ": " + curl_easy_strerror(rc), cancel);
          continue;
        }
        throw TransportError(describe(rc, url), rc);
      }
      long status = resp.status;
      if (status == 401 && req.registry_auth && authority == registry_authority && !challenge_answered) {
        challenge_answered = true;
        if (answer_challenge(resp, req, cancel)) continue;
        return resp;
      }
      if ((status == 301 || status == 302 || status == 303 || status == 307 || status == 308) &&
          !resp.header("location").empty()) {
        if (++redirects > kMaxRedirects)
          throw BuildError("registry " + registry + " redirected " + path_of(req.url) + " more than " +
                           std::to_string(kMaxRedirects) + " times; check the registry's configuration");
        std::string next = resolve_url(url, resp.header("location"));
        if (split_url(next).authority != authority)
          log("redirect: " + method + " " + path_of(url) + " → " + split_url(next).authority +
              " (no credentials sent there)");
        url = next;
        if (status == 303) {
          method = "GET";
          attempt_req.body.reset();
        }
        continue;
      }
      if (is_busy(status) && retries < max_retries) {
        backoff(retries++, retry_after(resp), method + " " + path_of(url) + " answered HTTP " + std::to_string(status),
                cancel);
        continue;
      }
      return resp;
    }
  }

  static std::optional<std::chrono::milliseconds> retry_after(const Response& resp) {
    std::string value = resp.header("retry-after");
    if (value.empty() || !std::all_of(value.begin(), value.end(), ::isdigit) || value.size() > 6) return std::nullopt;
    return std::min<std::chrono::milliseconds>(std::chrono::seconds(std::stol(value)), kMaxRetryAfter);
  }

  void backoff(int retry, std::optional<std::chrono::milliseconds> asked, const std::string& why,
               const CancelToken& cancel) {
    auto delay = std::min<std::chrono::milliseconds>(kFirstBackoff * (1 << std::min(retry, 10)), kMaxBackoff);
    if (asked) delay = *asked;
    log("retry: " + why + "; trying again in " + util::format_duration(delay) + " (retry " + std::to_string(retry + 1) +
        " of " + std::to_string(options.max_retries) + ")");
    cancel.sleep_for(delay);
  }

  [[noreturn]] void fail(const std::string& action, const Response& resp) const {
    auto [errors, code] = registry_errors(resp.body);
    std::string hint = credentials_hint(resp.status);
    if (resp.status == 429) hint = "; the registry limits the request rate: try again later";
    if (resp.status == 401) {
      // distribution: `Bearer realm=…,scope="repository:team/app:push",error="insufficient_scope"`.
      auto refusal = parse_challenge(resp.header("www-authenticate"));
      if (refusal && refusal->params["error"] == "insufficient_scope")
        hint = "; the token from the registry's token service does not grant " +
               (refusal->params["scope"].empty() ? std::string("this access") : refusal->params["scope"]) +
               ": ask the registry's administrators for that permission" +
               (credentials ? "" : ", or log in (imgbake login " + registry + ")");
    }
    throw RegistryError("registry " + registry + ": " + action + " failed: HTTP " + std::to_string(resp.status) +
                            (errors.empty() ? "" : ": " + errors) + hint,
                        static_cast<int>(resp.status), code);
  }

  std::string url_for(const std::string& path) const { return base_url + path; }
  static std::string pull(const std::string& repo) { return "repository:" + repo + ":pull"; }
  static std::string push(const std::string& repo) { return "repository:" + repo + ":pull,push"; }

  // ---- blob uploads ---------------------------------------------------------------------------

  std::string start_upload(const std::string& repo, const CancelToken& cancel) {
    Request req;
    req.method = "POST";
    req.url = url_for("/v2/" + repo + "/blobs/uploads/");
    req.scopes = {push(repo)};
    req.cancel = &cancel;
    Response resp = send(req);
    if (resp.status != 202 || resp.header("location").empty()) fail("POST " + path_of(req.url), resp);
    return resolve_url(req.url, resp.header("location"));
  }

  // The registry's offset of an interrupted upload, with the URL to continue at; nullopt when
  // it dropped the upload (distribution does when part of a chunk arrived).
  std::optional<std::pair<uint64_t, std::string>> upload_status(const std::string& repo, const std::string& location,
                                                                const CancelToken& cancel) {
    Request req;
    req.url = location;
    req.scopes = {push(repo)};
    req.cancel = &cancel;
    Response resp = send(req);
    if (resp.status == 404 || resp.status == 400) return std::nullopt;
    if (resp.status != 204 && resp.status != 200) fail("GET " + path_of(location), resp);
    uint64_t offset = 0;
    std::string range = resp.header("range");
    if (size_t dash = range.find('-'); dash != std::string::npos) {
      // "0-0" is both "nothing" and "one byte" in distribution; starting over from 0 is the safe reading.
      uint64_t last = std::strtoull(range.c_str() + dash + 1, nullptr, 10);
      offset = last == 0 ? 0 : last + 1;
    }
    std::string next = resp.header("location").empty() ? location : resolve_url(location, resp.header("location"));
    return std::make_pair(offset, next);
  }

  void upload(const std::string& repo, const std::string& digest, const Body& whole, std::string location,
              const TransferProgress* progress, const CancelToken& cancel, BlobPushResult& result) {
    const uint64_t size = whole.length;
    const uint64_t chunk = std::max<uint64_t>(options.chunk_size, 1);
    BlobProgress blob_progress{&options.progress, digest, size};
    uint64_t offset = 0;
    int recoveries = 0;
    if (location.empty()) location = start_upload(repo, cancel);
    while (true) {
      uint64_t sent_before = bytes_sent;
      try {
        if (offset == 0 && size <= chunk) {
          finish_upload(repo, digest, location, whole, progress, &blob_progress, result.resumed, cancel);
        } else {
          while (offset < size) {
            uint64_t n = std::min(chunk, size - offset);
            Request req;
            req.method = "PATCH";
            req.url = location;
            req.scopes = {push(repo)};
            req.headers = {kOctetStream,
                           "Content-Range: " + std::to_string(offset) + "-" + std::to_string(offset + n - 1)};
            req.body = whole.slice(offset, n);
            req.progress = progress;
            req.blob_progress = &blob_progress;
            req.progress_base = offset;
            req.progress_total = size;
            req.cancel = &cancel;
            req.retry = false;
            Response resp = send(req);
            if (is_busy(resp.status)) throw BusyAnswer("PATCH " + path_of(location), std::move(resp));
            if (resp.status == 404 && result.resumed) throw UploadGone();
            if (resp.status != 202 || resp.header("location").empty()) fail("PATCH " + path_of(location), resp);
            location = resolve_url(location, resp.header("location"));
            offset += n;
          }
          finish_upload(repo, digest, location, Body::of_bytes({}), nullptr, nullptr, result.resumed, cancel);
        }
        result.bytes_sent += bytes_sent - sent_before;
        blob_progress.report(size, true);
        return;
      } catch (const TransportError& e) {
        result.bytes_sent += bytes_sent - sent_before;
        if (whole.reader || ++recoveries > options.max_retries) throw;  // a stream cannot be sent again
        log("resume: the connection dropped while uploading " + digest + " to " + repo + " (" + e.what() +
            "); asking the registry how much arrived");
      } catch (const BusyAnswer& busy) {
        result.bytes_sent += bytes_sent - sent_before;
        if (whole.reader || ++recoveries > options.max_retries) fail(busy.action(), busy.response());
        backoff(recoveries - 1, retry_after(busy.response()),
                busy.action() + " answered HTTP " + std::to_string(busy.response().status), cancel);
        log("resume: asking the registry how much of " + digest + " arrived before it answered HTTP " +
            std::to_string(busy.response().status));
      } catch (const UploadGone&) {
        result.bytes_sent += bytes_sent - sent_before;
        if (whole.reader || ++recoveries > options.max_retries)
          throw BuildError("registry " + registry + " dropped the upload of " + digest + " to " + repo + " " +
                           std::to_string(recoveries) + " times; check the registry's log");
      }
      auto status = upload_status(repo, location, cancel);
      result.resumed = true;
      if (status && status->first <= size) {
        offset = status->first;
        location = status->second;
        log("resume: continuing the upload of " + digest + " at byte " + std::to_string(offset) + " of " +
            std::to_string(size));
      } else {
        log("resume: the registry dropped the interrupted upload of " + digest + "; uploading it again from the start");
        offset = 0;
        location = start_upload(repo, cancel);
      }
    }
  }

  // Sent once: after a broken connection or a busy answer the caller asks the registry how much
  // arrived before it sends anything again.
  void finish_upload(const std::string& repo, const std::string& digest, const std::string& location, const Body& body,
                     const TransferProgress* progress, BlobProgress* blob_progress, bool resumed,
                     const CancelToken& cancel) {
    Request req;
    req.method = "PUT";
    req.url = with_query(location, "digest=" + url_encode(digest));
    req.scopes = {push(repo)};
    req.headers = {kOctetStream};
    req.body = body;
    req.progress = progress;
    req.blob_progress = blob_progress;
    req.progress_total = body.length;
    req.cancel = &cancel;
    req.retry = false;
    Response resp = send(req);
    if (is_busy(resp.status)) throw BusyAnswer("PUT " + path_of(location), std::move(resp));
    if (resp.status == 404 && resumed) throw UploadGone();
    if (resp.status != 201) fail("PUT " + path_of(location), resp);
    std::string served = resp.header("docker-content-digest");
    if (!served.empty() && served != digest)
      throw BuildError("registry " + registry + " stored the upload as " + served + " instead of " + digest +
                       "; the local file changed while it was uploaded, or the registry is faulty");
  }

  BlobPushResult push(const std::string& repo, const std::string& digest, const Body& body,
                      const std::string& mount_from, const TransferProgress* progress, const CancelToken& cancel) {
    BlobPushResult result;
    if (has_blob(repo, digest, cancel)) {
      result.existed = true;
      return result;
    }
    std::string location;
    if (!mount_from.empty() && mount_from != repo) {
      location = request_mount(repo, digest, mount_from, cancel);
      if (location.empty()) {
        result.mounted = true;
        return result;
      }
    }
    upload(repo, digest, body, location, progress, cancel, result);
    return result;
  }

  // POST …/blobs/uploads/?mount=…&from=…: "" when the blob was mounted, else the location of
  // the upload session the registry opened instead.
  std::string request_mount(const std::string& repo, const std::string& digest, const std::string& from,
                            const CancelToken& cancel) {
    Request req;
    req.method = "POST";
    req.url = url_for("/v2/" + repo + "/blobs/uploads/?mount=" + url_encode(digest) + "&from=" + url_encode(from));
    req.scopes = {push(repo), pull(from)};
    req.cancel = &cancel;
    Response resp = send(req);
    if (resp.status == 201) {
      log("mount: " + digest + " from " + from + " into " + repo);
      return "";
    }
    if (resp.status != 202 || resp.header("location").empty()) fail("POST " + path_of(req.url) + " (mount)", resp);
    return resolve_url(req.url, resp.header("location"));
  }

  BlobPushResult mount_only(const std::string& repo, const std::string& digest, const std::string& from,
                            const CancelToken& cancel) {
    BlobPushResult result;
    if (has_blob(repo, digest, cancel)) {
      result.existed = true;
      return result;
    }
    std::string location = request_mount(repo, digest, from, cancel);
    if (location.empty()) {
      result.mounted = true;
      return result;
    }
    // The registry opened an upload instead: give it back rather than leave it to expire.
    Request del;
    del.method = "DELETE";
    del.url = location;
    del.scopes = {push(repo)};
    del.cancel = &cancel;
    try {
      send(del);
    } catch (const Cancelled&) {
      throw;
    } catch (const std::exception&) {
      // An upload left open expires by itself on the registry (purging).
    }
    return result;
  }

  bool has_blob(const std::string& repo, const std::string& digest, const CancelToken& cancel) {
    Request req;
    req.method = "HEAD";
    req.url = url_for("/v2/" + repo + "/blobs/" + digest);
    req.scopes = {pull(repo)};
    req.cancel = &cancel;
    Response resp = send(req);
    if (resp.status == 200) return true;
    if (resp.status == 404) return false;
    fail("HEAD " + path_of(req.url), resp);
  }
};

Client::Client(std::string registry, ClientOptions options, std::optional<Credentials> credentials)
    : impl_(std::make_unique<Impl>()) {
  init_curl_once();
  impl_->registry = std::move(registry);
  impl_->options = std::move(options);
  // IMGBAKE_REGISTRY_CHUNK_SIZE (bytes, or with K/M/G): the PATCH size of large uploads.
  if (const char* e = std::getenv("IMGBAKE_REGISTRY_CHUNK_SIZE"); e && *e) {
    char* end = nullptr;
    uint64_t n = std::strtoull(e, &end, 10);
    int shift = *end == 'K' ? 10 : *end == 'M' ? 20 : *end == 'G' ? 30 : 0;
    if (n == 0 || end == e || (*end != '\0' && (shift == 0 || end[1] != '\0')))
      throw BuildError("IMGBAKE_REGISTRY_CHUNK_SIZE='" + std::string(e) + "' is not a size (e.g. 64M)");
    impl_->options.chunk_size = n << shift;
  }
  impl_->credentials = std::move(credentials);
  impl_->base_url = (impl_->options.plain_http ? "http://" : "https://") + impl_->registry;
  impl_->registry_authority = lower(impl_->registry);
  impl_->curl = curl_easy_init();
  if (!impl_->curl) throw BuildError("libcurl could not create a transfer handle");
}

Client::~Client() { curl_easy_cleanup(impl_->curl); }

void Client::ping() {
  Request req;
  req.url = impl_->url_for("/v2/");
  Response resp = impl_->send(req);
  if (resp.status != 200) impl_->fail("GET /v2/", resp);
}

bool Client::has_blob(const std::string& repo, const std::string& digest) {
  return impl_->has_blob(repo, digest, global_cancel());
}

BlobPushResult Client::push_blob(const std::string& repo, const std::string& digest, uint64_t size,
                                 const std::filesystem::path& file, const std::string& mount_from,
                                 const TransferProgress& progress, const CancelToken& cancel) {
  int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw BuildError("cannot read " + file.string() + " to upload it: " + std::strerror(errno));
  struct FdCloser {
    int fd;
    ~FdCloser() { ::close(fd); }
  } closer{fd};
  struct stat st = {};
  if (::fstat(fd, &st) != 0 || static_cast<uint64_t>(st.st_size) != size)
    throw BuildError(file.string() + " has " + std::to_string(st.st_size) + " bytes, but its descriptor says " +
                     std::to_string(size) + "; the file changed after it was stored");
  Body body{{}, fd, 0, size};
  return impl_->push(repo, digest, body, mount_from, &progress, cancel);
}

BlobPushResult Client::push_blob_bytes(const std::string& repo, const std::string& digest, std::string_view data,
                                       const CancelToken& cancel) {
  if (digest.starts_with("sha256:") && digest != "sha256:" + util::sha256_hex(data))
    throw BuildError("push of " + digest + " to " + repo +
                     ": the bytes have another digest (sha256:" + util::sha256_hex(data) + ")");
  return impl_->push(repo, digest, Body::of_bytes(data), "", nullptr, cancel);
}

BlobPushResult Client::push_blob_stream(const std::string& repo, const std::string& digest, uint64_t size,
                                        const BlobReader& read, const CancelToken& cancel) {
  Body body{{}, -1, 0, size, &read};
  return impl_->push(repo, digest, body, "", nullptr, cancel);
}

BlobPushResult Client::mount_blob(const std::string& repo, const std::string& digest, const std::string& from_repo,
                                  const CancelToken& cancel) {
  return impl_->mount_only(repo, digest, from_repo, cancel);
}

void Client::get_blob(const std::string& repo, const std::string& digest, uint64_t expected_size,
                      const std::function<void(const char*, size_t)>& sink, const TransferProgress& progress,
                      const CancelToken& cancel) {
  std::string algo = digest.substr(0, digest.find(':'));
  if (!util::is_supported_digest(algo) || digest.find(':') == std::string::npos)
    throw BuildError("cannot check blob digest '" + digest + "': use sha256:HEX");
  util::Hasher hasher(algo);
  uint64_t received = 0;
  std::function<void(const char*, size_t)> checked = [&](const char* data, size_t n) {
    received += n;
    if (received > expected_size)
      throw BuildError("registry " + impl_->registry + " sent more than the " + std::to_string(expected_size) +
                       " bytes of blob " + digest + " in " + repo);
    hasher.update(data, n);
    sink(data, n);
  };
  Request req;
  req.url = impl_->url_for("/v2/" + repo + "/blobs/" + digest);
  req.scopes = {Impl::pull(repo)};
  req.sink = &checked;
  BlobProgress blob_progress{&impl_->options.progress, digest, expected_size};
  req.progress = &progress;
  req.blob_progress = &blob_progress;
  req.progress_total = expected_size;
  req.cancel = &cancel;
  Response resp = impl_->send(req);
  if (resp.status != 200) impl_->fail("GET " + path_of(req.url), resp);
  if (received != expected_size)
    throw BuildError("registry " + impl_->registry + " sent " + std::to_string(received) + " bytes of blob " + digest +
                     " in " + repo + ", expected " + std::to_string(expected_size));
  std::string got = algo + ":" + hasher.hex();
  if (got != digest)
    throw BuildError("blob " + digest + " from " + impl_->registry + "/" + repo + " arrived with digest " + got +
                     "; the registry's copy is corrupt or the transfer was altered");
  blob_progress.report(received, true);
}

std::optional<Manifest> Client::get_manifest(const std::string& repo, const std::string& reference) {
  Request req;
  req.url = impl_->url_for("/v2/" + repo + "/manifests/" + reference);
  req.headers = {kManifestAccept};
  req.scopes = {Impl::pull(repo)};
  Response resp = impl_->send(req);
  if (resp.status == 404) return std::nullopt;
  if (resp.status != 200) impl_->fail("GET " + path_of(req.url), resp);
  Manifest m;
  m.bytes = std::move(resp.body);
  m.digest = "sha256:" + util::sha256_hex(m.bytes);
  m.media_type = util::trim(resp.header("content-type").substr(0, resp.header("content-type").find(';')));
  if (m.media_type.empty() || m.media_type == "application/json") {
    try {
      m.media_type = nlohmann::json::parse(m.bytes).value("mediaType", m.media_type);
    } catch (const nlohmann::json::exception&) {
    }
  }
  if (reference.starts_with("sha256:") && reference != m.digest)
    throw BuildError("registry " + impl_->registry + " answered " + repo + "@" + reference +
                     " with a manifest whose digest is " + m.digest + "; the registry is faulty");
  return m;
}

std::string Client::put_manifest(const std::string& repo, const std::string& reference, const std::string& media_type,
                                 const std::string& bytes) {
  std::string digest = "sha256:" + util::sha256_hex(bytes);
  Request req;
  req.method = "PUT";
  req.url = impl_->url_for("/v2/" + repo + "/manifests/" + reference);
  req.headers = {"Content-Type: " + media_type};
  req.body = Body::of_bytes(bytes);
  req.scopes = {Impl::push(repo)};
  Response resp = impl_->send(req);
  if (resp.status != 201 && resp.status != 200) impl_->fail("PUT " + path_of(req.url), resp);
  std::string served = resp.header("docker-content-digest");
  if (!served.empty() && served != digest)
    throw BuildError("registry " + impl_->registry + " stored manifest " + repo + ":" + reference + " as " + served +
                     " but its bytes hash to " + digest + "; the registry rewrote the manifest");
  return digest;
}

std::vector<std::string> Client::tags(const std::string& repo) {
  std::vector<std::string> out;
  std::string url = impl_->url_for("/v2/" + repo + "/tags/list?n=" + std::to_string(kTagPageSize));
  while (!url.empty()) {
    Request req;
    req.url = url;
    req.scopes = {Impl::pull(repo)};
    Response resp = impl_->send(req);
    if (resp.status == 404) return out;  // no such repository yet: no tags
    if (resp.status != 200) impl_->fail("GET " + path_of(url), resp);
    try {
      auto doc = nlohmann::json::parse(resp.body);
      if (auto t = doc.find("tags"); t != doc.end() && t->is_array())
        for (const auto& tag : *t)
          if (tag.is_string()) out.push_back(tag.get<std::string>());
    } catch (const nlohmann::json::exception& e) {
      throw BuildError("registry " + impl_->registry + " answered the tag list of " + repo + " with invalid JSON (" +
                       e.what() + ")");
    }
    // Pagination: Link: </v2/repo/tags/list?last=x&n=1000>; rel="next"
    std::string link = resp.header("link");
    size_t open = link.find('<'), close = link.find('>');
    url = link.find("rel=\"next\"") != std::string::npos && open != std::string::npos && close > open
              ? resolve_url(url, link.substr(open + 1, close - open - 1))
              : "";
  }
  return out;
}

namespace {

std::vector<oci::Descriptor> descriptors_of_index(const std::string& bytes, const std::string& artifact_type,
                                                  const std::string& where) {
  std::vector<oci::Descriptor> out;
  nlohmann::json doc;
  try {
    doc = nlohmann::json::parse(bytes);
  } catch (const nlohmann::json::exception& e) {
    throw BuildError(where + " is not valid JSON (" + e.what() + ")");
  }
  auto manifests = doc.find("manifests");
  if (manifests == doc.end() || !manifests->is_array()) return out;
  for (const auto& m : *manifests) {
    if (!m.is_object()) continue;
    if (!artifact_type.empty() && m.value("artifactType", "") != artifact_type) continue;
    oci::Descriptor d;
    d.media_type = m.value("mediaType", "");
    d.digest = m.value("digest", "");
    d.size = m.value("size", uint64_t{0});
    if (auto a = m.find("annotations"); a != m.end() && a->is_object())
      for (const auto& [k, v] : a->items())
        if (v.is_string()) d.annotations[k] = v.get<std::string>();
    out.push_back(std::move(d));
  }
  return out;
}

}  // namespace

std::vector<oci::Descriptor> Client::referrers(const std::string& repo, const std::string& digest,
                                               const std::string& artifact_type) {
  Request req;
  req.url = impl_->url_for("/v2/" + repo + "/referrers/" + digest);
  if (!artifact_type.empty()) req.url = with_query(req.url, "artifactType=" + url_encode(artifact_type));
  req.headers = {std::string("Accept: ") + kOciIndexMediaType};
  req.scopes = {Impl::pull(repo)};
  Response resp = impl_->send(req);
  if (resp.status == 200)
    return descriptors_of_index(resp.body, artifact_type, "the referrers of " + digest + " in " + repo);
  if (resp.status != 404) impl_->fail("GET " + path_of(req.url), resp);
  // No referrers API: the referrers tag schema ("sha256-HEX" tags an index of referrers).
  std::string tag = digest.substr(0, digest.find(':')) + "-" + digest_hex(digest);
  auto index = get_manifest(repo, tag);
  if (!index) return {};
  return descriptors_of_index(index->bytes, artifact_type, repo + ":" + tag);
}

bool Client::has_referrers_api(const std::string& repo) {
  Request req;
  req.url = impl_->url_for("/v2/" + repo + "/referrers/sha256:" + util::sha256_hex(""));
  req.headers = {std::string("Accept: ") + kOciIndexMediaType};
  req.scopes = {Impl::pull(repo)};
  Response resp = impl_->send(req);
  return resp.status == 200;
}

uint64_t Client::blob_bytes_sent() const { return impl_->bytes_sent; }
const std::string& Client::registry() const { return impl_->registry; }

}  // namespace imgbake::registry
