// The OCI registry client against real registries: Debian's docker-registry (distribution 2.8) on
// 127.0.0.1, one anonymous and one with htpasswd basic auth, plus a TCP proxy in the test that
// breaks or slows connections on purpose.
#include <gtest/gtest.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <poll.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "imgbake/oci_client.h"
#include "imgbake/progress.h"
#include "imgbake/provenance.h"
#include "imgbake/util.h"
#include "registry_fixture.h"
#include "sshd_fixture.h"

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using namespace imgbake;
using namespace imgbake::registry;
using sshd_fixture::Accepts;
using sshd_fixture::Eventually;
using sshd_fixture::FreePort;
using sshd_fixture::RandomBytes;
using sshd_fixture::ReadFile;
using sshd_fixture::Shell;
using sshd_fixture::WriteFile;
using Clock = std::chrono::steady_clock;

using registry_fixture::kRegistryBinary;
using registry_fixture::LocalRegistry;
using registry_fixture::MakeTempDir;

// A TCP relay to a registry that can break the connection once after `cut_after` bytes went
// upstream, or slow the upload down to about `bytes_per_tick` per 20 ms.
class TestProxy {
 public:
  TestProxy(int upstream_port, uint64_t cut_after, size_t bytes_per_tick = 0)
      : upstream_port_(upstream_port), cut_after_(cut_after), bytes_per_tick_(bytes_per_tick) {
    listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(listen_fd_, 16) != 0 ||
        getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0)
      throw std::runtime_error("proxy: cannot listen");
    port_ = ntohs(a.sin_port);
    threads_.emplace_back([this] { AcceptLoop(); });
  }
  ~TestProxy() {
    stop_ = true;
    for (auto& t : threads_) t.join();
    close(listen_fd_);
  }
  int port() const { return port_; }
  bool cut() const { return cut_done_; }

 private:
  void AcceptLoop() {
    while (!stop_) {
      pollfd p{listen_fd_, POLLIN, 0};
      if (poll(&p, 1, 50) <= 0) continue;
      int client = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (client < 0) continue;
      std::lock_guard<std::mutex> lock(mutex_);
      threads_.emplace_back([this, client] { Relay(client); });
    }
  }

  void Relay(int client) {
    int upstream = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<uint16_t>(upstream_port_));
    if (connect(upstream, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      close(client);
      close(upstream);
      return;
    }
    std::vector<char> buf(64 * 1024);
    bool open = true;
    while (open && !stop_) {
      pollfd fds[2] = {{client, POLLIN, 0}, {upstream, POLLIN, 0}};
      if (poll(fds, 2, 50) <= 0) continue;
      for (int i = 0; i < 2 && open; ++i) {
        if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
        int from = i == 0 ? client : upstream, to = i == 0 ? upstream : client;
        size_t want = i == 0 && bytes_per_tick_ ? std::min(buf.size(), bytes_per_tick_) : buf.size();
        ssize_t n = read(from, buf.data(), want);
        if (n <= 0) {
          open = false;
          break;
        }
        size_t forward = static_cast<size_t>(n);
        bool cut_now = false;
        if (i == 0 && cut_after_ && !cut_done_) {
          uint64_t before = upstream_bytes_.fetch_add(forward);
          if (before + forward >= cut_after_) {
            forward = static_cast<size_t>(cut_after_ > before ? cut_after_ - before : 0);
            cut_now = true;
          }
        }
        for (size_t off = 0; off < forward;) {
          ssize_t w = write(to, buf.data() + off, forward - off);
          if (w <= 0) {
            open = false;
            break;
          }
          off += static_cast<size_t>(w);
        }
        if (cut_now) {
          cut_done_ = true;
          open = false;
        }
        if (i == 0 && bytes_per_tick_) std::this_thread::sleep_for(20ms);  // the throttle itself
      }
    }
    shutdown(client, SHUT_RDWR);
    shutdown(upstream, SHUT_RDWR);
    close(client);
    close(upstream);
  }

  int upstream_port_;
  uint64_t cut_after_;
  size_t bytes_per_tick_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<bool> cut_done_{false};
  std::atomic<uint64_t> upstream_bytes_{0};
  std::mutex mutex_;
  std::vector<std::thread> threads_;
};

// ---- an HTTP server for faults, redirects and a token service ---------------------------------

struct HttpRequest {
  std::string method;
  std::string target;                          // path and query
  std::map<std::string, std::string> headers;  // lower-case names
  std::string header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? "" : it->second;
  }
};

struct HttpAnswer {
  int status = 200;
  std::vector<std::string> headers;  // "Name: value"
  std::string body;
};

// Answers a request, or nullopt: the server passes it on to its upstream.
using HttpHandler = std::function<std::optional<HttpAnswer>(const HttpRequest&)>;

