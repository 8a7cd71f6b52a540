// A minimal QMP (QEMU Machine Protocol) client over a unix socket: enough to power a
// guest down, read its status and block statistics, and type keys.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "imgbake/cancel.h"
#include "imgbake/unique_fd.h"

namespace imgbake::qemu {

class QmpClient {
 public:
  // Connects (retrying while qemu creates the socket) and negotiates capabilities.
  static std::unique_ptr<QmpClient> connect(const std::string& socket_path, std::chrono::milliseconds timeout,
                                            const CancelToken& cancel);
  ~QmpClient() = default;
  QmpClient(const QmpClient&) = delete;
  QmpClient& operator=(const QmpClient&) = delete;

  // Runs a command; returns its "return" value; throws BuildError with QMP's error text.
  nlohmann::json execute(const std::string& command, const nlohmann::json& arguments = nullptr,
                         std::chrono::milliseconds timeout = std::chrono::seconds(10));

 private:
  explicit QmpClient(util::UniqueFd fd) : fd_(std::move(fd)) {}
  nlohmann::json read_message(std::chrono::steady_clock::time_point deadline);
  util::UniqueFd fd_;
  std::string buf_;
};

}  // namespace imgbake::qemu
