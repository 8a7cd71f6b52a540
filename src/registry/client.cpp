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
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "client_impl.h"
#include "imgbake/http.h"
#include "imgbake/oci_client.h"
#include "imgbake/provenance.h"
#include "imgbake/util.h"

namespace imgbake::registry {

namespace client_detail {

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

}  // namespace client_detail

// The failure of a request to reach the registry, with what to check.
TransportError Client::Impl::described(const TransportError& e) const {
  std::string out = "cannot reach registry " + registry + " (" + path_of(e.url()) + "): " + e.what();
  if (e.couldnt_connect())
    out += "; check the registry address and that it is running";
  else if (e.tls_failed())
    out += "; for a registry without TLS use --insecure-registry " + registry;
  return TransportError(out, e.curl_code(), e.url());
}

Response Client::Impl::send(const Request& req) {
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
    // The transport sends the Authorization header to the request's own origin only.
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
    if (resp.status == 401 && req.registry_auth && to_registry &&
        http::origin_of(resp.url) == http::origin_of(req.url) && !challenge_answered) {
      challenge_answered = true;
      if (answer_challenge(resp, req, cancel)) continue;
    }
    return resp;
  }
}

void Client::Impl::backoff(int retry, std::optional<std::chrono::milliseconds> asked, const std::string& why,
                           const CancelToken& cancel) {
  auto delay = asked ? *asked : http::backoff_delay(retry);
  log("retry: " + why + "; trying again in " + util::format_duration(delay) + " (retry " + std::to_string(retry + 1) +
      " of " + std::to_string(options.max_retries) + ")");
  cancel.sleep_for(delay);
}

[[noreturn]] void Client::Impl::fail(const std::string& action, const Response& resp) const {
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

bool Client::Impl::has_blob(const std::string& repo, const std::string& digest, const CancelToken& cancel) {
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
  // By tag too: what the registry says it served must be what arrived (a sha512 one is not
  // ours to check).
  if (std::string served = resp.header("docker-content-digest"); served.starts_with("sha256:") && served != m.digest)
    throw BuildError("registry " + impl_->registry + " answered " + repo + ":" + reference +
                     " with a manifest whose bytes hash to " + m.digest + " but its Docker-Content-Digest says " +
                     served + "; the manifest was changed on the way or the registry is faulty: nothing was pulled");
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
  if (!artifact_type.empty()) req.url = with_query(req.url, "artifactType=" + util::percent_encode(artifact_type));
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
