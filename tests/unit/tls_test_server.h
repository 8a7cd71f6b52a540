// A server on one 127.0.0.1 port that speaks both TLS (self-signed certificate) and plain HTTP,
// told apart by the first byte a client sends (0x16 opens a TLS handshake). It lets a test put
// an https:// and an http:// URL on the same host and port, as a hostile registry can, and see
// what a client sent over each.
#pragma once

#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "http_test_server.h"

namespace tls_test_server {

struct SeenRequest {
  bool tls = false;
  std::string head;  // request line and headers, as received
  // A header's value ("" when absent); `name` in lower case.
  std::string header(const std::string& name) const {
    std::string lower = head;
    std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
    size_t at = lower.find("\r\n" + name + ":");
    if (at == std::string::npos) return "";
    size_t start = at + 3 + name.size();
    size_t end = head.find("\r\n", start);
    std::string value = head.substr(start, end - start);
    value.erase(0, value.find_first_not_of(' '));
    return value;
  }
};

// What to answer a request: a full HTTP response ("HTTP/1.1 307 …\r\n…\r\n\r\n").
using Responder = std::function<std::string(const SeenRequest&)>;

class DualProtocolServer {
 public:
  explicit DualProtocolServer(Responder responder) : responder_(std::move(responder)) {
    key_ = EVP_EC_gen("P-256");
    cert_ = X509_new();
    ctx_ = SSL_CTX_new(TLS_server_method());
    if (!key_ || !cert_ || !ctx_) throw std::runtime_error("TLS test server: OpenSSL cannot make a key");
    X509_set_version(cert_, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(cert_), 1);
    X509_gmtime_adj(X509_getm_notBefore(cert_), -3600);
    X509_gmtime_adj(X509_getm_notAfter(cert_), 86400);
    X509_set_pubkey(cert_, key_);
    X509_NAME* name = X509_get_subject_name(cert_);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("127.0.0.1"), -1, -1,
                               0);
    X509_set_issuer_name(cert_, name);
    if (X509_sign(cert_, key_, EVP_sha256()) == 0 || SSL_CTX_use_certificate(ctx_, cert_) != 1 ||
        SSL_CTX_use_PrivateKey(ctx_, key_) != 1)
      throw std::runtime_error("TLS test server: cannot set up its certificate");
    listen_fd_ = http_test_server::ListenOnLoopback(port_);
    thread_ = std::thread([this] { AcceptLoop(); });
  }
  ~DualProtocolServer() {
    stop_ = true;
    thread_.join();
    close(listen_fd_);
    SSL_CTX_free(ctx_);
    X509_free(cert_);
    EVP_PKEY_free(key_);
  }
  DualProtocolServer(const DualProtocolServer&) = delete;
  DualProtocolServer& operator=(const DualProtocolServer&) = delete;

  std::string host() const { return "127.0.0.1:" + std::to_string(port_); }
  std::vector<SeenRequest> requests() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return requests_;
  }

 private:
  // One connection at a time, one request per connection (the answers say "Connection: close").
  void AcceptLoop() {
    while (!stop_) {
      pollfd p{listen_fd_, POLLIN, 0};
      if (poll(&p, 1, 50) <= 0) continue;
      int client = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (client < 0) continue;
      timeval timeout{10, 0};  // a client that stalls fails the test instead of hanging it
      setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
      Serve(client);
      shutdown(client, SHUT_RDWR);
      close(client);
    }
  }

  void Serve(int client) {
    unsigned char first = 0;
    if (recv(client, &first, 1, MSG_PEEK) != 1) return;
    SeenRequest req;
    req.tls = first == 0x16;
    SSL* ssl = nullptr;
    if (req.tls) {
      ssl = SSL_new(ctx_);
      SSL_set_fd(ssl, client);
      if (SSL_accept(ssl) != 1) {
        SSL_free(ssl);
        return;
      }
    }
    auto read_some = [&](char* buf, int n) {
      return ssl ? SSL_read(ssl, buf, n) : static_cast<int>(read(client, buf, n));
    };
    while (req.head.find("\r\n\r\n") == std::string::npos) {
      char buf[4096];
      int n = read_some(buf, sizeof buf);
      if (n <= 0) break;
      req.head.append(buf, static_cast<size_t>(n));
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      requests_.push_back(req);
    }
    std::string answer = responder_(req);
    if (ssl) {
      SSL_write(ssl, answer.data(), static_cast<int>(answer.size()));
      SSL_shutdown(ssl);
      SSL_free(ssl);
    } else {
      send(client, answer.data(), answer.size(), MSG_NOSIGNAL);
    }
  }

  Responder responder_;
  EVP_PKEY* key_ = nullptr;
  X509* cert_ = nullptr;
  SSL_CTX* ctx_ = nullptr;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  mutable std::mutex mutex_;
  std::vector<SeenRequest> requests_;
  std::thread thread_;
};

}  // namespace tls_test_server