// A small HTTP/1.1 server on 127.0.0.1. Requests the handler answers keep the connection open;
// the others go to the upstream port (a registry) on a connection of their own, with
// "Connection: close" both ways so that the relay needs no understanding of response framing.
// Every request head is recorded: tests check what a server received (an Authorization
// header, a scope).
class TestHttpServer {
 public:
  explicit TestHttpServer(HttpHandler handler, int upstream_port = 0)
      : handler_(std::move(handler)), upstream_port_(upstream_port) {
    listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(listen_fd_, 16) != 0 ||
        getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0)
      throw std::runtime_error("test HTTP server: cannot listen on 127.0.0.1");
    port_ = ntohs(a.sin_port);
    accept_thread_ = std::thread([this] { AcceptLoop(); });
  }
  ~TestHttpServer() {
    stop_ = true;
    accept_thread_.join();  // no new connection threads after this
    for (auto& t : threads_) t.join();
    close(listen_fd_);
  }
  int port() const { return port_; }
  std::string host() const { return "127.0.0.1:" + std::to_string(port_); }
  std::vector<HttpRequest> requests() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return requests_;
  }

 private:
  static constexpr auto kIoTimeout = 30s;

  void AcceptLoop() {
    while (!stop_) {
      pollfd p{listen_fd_, POLLIN, 0};
      if (poll(&p, 1, 50) <= 0) continue;
      int client = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (client < 0) continue;
      std::lock_guard<std::mutex> lock(mutex_);
      threads_.emplace_back([this, client] {
        Serve(client);
        shutdown(client, SHUT_RDWR);
        close(client);
      });
    }
  }

  // Appends what `fd` has to `buf`; false at the end of the stream, on an error, on stop, or
  // when nothing came for kIoTimeout.
  bool ReadMore(int fd, std::string& buf) {
    auto deadline = Clock::now() + kIoTimeout;
    while (!stop_ && Clock::now() < deadline) {
      pollfd p{fd, POLLIN, 0};
      if (poll(&p, 1, 50) <= 0) continue;
      char chunk[64 * 1024];
      ssize_t n = read(fd, chunk, sizeof chunk);
      if (n <= 0) return false;
      buf.append(chunk, static_cast<size_t>(n));
      return true;
    }
    return false;
  }

  static bool WriteAll(int fd, std::string_view data) {
    while (!data.empty()) {
      ssize_t n = send(fd, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      data.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }

  static HttpRequest ParseHead(const std::string& head) {
    HttpRequest req;
    std::vector<std::string> lines = util::split(head, '\n');
    std::vector<std::string> first = util::split(util::trim(lines.empty() ? "" : lines[0]), ' ');
    if (first.size() >= 2) {
      req.method = first[0];
      req.target = first[1];
    }
    for (size_t i = 1; i < lines.size(); ++i) {
      size_t colon = lines[i].find(':');
      if (colon == std::string::npos) continue;
      std::string name = lines[i].substr(0, colon);
      std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
      req.headers[name] = util::trim(lines[i].substr(colon + 1));
    }
    return req;
  }

  static std::string Reason(int status) {
    switch (status) {
      case 200: return "OK";
      case 307: return "Temporary Redirect";
      case 401: return "Unauthorized";
      case 429: return "Too Many Requests";
      case 502: return "Bad Gateway";
      case 503: return "Service Unavailable";
      default: return "Status";
    }
  }

  void Serve(int client) {
    std::string buf;
    while (!stop_) {
      size_t end;
      while ((end = buf.find("\r\n\r\n")) == std::string::npos)
        if (!ReadMore(client, buf)) return;
      std::string head = buf.substr(0, end + 2);
      buf.erase(0, end + 4);
      HttpRequest req = ParseHead(head);
      {
        std::lock_guard<std::mutex> lock(mutex_);
        requests_.push_back(req);
      }
      uint64_t length = std::strtoull(req.header("content-length").c_str(), nullptr, 10);
      std::optional<HttpAnswer> answer = handler_(req);
      if (!answer && !upstream_port_)
        answer = HttpAnswer{502, {}, "no handler and no upstream for " + req.method + " " + req.target};
      if (!answer) {
        Forward(client, head, length, buf);
        return;
      }
      for (uint64_t left = length; left > 0;) {  // the body is not wanted, but it must be read
        if (buf.empty() && !ReadMore(client, buf)) return;
        size_t take = static_cast<size_t>(std::min<uint64_t>(left, buf.size()));
        buf.erase(0, take);
        left -= take;
      }
      std::string out = "HTTP/1.1 " + std::to_string(answer->status) + " " + Reason(answer->status) +
                        "\r\nContent-Length: " + std::to_string(answer->body.size()) + "\r\n";
      for (const std::string& h : answer->headers) out += h + "\r\n";
      out += "\r\n";
      if (req.method != "HEAD") out += answer->body;
      if (!WriteAll(client, out)) return;
    }
  }

  void Forward(int client, const std::string& head, uint64_t length, std::string& buf) {
    int upstream = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<uint16_t>(upstream_port_));
    struct Closer {
      int fd;
      ~Closer() { close(fd); }
    } closer{upstream};
    if (connect(upstream, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return;
    std::string out;
    for (const std::string& line : util::split(head, '\n')) {
      std::string l = util::trim(line);
      if (l.empty() || util::glob_match("[Cc]onnection:*", l)) continue;
      out += l + "\r\n";
    }
    out += "Connection: close\r\n\r\n";
    if (!WriteAll(upstream, out)) return;
    for (uint64_t left = length; left > 0;) {
      if (buf.empty() && !ReadMore(client, buf)) return;
      size_t take = static_cast<size_t>(std::min<uint64_t>(left, buf.size()));
      if (!WriteAll(upstream, std::string_view(buf).substr(0, take))) return;
      buf.erase(0, take);
      left -= take;
    }
    std::string answer;
    size_t end;
    while ((end = answer.find("\r\n")) == std::string::npos)
      if (!ReadMore(upstream, answer)) return;
    // After the status line: the client must not reuse this connection.
    answer.insert(end + 2, "Connection: close\r\n");
    if (!WriteAll(client, answer)) return;
    std::string more;
    while (ReadMore(upstream, more)) {
      if (!WriteAll(client, more)) return;
      more.clear();
    }
  }

  HttpHandler handler_;
  int upstream_port_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  mutable std::mutex mutex_;
  std::thread accept_thread_;
  std::vector<std::thread> threads_;
  std::vector<HttpRequest> requests_;
};

std::string PercentDecode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      out += static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16));
      i += 2;
    } else {
      out += s[i] == '+' ? ' ' : s[i];
    }
  }
  return out;
}

// "?service=x&scope=a&scope=b" → {{"service","x"},{"scope","a"},{"scope","b"}}.
std::multimap<std::string, std::string> QueryOf(const std::string& target) {
  std::multimap<std::string, std::string> out;
  size_t q = target.find('?');
  if (q == std::string::npos) return out;
  for (const std::string& pair : util::split(target.substr(q + 1), '&')) {
    size_t eq = pair.find('=');
    out.emplace(PercentDecode(pair.substr(0, eq)), eq == std::string::npos ? "" : PercentDecode(pair.substr(eq + 1)));
  }
  return out;
}

std::string Base64Url(std::string_view data) {
  std::string s = provenance::base64_encode(data);
  for (char& c : s) c = c == '+' ? '-' : c == '/' ? '_' : c;
  while (!s.empty() && s.back() == '=') s.pop_back();
  return s;
}

// A token service as distribution's `auth: token` expects one: checks basic credentials and
// mints ES256 JWTs whose "x5c" header carries a self-signed certificate, which the registry
// trusts through `rootcertbundle` (distribution 2.8.2 accepts x5c chains, a JWK, or a "kid" in
// libtrust's format; x5c needs no libtrust key id).
class TokenService {
 public:
  static constexpr const char* kService = "imgbake-test-registry";
  static constexpr const char* kIssuer = "imgbake-test-issuer";

