// A small HTTP/1.1 server on 127.0.0.1 for unit tests of HTTP clients: answers what its handler
// answers, passes the rest on to an upstream port, and records every request head.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "imgbake/util.h"

namespace http_test_server {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
namespace util = imgbake::util;

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

// A TCP socket listening on 127.0.0.1, on a port the kernel picks (returned in `port`).
inline int ListenOnLoopback(int& port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(fd, 16) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0)
    throw std::runtime_error("test server: cannot listen on 127.0.0.1");
  port = ntohs(a.sin_port);
  return fd;
}

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
    listen_fd_ = ListenOnLoopback(port_);
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

inline std::string PercentDecode(std::string_view s) {
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
inline std::multimap<std::string, std::string> QueryOf(const std::string& target) {
  std::multimap<std::string, std::string> out;
  size_t q = target.find('?');
  if (q == std::string::npos) return out;
  for (const std::string& pair : util::split(target.substr(q + 1), '&')) {
    size_t eq = pair.find('=');
    out.emplace(PercentDecode(pair.substr(0, eq)), eq == std::string::npos ? "" : PercentDecode(pair.substr(eq + 1)));
  }
  return out;
}

}  // namespace http_test_server
