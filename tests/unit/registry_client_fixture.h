// The registry client's unit tests share these: real registries (anonymous, htpasswd, token),
// a TCP proxy that breaks or slows connections, a token service, and helpers.
#pragma once

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

#include "http_test_server.h"
#include "imgbake/oci_client.h"
#include "imgbake/progress.h"
#include "imgbake/provenance.h"
#include "imgbake/util.h"
#include "registry_fixture.h"
#include "sshd_fixture.h"

namespace registry_client_fixture {

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

using http_test_server::HttpAnswer;
using http_test_server::HttpHandler;
using http_test_server::HttpRequest;
using http_test_server::QueryOf;
using http_test_server::TestHttpServer;

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

inline std::string Base64Url(std::string_view data) {
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

inline std::string Sha256(std::string_view data) { return "sha256:" + util::sha256_hex(data); }

inline ClientOptions PlainHttp(std::vector<std::string>* log = nullptr) {
  ClientOptions o;
  o.plain_http = true;
  if (log) o.log = [log](std::string_view line) { log->emplace_back(line); };
  return o;
}

inline std::string FetchBlob(Client& client, const std::string& repo, const std::string& digest, uint64_t size) {
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

inline PushedImage PushImage(Client& client, const std::string& repo, const std::string& tag, const std::string& layer,
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

  static inline LocalRegistry* registry_;
  fs::path work_;
};

// ---- retries ------------------------------------------------------------------------------------

// Answers `times` requests whose method is `method` and whose target contains `target_part` with
// `status` (and the registry's JSON error body); passes everything else through.
inline HttpHandler FailSome(const std::string& method, const std::string& target_part, int status, int times,
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

inline size_t CountRequests(const TestHttpServer& server, const std::string& method, const std::string& target_part) {
  auto all = server.requests();
  return static_cast<size_t>(std::count_if(all.begin(), all.end(), [&](const HttpRequest& r) {
    return r.method == method && r.target.find(target_part) != std::string::npos;
  }));
}

inline std::string Lines(const std::vector<std::string>& log) { return util::join(log, "\n"); }

struct ProgressCall {
  std::string digest;
  uint64_t done, total;
  Clock::time_point at;
};

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

  static inline LocalRegistry* registry_;
  static inline fs::path* auth_dir_;
  fs::path work_;
  std::vector<std::pair<std::string, std::optional<std::string>>> saved_env_;
};

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

  static inline LocalRegistry* registry_;
  static inline TokenService* tokens_;
  static inline fs::path* bundle_dir_;
  fs::path work_;
};

}  // namespace registry_client_fixture