  TokenService() {
    key_ = EVP_EC_gen("P-256");
    cert_ = X509_new();
    if (!key_ || !cert_) throw std::runtime_error("token service: OpenSSL cannot make a key");
    X509_set_version(cert_, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(cert_), 1);
    X509_gmtime_adj(X509_getm_notBefore(cert_), -3600);
    X509_gmtime_adj(X509_getm_notAfter(cert_), 86400);
    X509_set_pubkey(cert_, key_);
    X509_NAME* name = X509_get_subject_name(cert_);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>("imgbake test token service"), -1, -1, 0);
    X509_set_issuer_name(cert_, name);
    if (X509_sign(cert_, key_, EVP_sha256()) == 0) throw std::runtime_error("token service: cannot sign the cert");
    server_ = std::make_unique<TestHttpServer>([this](const HttpRequest& r) { return Answer(r); });
  }
  ~TokenService() {
    server_.reset();
    X509_free(cert_);
    EVP_PKEY_free(key_);
  }

  std::string realm() const { return "http://" + server_->host() + "/token"; }
  std::string cert_pem() const {
    BIO* bio = BIO_new(BIO_s_mem());
    PEM_write_bio_X509(bio, cert_);
    char* data = nullptr;
    long n = BIO_get_mem_data(bio, &data);
    std::string pem(data, static_cast<size_t>(n));
    BIO_free(bio);
    return pem;
  }
  // The `auth:` part of a registry configuration that trusts this service.
  std::string registry_auth_yaml(const fs::path& bundle) const {
    WriteFile(bundle, cert_pem(), 0644);
    return std::string("auth: {token: {realm: \"") + realm() + "\", service: " + kService + ", issuer: " + kIssuer +
           ", rootcertbundle: " + bundle.string() + "}}\n";
  }

  struct Grant {
    std::string user;                 // "" when anonymous
    std::string service;              // as asked for
    std::vector<std::string> scopes;  // as asked for
  };
  std::vector<Grant> grants() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return grants_;
  }
  std::vector<std::string> tokens() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return tokens_;
  }
  // What a scope asked for turns into in the token (default: granted as asked).
  void set_policy(std::function<std::string(const std::string&)> policy) {
    std::lock_guard<std::mutex> lock(mutex_);
    policy_ = std::move(policy);
  }
  // The next `n` tokens have expired before they are handed out.
  void hand_out_expired_tokens(int n) { expired_left_ = n; }
  void reset() {
    std::lock_guard<std::mutex> lock(mutex_);
    grants_.clear();
    tokens_.clear();
    policy_ = nullptr;
    expired_left_ = 0;
  }

 private:
  std::optional<HttpAnswer> Answer(const HttpRequest& req) {
    if (req.method != "GET" || !req.target.starts_with("/token")) return HttpAnswer{404, {}, "not here"};
    std::string authz = req.header("authorization");
    std::string user;
    if (!authz.empty()) {
      std::string decoded = authz.starts_with("Basic ") ? provenance::base64_decode(authz.substr(6)) : "";
      if (decoded != "user:pass")
        return HttpAnswer{401, {"Content-Type: application/json"}, R"({"details":"incorrect username or password"})"};
      user = "user";
    }
    auto query = QueryOf(req.target);
    Grant grant{user, "", {}};
    if (auto s = query.find("service"); s != query.end()) grant.service = s->second;
    nlohmann::json access = nlohmann::json::array();
    std::function<std::string(const std::string&)> policy;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      policy = policy_;
    }
    for (auto [it, last] = query.equal_range("scope"); it != last; ++it) {
      grant.scopes.push_back(it->second);
      if (user.empty()) continue;  // anonymous: nothing
      std::string granted = policy ? policy(it->second) : it->second;
      std::vector<std::string> parts = util::split(granted, ':');  // repository:NAME:ACTIONS
      if (parts.size() != 3) continue;
      access.push_back({{"type", parts[0]}, {"name", parts[1]}, {"actions", util::split(parts[2], ',')}});
    }
    int64_t now =
        std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
    bool expired = expired_left_.fetch_sub(1) > 0;
    nlohmann::json header = {{"typ", "JWT"}, {"alg", "ES256"}, {"x5c", {CertDerBase64()}}};
    nlohmann::json claims = {
        {"iss", kIssuer},   {"sub", user},      {"aud", grant.service},   {"exp", expired ? now - 60 : now + 300},
        {"nbf", now - 120}, {"iat", now - 120}, {"jti", util::uuid_v4()}, {"access", access}};
    std::string signing_input = Base64Url(header.dump()) + "." + Base64Url(claims.dump());
    std::string token = signing_input + "." + Base64Url(Sign(signing_input));
    {
      std::lock_guard<std::mutex> lock(mutex_);
      grants_.push_back(grant);
      tokens_.push_back(token);
    }
    nlohmann::json body = {{"token", token}, {"access_token", token}, {"expires_in", 300}};
    return HttpAnswer{200, {"Content-Type: application/json"}, body.dump()};
  }

  std::string CertDerBase64() const {
    unsigned char* der = nullptr;
    int n = i2d_X509(cert_, &der);
    std::string out = provenance::base64_encode(std::string_view(reinterpret_cast<char*>(der), static_cast<size_t>(n)));
    OPENSSL_free(der);
    return out;
  }

  // JWS ES256: the signature is R and S as two 32-byte big-endian numbers, not OpenSSL's DER.
  std::string Sign(const std::string& input) const {
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    size_t der_len = 0;
    std::string der;
    if (EVP_DigestSignInit(ctx, nullptr, EVP_sha256(), nullptr, key_) == 1 &&
        EVP_DigestSign(ctx, nullptr, &der_len, reinterpret_cast<const unsigned char*>(input.data()), input.size()) ==
            1) {
      der.resize(der_len);
      EVP_DigestSign(ctx, reinterpret_cast<unsigned char*>(der.data()), &der_len,
                     reinterpret_cast<const unsigned char*>(input.data()), input.size());
      der.resize(der_len);
    }
    EVP_MD_CTX_free(ctx);
    const auto* p = reinterpret_cast<const unsigned char*>(der.data());
    ECDSA_SIG* sig = d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(der.size()));
    if (!sig) throw std::runtime_error("token service: cannot sign");
    const BIGNUM* r = nullptr;
    const BIGNUM* s = nullptr;
    ECDSA_SIG_get0(sig, &r, &s);
    std::string raw(64, '\0');
    BN_bn2binpad(r, reinterpret_cast<unsigned char*>(raw.data()), 32);
    BN_bn2binpad(s, reinterpret_cast<unsigned char*>(raw.data()) + 32, 32);
    ECDSA_SIG_free(sig);
    return raw;
  }

  EVP_PKEY* key_ = nullptr;
  X509* cert_ = nullptr;
  mutable std::mutex mutex_;
  std::function<std::string(const std::string&)> policy_;
  std::atomic<int> expired_left_{0};
  std::vector<Grant> grants_;
  std::vector<std::string> tokens_;
  std::unique_ptr<TestHttpServer> server_;
};

std::string Sha256(std::string_view data) { return "sha256:" + util::sha256_hex(data); }

ClientOptions PlainHttp(std::vector<std::string>* log = nullptr) {
  ClientOptions o;
  o.plain_http = true;
  if (log) o.log = [log](std::string_view line) { log->emplace_back(line); };
  return o;
}

std::string FetchBlob(Client& client, const std::string& repo, const std::string& digest, uint64_t size) {
  std::string out;
  CancelToken cancel;
  client.get_blob(
      repo, digest, size, [&](const char* d, size_t n) { out.append(d, n); }, nullptr, cancel);
  return out;
}

// A minimal image: config blob + one layer, as an OCI manifest (optionally with a subject).
struct PushedImage {
  std::string manifest;
  std::string digest;
};

PushedImage PushImage(Client& client, const std::string& repo, const std::string& tag, const std::string& layer,
                      const nlohmann::json& subject = nullptr, const std::string& artifact_type = "") {
  CancelToken cancel;
  std::string config = "{}";
  client.push_blob_bytes(repo, Sha256(config), config, cancel);
  client.push_blob_bytes(repo, Sha256(layer), layer, cancel);
  nlohmann::ordered_json m;
  m["schemaVersion"] = 2;
  m["mediaType"] = oci::kManifestMediaType;
  if (!artifact_type.empty()) m["artifactType"] = artifact_type;
  m["config"] = {{"mediaType", artifact_type.empty() ? oci::kConfigMediaType : oci::kEmptyMediaType},
                 {"digest", Sha256(config)},
                 {"size", config.size()}};
  m["layers"] = nlohmann::json::array(
      {{{"mediaType", "application/octet-stream"}, {"digest", Sha256(layer)}, {"size", layer.size()}}});
  if (!subject.is_null()) m["subject"] = subject;
  PushedImage image;
  image.manifest = m.dump();
  // No tag: PUT by digest, as a referrer is stored.
  image.digest =
      client.put_manifest(repo, tag.empty() ? Sha256(image.manifest) : tag, oci::kManifestMediaType, image.manifest);
  return image;
}

class RegistryClientTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (access(kRegistryBinary, X_OK) != 0) return;
    registry_ = new LocalRegistry();
  }
  static void TearDownTestSuite() {
    delete registry_;
    registry_ = nullptr;
  }
  void SetUp() override {
    if (!registry_) GTEST_SKIP() << kRegistryBinary << " is missing (Debian: apt-get install docker-registry)";
    if (!registry_->ready()) GTEST_SKIP() << "docker-registry did not start: " << registry_->log();
    work_ = MakeTempDir("imgbake-registry-test");
  }
  void TearDown() override {
    std::error_code ec;
    if (!work_.empty()) fs::remove_all(work_, ec);
  }

  static LocalRegistry* registry_;
  fs::path work_;
};

LocalRegistry* RegistryClientTest::registry_ = nullptr;

TEST_F(RegistryClientTest, PingAnswers) {
  Client client(registry_->host(), PlainHttp(), std::nullopt);
  EXPECT_NO_THROW(client.ping());
  EXPECT_EQ(client.registry(), registry_->host());
}

