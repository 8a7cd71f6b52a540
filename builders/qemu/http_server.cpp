#include "http_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <optional>
#include <vector>

#include "imgbake/error.h"

namespace imgbake::qemu {

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// How long a client may send nothing (while we wait for its request) or accept nothing
// (while we send to it) before the connection is dropped.
constexpr auto kIdleTimeout = std::chrono::seconds(30);
constexpr size_t kMaxRequestHead = 16 * 1024;
constexpr size_t kMaxConnections = 32;

std::string errno_text() { return std::strerror(errno); }

enum class Ready { Yes, Stopped, TimedOut };

// Waits until `fd` is ready for `events`, the server stops, or `timeout` passes.
Ready wait_for(int fd, short events, int stop_fd, std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  while (true) {
    auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return Ready::TimedOut;
    pollfd fds[2] = {{fd, events, 0}, {stop_fd, POLLIN, 0}};
    int r = poll(fds, 2, static_cast<int>(left.count()));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return Ready::TimedOut;
    if (fds[1].revents != 0) return Ready::Stopped;
    if (fds[0].revents != 0) return Ready::Yes;
  }
}

// Sends all of `data`; false when the client went away, stalled, or the server stops.
bool send_all(int fd, std::string_view data, int stop_fd) {
  while (!data.empty()) {
    ssize_t n = send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n > 0) {
      data.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (wait_for(fd, POLLOUT, stop_fd, kIdleTimeout) != Ready::Yes) return false;
      continue;
    }
    return false;
  }
  return true;
}

// Streams `size` bytes of `file_fd`; returns how many were sent.
off_t send_file(int fd, int file_fd, off_t size, int stop_fd) {
  off_t offset = 0;
  while (offset < size) {
    size_t chunk = static_cast<size_t>(std::min<off_t>(size - offset, off_t{1} << 30));
    ssize_t n = sendfile(fd, file_fd, &offset, chunk);
    if (n > 0) continue;
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (wait_for(fd, POLLOUT, stop_fd, kIdleTimeout) != Ready::Yes) break;
      continue;
    }
    break;  // an error, or the file shrank under us (n == 0)
  }
  return offset;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::optional<std::string> percent_decode(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      out += in[i];
      continue;
    }
    if (i + 2 >= in.size()) return std::nullopt;
    int hi = hex_value(in[i + 1]);
    int lo = hex_value(in[i + 2]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  if (out.find('\0') != std::string::npos) return std::nullopt;
  return out;
}

// "/a//b/./c" → "/a/b/c"; nullopt when a segment is "..".
std::optional<std::string> clean_path(std::string_view path) {
  std::string out;
  size_t i = 0;
  while (i <= path.size()) {
    size_t slash = path.find('/', i);
    if (slash == std::string_view::npos) slash = path.size();
    std::string_view segment = path.substr(i, slash - i);
    if (segment == "..") return std::nullopt;
    if (!segment.empty() && segment != ".") {
      out += '/';
      out += segment;
    }
    i = slash + 1;
  }
  if (out.empty()) out = "/";
  return out;
}

std::string content_type(const std::string& path, std::string_view head) {
  static const std::map<std::string, std::string> kByExtension = {
      {".html", "text/html; charset=utf-8"},
      {".htm", "text/html; charset=utf-8"},
      {".css", "text/css; charset=utf-8"},
      {".js", "text/javascript; charset=utf-8"},
      {".json", "application/json"},
      {".xml", "text/xml; charset=utf-8"},
      {".txt", "text/plain; charset=utf-8"},
      {".cfg", "text/plain; charset=utf-8"},
      {".ks", "text/plain; charset=utf-8"},
      {".seed", "text/plain; charset=utf-8"},
      {".sh", "text/plain; charset=utf-8"},
      {".yaml", "text/plain; charset=utf-8"},
      {".yml", "text/plain; charset=utf-8"},
      {".iso", "application/octet-stream"},
      {".img", "application/octet-stream"},
      {".gz", "application/gzip"},
      {".xz", "application/x-xz"},
      {".tar", "application/x-tar"},
      {".zip", "application/zip"},
      {".png", "image/png"},
      {".jpg", "image/jpeg"},
      {".svg", "image/svg+xml"},
  };
  std::string ext = fs::path(path).extension().string();
  for (char& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (auto it = kByExtension.find(ext); it != kByExtension.end()) return it->second;
  // Like Go's file server, which Packer uses: sniff the start ("user-data" has no extension).
  for (unsigned char c : head)
    if (c == 0 || (c < 0x20 && c != '\n' && c != '\r' && c != '\t' && c != '\f' && c != 0x1B))
      return "application/octet-stream";
  return "text/plain; charset=utf-8";
}

std::string status_line(int status) {
  switch (status) {
    case 200: return "200 OK";
    case 400: return "400 Bad Request";
    case 403: return "403 Forbidden";
    case 404: return "404 Not Found";
    case 405: return "405 Method Not Allowed";
    case 431: return "431 Request Header Fields Too Large";
    case 500: return "500 Internal Server Error";
    case 503: return "503 Service Unavailable";
    default: return std::to_string(status);
  }
}

std::string response_head(int status, const std::string& type, off_t length, const std::string& extra = "") {
  return "HTTP/1.1 " + status_line(status) + "\r\nContent-Type: " + type +
         "\r\nContent-Length: " + std::to_string(length) + "\r\n" + extra +
         "Connection: close\r\nServer: imgbake\r\n\r\n";
}

}  // namespace

