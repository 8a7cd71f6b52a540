// The OCI distribution client on one http::Session (keep-alive). Every request goes through
// Impl::send: authorization (anonymous first, then what the 401 challenge asks for); the
// transport follows redirects without credentials to another host and retries busy answers.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <exception>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "imgbake/http.h"
#include "imgbake/oci_client.h"
#include "imgbake/provenance.h"
#include "imgbake/unique_fd.h"
#include "imgbake/util.h"

namespace imgbake::registry {

namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// Manifests are limited to 4 MiB by most registries; error and token answers are small.
constexpr size_t kMaxBufferedBody = 32u << 20;
constexpr int kMaxRedirects = 10;
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

using http::is_busy;
using http::path_of;
using http::resolve_url;
using http::TransportError;
using Body = http::Body;
using Response = http::Response;

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
  TransportError described(const TransportError& e) const {
    std::string out = "cannot reach registry " + registry + " (" + path_of(e.url()) + "): " + e.what();
    if (e.couldnt_connect())
      out += "; check the registry address and that it is running";
    else if (e.tls_failed())
      out += "; for a registry without TLS use --insecure-registry " + registry;
    return TransportError(out, e.curl_code(), e.url());
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
        throw RegistryError("the token service of registry " + registry + " (" + http::authority_of(realm) +
                                ") answered without a token; check the registry's auth configuration",
                            200, "");
      return token;
    }
    auto [errors, code] = registry_errors(resp.body);
    throw RegistryError("the token service of registry " + registry + " (" + http::authority_of(realm) +
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
    http::Request h;
    h.method = req.method;
    h.url = req.url;
    h.body = req.body;
    if (req.sink) h.sink = *req.sink;
    if ((req.progress && *req.progress) || req.blob_progress)
      h.progress = [&req](uint64_t done, uint64_t total) {
        if (req.blob_progress) req.blob_progress->report(req.progress_base + done, false);
        if (req.progress && *req.progress)
          (*req.progress)(req.progress_base + done, req.progress_total ? req.progress_total : total);
      };
    h.cancel = &cancel;
    h.max_retries = req.retry ? options.max_retries : 0;
    h.max_redirects = kMaxRedirects;
    h.max_collected_body = kMaxBufferedBody;
    const bool to_registry = http::authority_of(req.url) == registry_authority;
    bool challenge_answered = false;
    while (true) {
      // The transport sends the Authorization header to the request's own host only.
      h.headers = req.headers;
      if (req.registry_auth && to_registry) {
        if (std::string authz = authorization(req.scopes, cancel); !authz.empty()) h.headers.push_back(authz);
      } else if (!req.registry_auth && !req.fixed_authorization.empty()) {
        h.headers.push_back(req.fixed_authorization);
      }
      Response resp;
      try {
        resp = session->send(h);
      } catch (const TransportError& e) {
        throw described(e);
      } catch (const http::BodyError& e) {
        throw BuildError(req.method + " " + path_of(req.url) + " on " + registry + ": " + e.what());
      }
      if (resp.status == 401 && req.registry_auth && http::authority_of(resp.url) == registry_authority &&
          !challenge_answered) {
        challenge_answered = true;
        if (answer_challenge(resp, req, cancel)) continue;
      }
      return resp;
    }
  }

  void backoff(int retry, std::optional<std::chrono::milliseconds> asked, const std::string& why,
               const CancelToken& cancel) {
    auto delay = asked ? *asked : http::backoff_delay(retry);
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
      uint64_t sent_before = bytes_sent();
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
        result.bytes_sent += bytes_sent() - sent_before;
        blob_progress.report(size, true);
        return;
      } catch (const TransportError& e) {
        result.bytes_sent += bytes_sent() - sent_before;
        if (!whole.repeatable() || ++recoveries > options.max_retries) throw;  // a stream cannot be sent again
        log("resume: the connection dropped while uploading " + digest + " to " + repo + " (" + e.what() +
            "); asking the registry how much arrived");
      } catch (const BusyAnswer& busy) {
        result.bytes_sent += bytes_sent() - sent_before;
        if (!whole.repeatable() || ++recoveries > options.max_retries) fail(busy.action(), busy.response());
        backoff(recoveries - 1, http::retry_after(busy.response()),
                busy.action() + " answered HTTP " + std::to_string(busy.response().status), cancel);
        log("resume: asking the registry how much of " + digest + " arrived before it answered HTTP " +
            std::to_string(busy.response().status));
      } catch (const UploadGone&) {
        result.bytes_sent += bytes_sent() - sent_before;
        if (!whole.repeatable() || ++recoveries > options.max_retries)
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
  impl_->session = std::make_unique<http::Session>(http::SessionOptions{impl_->options.tls_verify, impl_->options.log});
}

Client::~Client() = default;

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
  util::UniqueFd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) throw BuildError("cannot read " + file.string() + " to upload it: " + std::strerror(errno));
  struct stat st = {};
  if (::fstat(fd.get(), &st) != 0 || static_cast<uint64_t>(st.st_size) != size)
    throw BuildError(file.string() + " has " + std::to_string(st.st_size) + " bytes, but its descriptor says " +
                     std::to_string(size) + "; the file changed after it was stored");
  Body body = Body::of_file(fd.get(), 0, size);
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
  Body body = Body::of_stream(&read, size);
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

uint64_t Client::blob_bytes_sent() const { return impl_->bytes_sent(); }
const std::string& Client::registry() const { return impl_->registry; }

}  // namespace imgbake::registry