TEST_F(RegistryClientTest, PushesSmallAndChunkedBlobsAndReadsThemBack) {
  ClientOptions options = PlainHttp();
  options.chunk_size = 4u << 20;
  Client client(registry_->host(), options, std::nullopt);
  CancelToken cancel;

  std::string small = "hello registry\n";
  BlobPushResult first_small = client.push_blob_bytes("team/blobs", Sha256(small), small, cancel);
  EXPECT_FALSE(first_small.existed);
  EXPECT_EQ(first_small.bytes_sent, small.size());

  std::string big = RandomBytes(20u << 20, 7);
  WriteFile(work_ / "disk.raw", big, 0644);
  uint64_t last_done = 0, last_total = 0;
  BlobPushResult first_big = client.push_blob(
      "team/blobs", Sha256(big), big.size(), work_ / "disk.raw", "",
      [&](uint64_t done, uint64_t total) {
        last_done = done;
        last_total = total;
      },
      cancel);
  EXPECT_FALSE(first_big.existed);
  EXPECT_FALSE(first_big.resumed);
  EXPECT_EQ(first_big.bytes_sent, big.size());
  EXPECT_EQ(last_total, big.size());
  EXPECT_GT(last_done, 0u);

  EXPECT_TRUE(client.has_blob("team/blobs", Sha256(small)));
  EXPECT_TRUE(client.has_blob("team/blobs", Sha256(big)));
  EXPECT_FALSE(client.has_blob("team/blobs", Sha256("never pushed")));
  EXPECT_EQ(Sha256(FetchBlob(client, "team/blobs", Sha256(small), small.size())), Sha256(small));
  EXPECT_EQ(Sha256(FetchBlob(client, "team/blobs", Sha256(big), big.size())), Sha256(big));

  uint64_t sent_before = client.blob_bytes_sent();
  BlobPushResult again =
      client.push_blob("team/blobs", Sha256(big), big.size(), work_ / "disk.raw", "", nullptr, cancel);
  EXPECT_TRUE(again.existed);
  EXPECT_EQ(again.bytes_sent, 0u);
  EXPECT_EQ(client.blob_bytes_sent(), sent_before);
}

TEST_F(RegistryClientTest, GetBlobRejectsAWrongExpectedSize) {
  Client client(registry_->host(), PlainHttp(), std::nullopt);
  CancelToken cancel;
  std::string data = "sized blob";
  client.push_blob_bytes("team/sizes", Sha256(data), data, cancel);
  try {
    FetchBlob(client, "team/sizes", Sha256(data), data.size() - 1);
    FAIL() << "a blob longer than expected was accepted";
  } catch (const BuildError& e) {
    EXPECT_NE(std::string(e.what()).find("more than"), std::string::npos) << e.what();
  }
}

TEST_F(RegistryClientTest, MountsABlobFromAnotherRepository) {
  std::vector<std::string> log;
  Client client(registry_->host(), PlainHttp(&log), std::nullopt);
  CancelToken cancel;
  std::string data = RandomBytes(100000, 11);
  WriteFile(work_ / "layer", data, 0644);
  client.push_blob("team/source", Sha256(data), data.size(), work_ / "layer", "", nullptr, cancel);
  BlobPushResult mounted =
      client.push_blob("team/target", Sha256(data), data.size(), work_ / "layer", "team/source", nullptr, cancel);
  EXPECT_TRUE(mounted.mounted);
  EXPECT_FALSE(mounted.existed);
  EXPECT_EQ(mounted.bytes_sent, 0u);
  EXPECT_TRUE(client.has_blob("team/target", Sha256(data)));
  EXPECT_EQ(Sha256(FetchBlob(client, "team/target", Sha256(data), data.size())), Sha256(data));
}

TEST_F(RegistryClientTest, ManifestsAndTagsRoundTrip) {
  Client client(registry_->host(), PlainHttp(), std::nullopt);
  PushedImage image = PushImage(client, "team/app", "v1", "layer one");
  EXPECT_EQ(image.digest, Sha256(image.manifest));

  auto by_tag = client.get_manifest("team/app", "v1");
  ASSERT_TRUE(by_tag.has_value());
  EXPECT_EQ(by_tag->bytes, image.manifest);
  EXPECT_EQ(by_tag->digest, image.digest);
  EXPECT_EQ(by_tag->media_type, oci::kManifestMediaType);
  auto by_digest = client.get_manifest("team/app", image.digest);
  ASSERT_TRUE(by_digest.has_value());
  EXPECT_EQ(by_digest->bytes, image.manifest);

  client.put_manifest("team/app", "latest", oci::kManifestMediaType, image.manifest);
  auto tags = client.tags("team/app");
  std::sort(tags.begin(), tags.end());
  EXPECT_EQ(tags, (std::vector<std::string>{"latest", "v1"}));

  EXPECT_FALSE(client.get_manifest("team/app", "no-such-tag").has_value());
  EXPECT_FALSE(client.get_manifest("team/no-such-repo", "v1").has_value());
}

TEST_F(RegistryClientTest, AnInvalidManifestNamesTheRegistrysErrorCode) {
  Client client(registry_->host(), PlainHttp(), std::nullopt);
  nlohmann::json m = {{"schemaVersion", 2},
                      {"mediaType", oci::kManifestMediaType},
                      {"config", {{"mediaType", oci::kConfigMediaType}, {"digest", Sha256("absent")}, {"size", 6}}},
                      {"layers", nlohmann::json::array()}};
  try {
    client.put_manifest("team/bad", "v1", oci::kManifestMediaType, m.dump());
    FAIL() << "a manifest with a missing config blob was accepted";
  } catch (const RegistryError& e) {
    std::string what = e.what();
    EXPECT_EQ(e.status(), 400);
    EXPECT_TRUE(e.code() == "MANIFEST_BLOB_UNKNOWN" || e.code() == "MANIFEST_INVALID") << e.code();
    EXPECT_NE(what.find(e.code()), std::string::npos) << what;
    EXPECT_NE(what.find("HTTP 400"), std::string::npos) << what;
    EXPECT_NE(what.find("/v2/team/bad/manifests/v1"), std::string::npos) << what;
  }
}

TEST_F(RegistryClientTest, ResumesAfterTheConnectionDropsMidUpload) {
  TestProxy proxy(registry_->port(), 6'000'000);
  std::vector<std::string> log;
  ClientOptions options = PlainHttp(&log);
  options.chunk_size = 4u << 20;
  Client client("127.0.0.1:" + std::to_string(proxy.port()), options, std::nullopt);
  CancelToken cancel;
  std::string big = RandomBytes(20u << 20, 23);
  WriteFile(work_ / "disk.raw", big, 0644);
  BlobPushResult r;
  try {
    r = client.push_blob("team/resume", Sha256(big), big.size(), work_ / "disk.raw", "", nullptr, cancel);
  } catch (const BuildError& e) {
    FAIL() << e.what() << "\nclient log:\n" << util::join(log, "\n") << "\nregistry log:\n" << registry_->log();
  }
  EXPECT_TRUE(proxy.cut());
  EXPECT_TRUE(r.resumed);
  EXPECT_GT(r.bytes_sent, big.size()) << "the interrupted part is sent again";
  EXPECT_EQ(Sha256(FetchBlob(client, "team/resume", Sha256(big), big.size())), Sha256(big));
  std::string all = util::join(log, "\n");
  EXPECT_NE(all.find("resume:"), std::string::npos) << all;
}

TEST_F(RegistryClientTest, CancellationStopsASlowUploadPromptly) {
  TestProxy proxy(registry_->port(), 0, 16 * 1024);  // about 800 KB/s
  ClientOptions options = PlainHttp();
  options.chunk_size = 4u << 20;
  Client client("127.0.0.1:" + std::to_string(proxy.port()), options, std::nullopt);
  CancelToken cancel;
  std::string big = RandomBytes(8u << 20, 29);
  WriteFile(work_ / "disk.raw", big, 0644);
  Clock::time_point cancelled_at;
  std::thread canceller([&] {
    std::this_thread::sleep_for(700ms);  // mid-upload: the whole upload takes about 10 s
    cancelled_at = Clock::now();
    cancel.cancel(SIGINT);
  });
  bool threw_cancelled = false;
  try {
    client.push_blob("team/cancel", Sha256(big), big.size(), work_ / "disk.raw", "", nullptr, cancel);
  } catch (const Cancelled&) {
    threw_cancelled = true;
  }
  auto stopped_at = Clock::now();
  canceller.join();
  EXPECT_TRUE(threw_cancelled);
  EXPECT_LT(stopped_at - cancelled_at, 2s);
}