std::unique_ptr<HttpServer> HttpServer::start(const std::string& directory, std::map<std::string, std::string> content,
                                              const std::string& bind_address, int port_min, int port_max) {
  std::unique_ptr<HttpServer> server(new HttpServer());
  if (!directory.empty()) {
    std::error_code ec;
    if (!fs::is_directory(directory, ec))
      throw BuildError("http_directory '" + directory + "' is not a directory; create it or fix the path");
    server->directory_ = fs::absolute(directory).lexically_normal().string();
  }
  for (auto& [path, body] : content) {
    auto clean = clean_path(path);
    if (!clean)
      throw BuildError("http_content path '" + path + "' contains '..'; give the path as the URL a client requests");
    server->content_.insert_or_assign(*clean, std::move(body));
  }

  if (port_min < 0 || port_max > 65535 || port_min > port_max)
    throw BuildError("HTTP port range " + std::to_string(port_min) + ".." + std::to_string(port_max) +
                     " is not valid; http_port_min and http_port_max must be 0..65535 with min <= max");

  std::string address = bind_address.empty() ? "0.0.0.0" : bind_address;
  sockaddr_storage storage{};
  socklen_t length = 0;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&storage);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&storage);
  if (inet_pton(AF_INET, address.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    length = sizeof *v4;
  } else if (inet_pton(AF_INET6, address.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    length = sizeof *v6;
  } else {
    throw BuildError("http_bind_address '" + address + "' is not an IP address (e.g. 127.0.0.1 or 0.0.0.0)");
  }

  std::string last_error;
  for (int port = port_min; port <= port_max && !server->listen_fd_; ++port) {
    util::UniqueFd fd(socket(storage.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!fd) throw BuildError("cannot create the HTTP server's socket: " + errno_text());
    int one = 1;
    // lets a port in TIME_WAIT from an earlier build be reused; a port someone listens on stays taken
    setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (storage.ss_family == AF_INET)
      v4->sin_port = htons(static_cast<uint16_t>(port));
    else
      v6->sin6_port = htons(static_cast<uint16_t>(port));
    if (bind(fd.get(), reinterpret_cast<sockaddr*>(&storage), length) == 0 && listen(fd.get(), 64) == 0) {
      server->listen_fd_ = std::move(fd);
      break;
    }
    int err = errno;
    last_error = std::strerror(err);
    if (err != EADDRINUSE && err != EACCES)
      throw BuildError("cannot listen on " + address + ":" + std::to_string(port) +
                       " for the HTTP server: " + last_error);
  }
  if (!server->listen_fd_)
    throw BuildError("no free port for the HTTP server on " + address + " between " + std::to_string(port_min) +
                     " and " + std::to_string(port_max) + " (last: " + last_error +
                     "); widen http_port_min..http_port_max or stop what uses them");

  sockaddr_storage bound{};
  socklen_t bound_length = sizeof bound;
  getsockname(server->listen_fd_.get(), reinterpret_cast<sockaddr*>(&bound), &bound_length);
  server->port_ = ntohs(bound.ss_family == AF_INET ? reinterpret_cast<sockaddr_in*>(&bound)->sin_port
                                                   : reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port);

  server->stop_fd_.reset(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!server->stop_fd_) throw BuildError("cannot create the HTTP server's stop event: " + errno_text());
  server->accept_thread_ = std::thread([s = server.get()] { s->accept_loop(); });
  return server;
}

HttpServer::~HttpServer() {
  if (stop_fd_) {
    uint64_t one = 1;
    (void)!write(stop_fd_.get(), &one, sizeof one);
  }
  if (accept_thread_.joinable()) accept_thread_.join();
  for (Connection& c : connections_)
    if (c.thread.joinable()) c.thread.join();
}

void HttpServer::write_log(const std::string& line) {
  std::lock_guard lock(log_mutex_);
  if (log) log(line);
}

void HttpServer::accept_loop() {
  while (true) {
    pollfd fds[2] = {{listen_fd_.get(), POLLIN, 0}, {stop_fd_.get(), POLLIN, 0}};
    int r = poll(fds, 2, 1000);
    if (r < 0 && errno != EINTR) return;
    if (fds[1].revents != 0) return;
    // reap finished connections
    for (auto it = connections_.begin(); it != connections_.end();) {
      if (it->done) {
        it->thread.join();
        it = connections_.erase(it);
      } else {
        ++it;
      }
    }
    if (r <= 0 || fds[0].revents == 0) continue;
    util::UniqueFd fd(accept4(listen_fd_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
    if (!fd) continue;  // the client gave up already, or a transient shortage of descriptors
    if (connections_.size() >= kMaxConnections) {
      send_all(fd.get(), response_head(503, "text/plain; charset=utf-8", 0), stop_fd_.get());
      continue;
    }
    Connection& c = connections_.emplace_back();
    c.thread = std::thread([this, fd = std::move(fd), &c]() mutable {
      serve(std::move(fd));
      c.done = true;
    });
  }
}

void HttpServer::serve(util::UniqueFd connection) {
  const int fd = connection.get();
  std::string request;
  size_t head_end = std::string::npos;
  auto deadline = Clock::now() + kIdleTimeout;
  while (head_end == std::string::npos) {
    if (request.size() > kMaxRequestHead) {
      send_all(fd, response_head(431, "text/plain; charset=utf-8", 0), stop_fd_.get());
      return;
    }
    auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0 || wait_for(fd, POLLIN, stop_fd_.get(), left) != Ready::Yes) return;
    char buf[4096];
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) continue;
    if (n <= 0) return;
    request.append(buf, static_cast<size_t>(n));
    head_end = request.find("\r\n\r\n");
    if (head_end == std::string::npos) head_end = request.find("\n\n");
  }

  std::string_view line(request);
  line = line.substr(0, line.find_first_of("\r\n"));
  size_t sp1 = line.find(' ');
  size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  std::string method(line.substr(0, sp1));
  std::string target(sp2 == std::string_view::npos ? "" : line.substr(sp1 + 1, sp2 - sp1 - 1));
  std::string version(sp2 == std::string_view::npos ? "" : line.substr(sp2 + 1));

  auto reply_error = [&](int status, const std::string& body, const std::string& extra = "") {
    std::string response = response_head(status, "text/plain; charset=utf-8", static_cast<off_t>(body.size()), extra);
    if (method != "HEAD") response += body;
    send_all(fd, response, stop_fd_.get());
    write_log(method + " " + target + " " + std::to_string(status) + " " + std::to_string(body.size()) + " bytes");
  };

  if (method.empty() || target.empty() || !version.starts_with("HTTP/")) return reply_error(400, "400 bad request\n");
  if (method != "GET" && method != "HEAD")
    return reply_error(405, "405 method not allowed: only GET and HEAD\n", "Allow: GET, HEAD\r\n");

  // absolute-form ("http://host/path"), as sent through a proxy
  std::string_view path(target);
  if (size_t scheme = path.find("://"); scheme != std::string_view::npos && scheme < path.find('/')) {
    size_t slash = path.find('/', scheme + 3);
    path = slash == std::string_view::npos ? "/" : path.substr(slash);
  }
  path = path.substr(0, path.find_first_of("?#"));
  if (!path.starts_with("/")) return reply_error(400, "400 bad request: the path must start with '/'\n");
  auto decoded = percent_decode(path);
  if (!decoded) return reply_error(400, "400 bad request: malformed %-escape in the path\n");
  auto clean = clean_path(*decoded);
  if (!clean) return reply_error(403, "403 forbidden: '..' is not allowed in paths\n");

  if (auto it = content_.find(*clean); it != content_.end()) {
    const std::string& body = it->second;
    std::string response = response_head(200, content_type(*clean, std::string_view(body).substr(0, 512)),
                                         static_cast<off_t>(body.size()));
    if (method == "GET") response += body;
    send_all(fd, response, stop_fd_.get());
    write_log(method + " " + target + " 200 " + std::to_string(body.size()) + " bytes");
    return;
  }
  if (directory_.empty()) return reply_error(404, "404 page not found\n");

  std::string file = directory_ + *clean;
  struct stat st {};
  if (stat(file.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
    file += (file.ends_with("/") ? "" : "/") + std::string("index.html");
    if (stat(file.c_str(), &st) != 0) return reply_error(404, "404 page not found\n");
  }
  util::UniqueFd file_owner(open(file.c_str(), O_RDONLY | O_CLOEXEC));
  if (!file_owner) {
    if (errno == EACCES) return reply_error(403, "403 forbidden: the file is not readable\n");
    return reply_error(404, "404 page not found\n");
  }
  const int file_fd = file_owner.get();
  if (fstat(file_fd, &st) != 0 || !S_ISREG(st.st_mode)) return reply_error(404, "404 page not found\n");

  char head[512];
  ssize_t head_length = pread(file_fd, head, sizeof head, 0);
  std::string type = content_type(file, std::string_view(head, head_length > 0 ? static_cast<size_t>(head_length) : 0));
  if (!send_all(fd, response_head(200, type, st.st_size), stop_fd_.get())) return;
  if (method == "HEAD") {
    write_log(method + " " + target + " 200 " + std::to_string(st.st_size) + " bytes");
    return;
  }
  off_t sent = send_file(fd, file_fd, st.st_size, stop_fd_.get());
  if (sent == st.st_size)
    write_log(method + " " + target + " 200 " + std::to_string(sent) + " bytes");
  else
    write_log(method + " " + target + " 200 cut off after " + std::to_string(sent) + " of " +
              std::to_string(st.st_size) + " bytes (the client went away or stalled)");
}

}  // namespace imgbake::qemu
