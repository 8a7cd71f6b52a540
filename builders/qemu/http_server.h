// Packer's http_directory / http_content: a small static file server that a booting
// installer fetches its preseed/kickstart/cloud-init files from. A qemu guest on user-mode
// networking reaches 127.0.0.1 of the host as 10.0.2.2.
#pragma once

#include <atomic>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

#include "imgbake/unique_fd.h"

namespace imgbake::qemu {

// GET and HEAD only (405 otherwise); one request per connection ("Connection: close"); each
// connection on its own thread with idle timeouts, so one stalled client cannot hold up others.
// Paths are URL-decoded; a ".." segment is refused (403); symlinks inside `directory` are
// followed, even when they point out of it (as Packer's Go file server does). A directory
// path serves its index.html, if any. Files are streamed with sendfile(), never read whole.
class HttpServer {
 public:
  // `directory` may be empty; `content` maps URL paths ("/preseed.cfg"; the leading '/' may be
  // left out) to bodies and wins over files. Listens on `bind_address` (empty: all IPv4
  // addresses) at the first free port in [port_min, port_max] (Packer: 8000..9000; 0..0 lets
  // the kernel choose). Throws BuildError when the directory is missing, the address is not an
  // IP address, or no port in the range is free.
  static std::unique_ptr<HttpServer> start(const std::string& directory, std::map<std::string, std::string> content,
                                           const std::string& bind_address, int port_min, int port_max);
  ~HttpServer();  // stops accepting, ends every connection, joins the threads (promptly)
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  int port() const { return port_; }

  // Called once per request, from the connection's thread (calls are serialized):
  // "GET /preseed.cfg 200 1234 bytes". Set before requests arrive.
  std::function<void(std::string_view)> log;

 private:
  struct Connection {
    std::thread thread;
    std::atomic<bool> done{false};
  };

  HttpServer() = default;
  void accept_loop();
  void serve(util::UniqueFd connection);
  void write_log(const std::string& line);

  std::string directory_;  // absolute, or empty
  std::map<std::string, std::string> content_;
  util::UniqueFd listen_fd_;
  util::UniqueFd stop_fd_;  // an eventfd: readable once the server stops
  int port_ = 0;
  std::thread accept_thread_;
  std::list<Connection> connections_;  // only the accept thread touches it until the destructor joins it
  std::mutex log_mutex_;
};

}  // namespace imgbake::qemu