TEST_F(RegistryClientTest, FindsReferrersThroughTheTagSchema) {
  Client client(registry_->host(), PlainHttp(), std::nullopt);
  EXPECT_FALSE(client.has_referrers_api("team/signed"));
  PushedImage image = PushImage(client, "team/signed", "v1", "the image");
  nlohmann::json subject = {
      {"mediaType", oci::kManifestMediaType}, {"digest", image.digest}, {"size", image.manifest.size()}};
  PushedImage provenance =
      PushImage(client, "team/signed", "", "an attestation", subject, oci::kProvenanceArtifactType);
  nlohmann::ordered_json index;
  index["schemaVersion"] = 2;
  index["mediaType"] = "application/vnd.oci.image.index.v1+json";
  index["manifests"] = nlohmann::json::array({{{"mediaType", oci::kManifestMediaType},
                                               {"digest", provenance.digest},
                                               {"size", provenance.manifest.size()},
                                               {"artifactType", oci::kProvenanceArtifactType},
                                               {"annotations", {{"org.example.kind", "provenance"}}}}});
  std::string hex = image.digest.substr(7);
  client.put_manifest("team/signed", "sha256-" + hex, "application/vnd.oci.image.index.v1+json", index.dump());

  auto all = client.referrers("team/signed", image.digest);
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].digest, provenance.digest);
  EXPECT_EQ(all[0].size, provenance.manifest.size());
  EXPECT_EQ(all[0].annotations["org.example.kind"], "provenance");
  EXPECT_EQ(client.referrers("team/signed", image.digest, oci::kProvenanceArtifactType).size(), 1u);
  EXPECT_TRUE(client.referrers("team/signed", image.digest, "application/vnd.other").empty());
  EXPECT_TRUE(client.referrers("team/signed", provenance.digest).empty());
}

// ---- retries ------------------------------------------------------------------------------------

// Answers `times` requests whose method is `method` and whose target contains `target_part` with
// `status` (and the registry's JSON error body); passes everything else through.
HttpHandler FailSome(const std::string& method, const std::string& target_part, int status, int times,
                     const std::vector<std::string>& headers = {}) {
  auto left = std::make_shared<std::atomic<int>>(times);
  return [=](const HttpRequest& r) -> std::optional<HttpAnswer> {
    if (r.method != method || r.target.find(target_part) == std::string::npos) return std::nullopt;
    if (left->fetch_sub(1) <= 0) return std::nullopt;
    std::vector<std::string> h = headers;
    h.emplace_back("Content-Type: application/json");
    std::string code = status == 429 ? "TOOMANYREQUESTS" : "UNAVAILABLE";
    std::string message = status == 429 ? "slow down" : "the backend is down for maintenance";
    return HttpAnswer{status, h, R"({"errors":[{"code":")" + code + R"(","message":")" + message + R"("}]})"};
  };
}

size_t CountRequests(const TestHttpServer& server, const std::string& method, const std::string& target_part) {
  auto all = server.requests();
  return static_cast<size_t>(std::count_if(all.begin(), all.end(), [&](const HttpRequest& r) {
    return r.method == method && r.target.find(target_part) != std::string::npos;
  }));
}

std::string Lines(const std::vector<std::string>& log) { return util::join(log, "\n"); }

TEST_F(RegistryClientTest, RetriesATooManyRequestsAnswerAfterItsRetryAfter) {
  Client direct(registry_->host(), PlainHttp(), std::nullopt);
  PushedImage image = PushImage(direct, "team/busy", "v1", "busy layer");
  TestHttpServer proxy(FailSome("GET", "/manifests/v1", 429, 2, {"Retry-After: 1"}), registry_->port());
  std::vector<std::string> log;
  Client client(proxy.host(), PlainHttp(&log), std::nullopt);
  auto started = Clock::now();
  auto m = client.get_manifest("team/busy", "v1");
  auto took = Clock::now() - started;
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->digest, image.digest);
  EXPECT_EQ(CountRequests(proxy, "GET", "/manifests/v1"), 3u);
  EXPECT_GE(took, 1900ms) << "Retry-After: 1 was not waited for (twice)";
  EXPECT_LT(took, 10s);
  std::string all = Lines(log);
  EXPECT_NE(all.find("retry: GET /v2/team/busy/manifests/v1 answered HTTP 429; trying again in 1"), std::string::npos)
      << all;
}

TEST_F(RegistryClientTest, GivesUpAfterTheRetriesNamingTheStatusAndTheRegistrysError) {
  TestHttpServer proxy(FailSome("GET", "/tags/list", 503, 1000), registry_->port());
  std::vector<std::string> log;
  ClientOptions options = PlainHttp(&log);
  options.max_retries = 2;
  Client client(proxy.host(), options, std::nullopt);
  try {
    client.tags("team/down");
    FAIL() << "a registry that answers 503 every time was not given up on";
  } catch (const RegistryError& e) {
    std::string what = e.what();
    EXPECT_EQ(e.status(), 503);
    EXPECT_EQ(e.code(), "UNAVAILABLE");
    EXPECT_NE(what.find("HTTP 503"), std::string::npos) << what;
    EXPECT_NE(what.find("UNAVAILABLE: the backend is down for maintenance"), std::string::npos) << what;
    EXPECT_NE(what.find("GET /v2/team/down/tags/list"), std::string::npos) << what;
    EXPECT_EQ(what.find("?n="), std::string::npos) << "no query strings in errors: " << what;
  }
  EXPECT_EQ(CountRequests(proxy, "GET", "/tags/list"), 3u) << "one try and max_retries (2) retries";
  EXPECT_EQ(log.size(), 2u) << Lines(log);
}

TEST_F(RegistryClientTest, AnUploadRefusedWhileBusyContinuesWhereTheRegistrySaysItStands) {
  // The second chunk is refused once with 503, and the final PUT once with 429.
  auto patch = FailSome("PATCH", "/blobs/uploads/", 503, 1);
  auto put = FailSome("PUT", "/blobs/uploads/", 429, 1, {"Retry-After: 0"});
  auto patches = std::make_shared<std::atomic<int>>(0);
  TestHttpServer proxy(
      [&](const HttpRequest& r) -> std::optional<HttpAnswer> {
        if (r.method == "PATCH" && patches->fetch_add(1) == 1) return patch(r);
        if (r.method == "PUT") return put(r);
        return std::nullopt;
      },
      registry_->port());
  std::vector<std::string> log;
  ClientOptions options = PlainHttp(&log);
  options.chunk_size = 1u << 20;
  Client client(proxy.host(), options, std::nullopt);
  CancelToken cancel;
  std::string big = RandomBytes(3u << 20, 31);
  WriteFile(work_ / "disk.raw", big, 0644);
  BlobPushResult r = client.push_blob("team/refused", Sha256(big), big.size(), work_ / "disk.raw", "", nullptr, cancel);
  EXPECT_TRUE(r.resumed);
  EXPECT_EQ(Sha256(FetchBlob(client, "team/refused", Sha256(big), big.size())), Sha256(big));
  std::string all = Lines(log);
  EXPECT_NE(all.find("answered HTTP 503"), std::string::npos) << all;
  EXPECT_NE(all.find("answered HTTP 429"), std::string::npos) << all;
  EXPECT_NE(all.find("resume: continuing the upload of " + Sha256(big) + " at byte 1048576"), std::string::npos) << all;
}

// ---- progress -----------------------------------------------------------------------------------

struct ProgressCall {
  std::string digest;
  uint64_t done, total;
  Clock::time_point at;
};

