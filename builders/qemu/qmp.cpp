#include "qmp.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "imgbake/error.h"

namespace imgbake::qemu {

std::unique_ptr<QmpClient> QmpClient::connect(const std::string& socket_path, std::chrono::milliseconds timeout,
                                              const CancelToken& cancel) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string last = "no socket yet";
  while (std::chrono::steady_clock::now() < deadline) {
    cancel.throw_if_cancelled();
    util::UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, socket_path.c_str(), sizeof addr.sun_path - 1);
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
      std::unique_ptr<QmpClient> c(new QmpClient(std::move(fd)));
      nlohmann::json greeting = c->read_message(deadline);
      if (!greeting.contains("QMP")) throw BuildError("QMP: unexpected greeting " + greeting.dump());
      c->execute("qmp_capabilities");
      return c;
    }
    last = std::strerror(errno);
    fd.reset();
    cancel.sleep_for(std::chrono::milliseconds(50));
  }
  throw BuildError("cannot connect to qemu's QMP socket " + socket_path + " (" + last + ")");
}

nlohmann::json QmpClient::read_message(std::chrono::steady_clock::time_point deadline) {
  while (true) {
    size_t nl = buf_.find('\n');
    if (nl != std::string::npos) {
      std::string line = buf_.substr(0, nl);
      buf_.erase(0, nl + 1);
      if (line.find_first_not_of(" \r\t") == std::string::npos) continue;
      return nlohmann::json::parse(line);
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) throw BuildError("QMP: no answer from qemu in time");
    struct pollfd p = {fd_.get(), POLLIN, 0};
    int r = poll(&p, 1, static_cast<int>(std::min<long long>(left.count(), 1000)));
    if (r < 0 && errno != EINTR) throw BuildError(std::string("QMP: ") + std::strerror(errno));
    if (r <= 0) continue;
    char tmp[4096];
    ssize_t n = ::read(fd_.get(), tmp, sizeof tmp);
    if (n <= 0) throw BuildError("QMP: qemu closed the connection");
    buf_.append(tmp, static_cast<size_t>(n));
  }
}

nlohmann::json QmpClient::execute(const std::string& command, const nlohmann::json& arguments,
                                  std::chrono::milliseconds timeout) {
  nlohmann::json msg = {{"execute", command}};
  if (!arguments.is_null()) msg["arguments"] = arguments;
  std::string text = msg.dump() + "\n";
  if (::write(fd_.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size()))
    throw BuildError("QMP: cannot send '" + command + "'");
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    nlohmann::json reply = read_message(deadline);
    if (reply.contains("event")) continue;  // asynchronous events are not answers
    if (reply.contains("error"))
      throw BuildError("QMP " + command + ": " + reply["error"].value("desc", reply["error"].dump()));
    if (reply.contains("return")) return reply["return"];
  }
}

}  // namespace imgbake::qemu
