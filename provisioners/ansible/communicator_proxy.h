// Lets a program on the host (ansible-playbook, through the "imgbake" connection plugin that
// connection_plugin.h holds) run commands and move files through the build's communicator: the
// rootfs builder's exec sandbox, or any other. A Unix socket in a private directory (mode 0700)
// takes one JSON request per connection and answers with one JSON line:
//   {"op": "exec", "cmd": "SHELL COMMAND"[, "stdin": BASE64]} -> {"rc": N, "stdout": "…", "stderr": "…"}
//   {"op": "put", "local": "HOST", "remote": "PATH"}  -> {"ok": true}
//   {"op": "fetch", "remote": "PATH", "local": "HOST"} -> {"ok": true}
// and {"error": "…"} when a request fails. Standard input is uploaded to a file in the
// machine's /tmp that the command reads and removes (communicators take no input). Requests are
// served one at a time, on a thread of its own, so the communicator is used from one thread at a
// time (the caller must not use it meanwhile).
#pragma once

#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "imgbake/cancel.h"
#include "imgbake/communicator.h"
#include "imgbake/unique_fd.h"

namespace imgbake {

class CommunicatorProxy {
 public:
  // Listens on `socket_path` (whose directory the caller owns); throws BuildError when it cannot.
  CommunicatorProxy(Communicator& comm, const CancelToken& cancel, std::filesystem::path socket_path,
                    std::function<std::optional<std::chrono::milliseconds>()> time_left);
  // Stops serving (a request being served finishes first) and removes the socket.
  ~CommunicatorProxy();
  CommunicatorProxy(const CommunicatorProxy&) = delete;
  CommunicatorProxy& operator=(const CommunicatorProxy&) = delete;

  const std::filesystem::path& socket_path() const { return path_; }
  // Requests served so far.
  size_t served() const { return served_.load(); }

  // One request's answer; public for the unit tests.
  nlohmann::json handle(const nlohmann::json& request);

 private:
  void serve();
  void serve_one(int fd);

  Communicator& comm_;
  const CancelToken& cancel_;
  std::filesystem::path path_;
  std::function<std::optional<std::chrono::milliseconds>()> time_left_;
  util::UniqueFd listen_;
  std::atomic<bool> stop_{false};
  std::atomic<size_t> served_{0};
  std::thread thread_;
};

}  // namespace imgbake