TEST_F(RegistryClientTest, ReportsProgressPerBlobRateLimitedWithAFinalCall) {
  std::mutex mutex;
  std::vector<ProgressCall> calls;
  ClientOptions options = PlainHttp();
  options.chunk_size = 1u << 20;
  options.progress = [&](const std::string& digest, uint64_t done, uint64_t total) {
    std::lock_guard<std::mutex> lock(mutex);
    calls.push_back({digest, done, total, Clock::now()});
  };
  // Slowed down to about 3 MB/s so that the upload takes a few seconds.
  TestProxy slow(registry_->port(), 0, 64 * 1024);
  Client client("127.0.0.1:" + std::to_string(slow.port()), options, std::nullopt);
  CancelToken cancel;
  std::string big = RandomBytes(6u << 20, 37);
  WriteFile(work_ / "disk.raw", big, 0644);
  auto started = Clock::now();
  client.push_blob("team/progress", Sha256(big), big.size(), work_ / "disk.raw", "", nullptr, cancel);
  double seconds = std::chrono::duration<double>(Clock::now() - started).count();

  ASSERT_FALSE(calls.empty());
  for (const auto& c : calls) {
    EXPECT_EQ(c.digest, Sha256(big));
    EXPECT_EQ(c.total, big.size());
  }
  EXPECT_EQ(calls.back().done, big.size()) << "the last call says the blob is complete";
  for (size_t i = 1; i < calls.size(); ++i) EXPECT_GE(calls[i].done, calls[i - 1].done) << "call " << i;
  EXPECT_GE(calls.size(), 5u) << "an upload of " << seconds << " s reports as it goes";
  EXPECT_LE(static_cast<double>(calls.size()), seconds * 10 + 2) << "about 10 calls a second";
  for (size_t i = 1; i + 1 < calls.size(); ++i)
    EXPECT_GE(calls[i].at - calls[i - 1].at, 95ms) << "calls " << i - 1 << " and " << i << " (across chunks too)";

  // Downloads report too; a blob that is not sent again reports nothing.
  calls.clear();
  EXPECT_EQ(Sha256(FetchBlob(client, "team/progress", Sha256(big), big.size())), Sha256(big));
  ASSERT_FALSE(calls.empty());
  EXPECT_EQ(calls.back().done, big.size());
  EXPECT_EQ(calls.back().total, big.size());
  calls.clear();
  BlobPushResult again =
      client.push_blob("team/progress", Sha256(big), big.size(), work_ / "disk.raw", "", nullptr, cancel);
  EXPECT_TRUE(again.existed);
  EXPECT_TRUE(calls.empty());
}

TEST_F(RegistryClientTest, ProgressBecomesJsonEventLines) {
  std::vector<std::string> lines;
  ClientOptions options = PlainHttp();
  options.chunk_size = 1u << 20;
  options.progress = json_progress_events([&](const std::string& line) { lines.push_back(line); });
  Client client(registry_->host(), options, std::nullopt);
  CancelToken cancel;
  std::string config = "{\"config\":{}}";
  std::string big = RandomBytes(3u << 20, 41);
  WriteFile(work_ / "disk.raw", big, 0644);
  client.push_blob_bytes("team/json-progress", Sha256(config), config, cancel);
  client.push_blob("team/json-progress", Sha256(big), big.size(), work_ / "disk.raw", "", nullptr, cancel);
  ASSERT_GE(lines.size(), 2u);
  std::map<std::string, nlohmann::json> last;
  for (const std::string& line : lines) {
    nlohmann::json event = nlohmann::json::parse(line);
    EXPECT_EQ(event["type"], "progress") << line;
    last[event["digest"].get<std::string>()] = event;
  }
  ASSERT_EQ(last.size(), 2u);
  EXPECT_EQ(last[Sha256(big)]["done"], big.size());
  EXPECT_EQ(last[Sha256(big)]["total"], big.size());
  EXPECT_EQ(last[Sha256(config)]["done"], config.size());
}

// The registry with htpasswd basic auth (user "user", password "pass").
class RegistryClientAuthTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (access(kRegistryBinary, X_OK) != 0 || access("/usr/bin/htpasswd", X_OK) != 0) return;
    auth_dir_ = new fs::path(MakeTempDir("imgbake-htpasswd"));
    if (Shell("htpasswd -Bbn user pass > " + (*auth_dir_ / "htpasswd").string()) != 0) return;
    registry_ =
        new LocalRegistry("auth: {htpasswd: {realm: test, path: " + (*auth_dir_ / "htpasswd").string() + "}}\n");
  }
  static void TearDownTestSuite() {
    delete registry_;
    registry_ = nullptr;
    if (auth_dir_) fs::remove_all(*auth_dir_);
    delete auth_dir_;
    auth_dir_ = nullptr;
  }
  void SetUp() override {
    if (!registry_)
      GTEST_SKIP() << kRegistryBinary << " or /usr/bin/htpasswd is missing (Debian: apt-get install "
                   << "docker-registry apache2-utils)";
    if (!registry_->ready()) GTEST_SKIP() << "docker-registry did not start: " << registry_->log();
    work_ = MakeTempDir("imgbake-registry-auth-test");
    for (const char* name : {"DOCKER_CONFIG", "IMGBAKE_CONFIG_HOME", "PATH"}) {
      const char* v = std::getenv(name);
      saved_env_.emplace_back(name, v ? std::optional<std::string>(v) : std::nullopt);
    }
    setenv("DOCKER_CONFIG", (work_ / "docker").c_str(), 1);
    setenv("IMGBAKE_CONFIG_HOME", (work_ / "imgbake").c_str(), 1);
    fs::create_directories(work_ / "docker");
  }
  void TearDown() override {
    for (const auto& [name, value] : saved_env_) {
      if (value)
        setenv(name.c_str(), value->c_str(), 1);
      else
        unsetenv(name.c_str());
    }
    std::error_code ec;
    if (!work_.empty()) fs::remove_all(work_, ec);
  }

  static LocalRegistry* registry_;
  static fs::path* auth_dir_;
  fs::path work_;
  std::vector<std::pair<std::string, std::optional<std::string>>> saved_env_;
};

LocalRegistry* RegistryClientAuthTest::registry_ = nullptr;
fs::path* RegistryClientAuthTest::auth_dir_ = nullptr;

TEST_F(RegistryClientAuthTest, AWrongPasswordIsAClearErrorWithoutThePassword) {
  Client anonymous(registry_->host(), PlainHttp(), std::nullopt);
  try {
    anonymous.ping();
    FAIL() << "an anonymous client got in";
  } catch (const RegistryError& e) {
    EXPECT_EQ(e.status(), 401);
    EXPECT_NE(std::string(e.what()).find("imgbake login"), std::string::npos) << e.what();
  }

  Client wrong(registry_->host(), PlainHttp(), Credentials{"user", "not-the-Secret-42", ""});
  try {
    wrong.ping();
    FAIL() << "a wrong password was accepted";
  } catch (const RegistryError& e) {
    std::string what = e.what();
    EXPECT_EQ(e.status(), 401);
    EXPECT_EQ(e.code(), "UNAUTHORIZED");
    EXPECT_NE(what.find("HTTP 401"), std::string::npos) << what;
    EXPECT_NE(what.find("refused"), std::string::npos) << what;
    EXPECT_EQ(what.find("not-the-Secret-42"), std::string::npos) << what;
    EXPECT_EQ(what.find(provenance::base64_encode("user:not-the-Secret-42")), std::string::npos) << what;
  }
}

TEST_F(RegistryClientAuthTest, TheRightPasswordWorksAndNeverReachesTheLog) {
  std::vector<std::string> log;
  Client client(registry_->host(), PlainHttp(&log), Credentials{"user", "pass", ""});
  EXPECT_NO_THROW(client.ping());
  PushedImage image = PushImage(client, "team/private", "v1", "private layer");
  auto m = client.get_manifest("team/private", "v1");
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->digest, image.digest);
  for (const std::string& line : log) {
    EXPECT_EQ(line.find("pass"), std::string::npos) << line;
    EXPECT_EQ(line.find(provenance::base64_encode("user:pass")), std::string::npos) << line;
  }
}

TEST_F(RegistryClientAuthTest, CredentialsComeFromDockerConfigAuths) {
  EXPECT_FALSE(find_credentials(registry_->host()).has_value());
  nlohmann::json config = {
      {"auths", {{"http://" + registry_->host(), {{"auth", provenance::base64_encode("user:pass")}}}}}};
  WriteFile(work_ / "docker" / "config.json", config.dump(), 0600);
  auto found = find_credentials(registry_->host());
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->username, "user");
  EXPECT_EQ(found->password, "pass");
  EXPECT_FALSE(find_credentials("other.example:5000").has_value());
  Client client(registry_->host(), PlainHttp(), found);
  EXPECT_NO_THROW(client.ping());
}

TEST_F(RegistryClientAuthTest, CredentialsComeFromACredentialHelper) {
  fs::create_directories(work_ / "bin");
  // docker-credential-test: reads the server URL on stdin, answers only for the test registry.
  WriteFile(work_ / "bin" / "docker-credential-test",
            "#!/bin/sh\n"
            "[ \"$1\" = get ] || exit 2\n"
            "read -r server\n"
            "if [ \"$server\" = \"" +
                registry_->host() +
                "\" ]; then\n"
                "  printf '{\"ServerURL\":\"%s\",\"Username\":\"user\",\"Secret\":\"pass\"}\\n' \"$server\"\n"
                "else\n"
                "  echo 'credentials not found in native keychain'; exit 1\n"
                "fi\n",
            0755);
  setenv("PATH", ((work_ / "bin").string() + ":" + std::getenv("PATH")).c_str(), 1);
  nlohmann::json config = {{"credHelpers", {{registry_->host(), "test"}, {"other.example", "test"}}},
                           {"auths", {{registry_->host(), {{"auth", provenance::base64_encode("user:stale")}}}}}};
  WriteFile(work_ / "docker" / "config.json", config.dump(), 0600);

  auto found = find_credentials(registry_->host());
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->username, "user");
  EXPECT_EQ(found->password, "pass") << "credHelpers come before auths";
  EXPECT_FALSE(find_credentials("other.example").has_value());
  Client client(registry_->host(), PlainHttp(), found);
  EXPECT_NO_THROW(client.ping());

  nlohmann::json missing = {{"credHelpers", {{registry_->host(), "absent"}}}};
  WriteFile(work_ / "docker" / "config.json", missing.dump(), 0600);
  try {
    find_credentials(registry_->host());
    FAIL() << "a missing credential helper went unnoticed";
  } catch (const BuildError& e) {
    EXPECT_NE(std::string(e.what()).find("docker-credential-absent"), std::string::npos) << e.what();
  }
}

TEST_F(RegistryClientAuthTest, StoredCredentialsAreFoundAndPrivate) {
  store_credentials(registry_->host(), Credentials{"user", "pass", ""});
  fs::path file = work_ / "imgbake" / "auth.json";
  EXPECT_EQ(sshd_fixture::ModeOf(file), 0600u);
  auto found = find_credentials(registry_->host());
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->password, "pass");
}

// ---- bearer tokens ------------------------------------------------------------------------------

// The registry with `auth: token`, trusting TokenService (user "user", password "pass").
class RegistryClientTokenTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (access(kRegistryBinary, X_OK) != 0) return;
    tokens_ = new TokenService();
    bundle_dir_ = new fs::path(MakeTempDir("imgbake-token-bundle"));
    registry_ = new LocalRegistry(tokens_->registry_auth_yaml(*bundle_dir_ / "token-root.pem"));
  }
  static void TearDownTestSuite() {
    delete registry_;
    registry_ = nullptr;
    delete tokens_;
    tokens_ = nullptr;
    if (bundle_dir_) fs::remove_all(*bundle_dir_);
    delete bundle_dir_;
    bundle_dir_ = nullptr;
  }
  void SetUp() override {
    if (!registry_) GTEST_SKIP() << kRegistryBinary << " is missing (Debian: apt-get install docker-registry)";
    if (!registry_->ready()) GTEST_SKIP() << "docker-registry did not start: " << registry_->log();
    tokens_->reset();
    work_ = MakeTempDir("imgbake-registry-token-test");
  }
  void TearDown() override {
    std::error_code ec;
    if (!work_.empty()) fs::remove_all(work_, ec);
  }

  // Neither the password nor a token nor the basic credentials appear in `text`.
  static void ExpectNoSecretIn(const std::string& text) {
    EXPECT_EQ(text.find("pass\""), std::string::npos) << text;
    EXPECT_EQ(text.find(provenance::base64_encode("user:pass")), std::string::npos) << text;
    for (const std::string& token : tokens_->tokens()) {
      EXPECT_EQ(text.find(token), std::string::npos) << text;
      // A JWT's signature part alone is as secret as the token.
      EXPECT_EQ(text.find(token.substr(token.rfind('.') + 1)), std::string::npos) << text;
    }
  }

  static LocalRegistry* registry_;
  static TokenService* tokens_;
  static fs::path* bundle_dir_;
  fs::path work_;
};

LocalRegistry* RegistryClientTokenTest::registry_ = nullptr;
TokenService* RegistryClientTokenTest::tokens_ = nullptr;
fs::path* RegistryClientTokenTest::bundle_dir_ = nullptr;

TEST_F(RegistryClientTokenTest, PushesAndPullsWithATokenPerRepositoryScope) {
  // A busy answer to one chunk puts retry and resume lines into the log, with tokens in use.
  auto patches = std::make_shared<std::atomic<int>>(0);
  auto busy = FailSome("PATCH", "/blobs/uploads/", 503, 1);
  TestHttpServer proxy(
      [&](const HttpRequest& r) -> std::optional<HttpAnswer> {
        if (r.method == "PATCH" && patches->fetch_add(1) == 1) return busy(r);
        return std::nullopt;
      },
      registry_->port());
  std::vector<std::string> log;
  ClientOptions options = PlainHttp(&log);
  options.chunk_size = 1u << 20;
  Client client(proxy.host(), options, Credentials{"user", "pass", ""});
  CancelToken cancel;

  EXPECT_NO_THROW(client.ping());
  PushedImage image = PushImage(client, "team/tokened", "v1", "token layer");
  std::string big = RandomBytes(3u << 20, 43);
  WriteFile(work_ / "disk.raw", big, 0644);
  BlobPushResult pushed =
      client.push_blob("team/tokened", Sha256(big), big.size(), work_ / "disk.raw", "", nullptr, cancel);
  EXPECT_TRUE(pushed.resumed);
  auto m = client.get_manifest("team/tokened", "v1");
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->digest, image.digest);
  EXPECT_EQ(Sha256(FetchBlob(client, "team/tokened", Sha256(big), big.size())), Sha256(big));
  // Another client (anonymous registry access) sees nothing without a token: the registry checks.
  Client anonymous(registry_->host(), PlainHttp(), std::nullopt);
  EXPECT_THROW(anonymous.get_manifest("team/tokened", "v1"), RegistryError);

  std::vector<TokenService::Grant> grants = tokens_->grants();
  std::vector<std::string> scopes;
  for (const auto& g : grants) {
    if (g.user.empty()) continue;  // the anonymous client's
    EXPECT_EQ(g.service, TokenService::kService);
    EXPECT_EQ(g.user, "user");
    scopes.push_back(util::join(g.scopes, " "));
  }
  std::vector<std::string> unique = scopes;
  std::sort(unique.begin(), unique.end());
  unique.erase(std::unique(unique.begin(), unique.end()), unique.end());
  EXPECT_EQ(unique.size(), scopes.size()) << "a token is asked for once per scope: " << util::join(scopes, " | ");
  EXPECT_NE(std::find(scopes.begin(), scopes.end(), "repository:team/tokened:pull,push"), scopes.end())
      << util::join(scopes, " | ");
  EXPECT_NE(std::find(scopes.begin(), scopes.end(), "repository:team/tokened:pull"), scopes.end())
      << util::join(scopes, " | ");

  std::string all = Lines(log);
  EXPECT_NE(all.find("resume:"), std::string::npos) << all;
  ExpectNoSecretIn(all);
}

TEST_F(RegistryClientTokenTest, ATokenForAnotherScopeIsRefusedClearly) {
  tokens_->set_policy([](const std::string& scope) {
    return scope.find("team/forbidden") != std::string::npos ? std::string("repository:team/other:pull,push") : scope;
  });
  std::vector<std::string> log;
  Client client(registry_->host(), PlainHttp(&log), Credentials{"user", "pass", ""});
  EXPECT_NO_THROW(client.ping());
  CancelToken cancel;
  std::string data = "not allowed here";
  try {
    client.push_blob_bytes("team/forbidden", Sha256(data), data, cancel);
    FAIL() << "a token without the repository's scope was accepted";
  } catch (const RegistryError& e) {
    std::string what = e.what();
    EXPECT_EQ(e.status(), 401);
    EXPECT_NE(what.find("HTTP 401"), std::string::npos) << what;
    EXPECT_NE(what.find("does not grant repository:team/forbidden:pull"), std::string::npos) << what;
    ExpectNoSecretIn(what);
  }
  size_t asked = 0;
  for (const auto& g : tokens_->grants())
    if (util::join(g.scopes, " ").find("team/forbidden") != std::string::npos) ++asked;
  EXPECT_EQ(asked, 2u) << "refused: asked again once, not in a loop";
  ExpectNoSecretIn(Lines(log));
}

TEST_F(RegistryClientTokenTest, AnExpiredTokenIsRenewedOnce) {
  Client client(registry_->host(), PlainHttp(), Credentials{"user", "pass", ""});
  EXPECT_NO_THROW(client.ping());
  tokens_->hand_out_expired_tokens(1);
  PushedImage image = PushImage(client, "team/renewed", "v1", "renewed layer");
  auto m = client.get_manifest("team/renewed", image.digest);
  ASSERT_TRUE(m.has_value());
  size_t pull_tokens = 0;
  for (const auto& g : tokens_->grants())
    if (util::join(g.scopes, " ") == "repository:team/renewed:pull") ++pull_tokens;
  EXPECT_EQ(pull_tokens, 2u) << "the expired token was refused and asked for again, once";
}

TEST_F(RegistryClientTokenTest, AWrongPasswordIsRefusedByTheTokenService) {
  Client client(registry_->host(), PlainHttp(), Credentials{"user", "wrong-Secret-77", ""});
  try {
    client.ping();
    FAIL() << "a wrong password got a token";
  } catch (const RegistryError& e) {
    std::string what = e.what();
    EXPECT_EQ(e.status(), 401);
    EXPECT_NE(what.find("token service"), std::string::npos) << what;
    EXPECT_NE(what.find("incorrect username or password"), std::string::npos) << what;
    EXPECT_NE(what.find("imgbake login"), std::string::npos) << what;
    EXPECT_EQ(what.find("wrong-Secret-77"), std::string::npos) << what;
  }
}

TEST_F(RegistryClientTokenTest, ARedirectToAnotherHostCarriesNoCredentials) {
  Client direct(registry_->host(), PlainHttp(), Credentials{"user", "pass", ""});
  CancelToken cancel;
  std::string far = RandomBytes(300000, 47), near = RandomBytes(200000, 53);
  direct.push_blob_bytes("team/redirected", Sha256(far), far, cancel);
  direct.push_blob_bytes("team/redirected", Sha256(near), near, cancel);

  // The "object storage" on another port serves the far blob to whoever asks.
  TestHttpServer storage([&](const HttpRequest& r) -> std::optional<HttpAnswer> {
    if (r.target.starts_with("/objects/" + Sha256(far))) return HttpAnswer{200, {}, far};
    return HttpAnswer{404, {}, "no such object"};
  });
  TestHttpServer front(
      [&](const HttpRequest& r) -> std::optional<HttpAnswer> {
        if (r.method == "GET" && r.target == "/v2/team/redirected/blobs/" + Sha256(far))
          return HttpAnswer{
              307, {"Location: http://" + storage.host() + "/objects/" + Sha256(far) + "?sig=s3cr3t"}, ""};
        if (r.method == "GET" && r.target == "/v2/team/redirected/blobs/" + Sha256(near))
          return HttpAnswer{307, {"Location: /v2/team/redirected/blobs/" + Sha256(near) + "?hop=1"}, ""};
        return std::nullopt;
      },
      registry_->port());
  std::vector<std::string> log;
  Client client(front.host(), PlainHttp(&log), Credentials{"user", "pass", ""});

  EXPECT_EQ(Sha256(FetchBlob(client, "team/redirected", Sha256(far), far.size())), Sha256(far));
  auto at_storage = storage.requests();
  ASSERT_EQ(at_storage.size(), 1u);
  EXPECT_EQ(at_storage[0].header("authorization"), "") << "credentials went to another host";
  EXPECT_NE(at_storage[0].target.find("sig=s3cr3t"), std::string::npos) << "the Location is used as given";

  EXPECT_EQ(Sha256(FetchBlob(client, "team/redirected", Sha256(near), near.size())), Sha256(near));
  bool hop_had_token = false;
  for (const auto& r : front.requests())
    if (r.target.find("?hop=1") != std::string::npos && r.header("authorization").starts_with("Bearer "))
      hop_had_token = true;
  EXPECT_TRUE(hop_had_token) << "a redirect to the registry's own host keeps the token";

  std::string all = Lines(log);
  EXPECT_NE(all.find("redirect: GET /v2/team/redirected/blobs/" + Sha256(far) + " → " + storage.host()),
            std::string::npos)
      << all;
  EXPECT_EQ(all.find("s3cr3t"), std::string::npos) << all;
  ExpectNoSecretIn(all);
}

TEST(RegistryReference, ParsesTheSpellingsOfDockerAndSkopeo) {
  Reference r = Reference::parse("docker://127.0.0.1:5000/team/app:v1");
  EXPECT_EQ(r.registry, "127.0.0.1:5000");
  EXPECT_EQ(r.repository, "team/app");
  EXPECT_EQ(r.tag, "v1");
  EXPECT_EQ(r.str(), "127.0.0.1:5000/team/app:v1");

  Reference hub = Reference::parse("debian");
  EXPECT_EQ(hub.registry, "registry-1.docker.io");
  EXPECT_EQ(hub.repository, "library/debian");
  EXPECT_EQ(Reference::parse("docker.io/team/app").repository, "team/app");

  std::string digest = "sha256:" + std::string(64, 'a');
  Reference pinned = Reference::parse("localhost/app:1.0@" + digest);
  EXPECT_EQ(pinned.registry, "localhost");
  EXPECT_EQ(pinned.tag, "1.0");
  EXPECT_EQ(pinned.digest, digest);
  EXPECT_EQ(pinned.str(), "localhost/app:1.0@" + digest);

  EXPECT_THROW(Reference::parse(""), UsageError);
  EXPECT_THROW(Reference::parse("ghcr.io/Team/App"), UsageError);
  EXPECT_THROW(Reference::parse("ghcr.io/team/app@sha256:abc"), UsageError);
  EXPECT_THROW(Reference::parse("ghcr.io/team/app:-bad"), UsageError);
  try {
    Reference::parse("ghcr.io/team//app");
    FAIL() << "an empty repository part was accepted";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("ghcr.io/team//app"), std::string::npos) << e.what();
  }
}

}  // namespace
