// The communicator proxy (communicator_proxy.h).
#include "communicator_proxy.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cerrno>
#include <cstring>

#include "imgbake/error.h"
#include "imgbake/provenance.h"
#include "imgbake/provisioner.h"
#include "imgbake/temp_file.h"
#include "imgbake/util.h"

namespace imgbake {
namespace {

using std::chrono::milliseconds;

// A request is one line; a client that sends nothing for this long is dropped.
constexpr milliseconds kReadTimeout{30000};
// The largest request: ansible pipelines a module with its arguments, base64-encoded, in one line.
constexpr size_t kMaxRequest = size_t{64} << 20;

enum class ReadLine { Ok, Failed, TooLarge };

// One request line. A line longer than kMaxRequest is read to its end and dropped (TooLarge, with
// `size` its length), so that the client, still sending, gets an answer instead of a reset.
ReadLine read_line(int fd, std::string& line, size_t& size) {
  char buf[65536];
  size = 0;
  bool too_large = false;
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(kReadTimeout.count())) <= 0) return ReadLine::Failed;
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return too_large ? ReadLine::TooLarge : line.empty() ? ReadLine::Failed : ReadLine::Ok;
    std::string_view chunk(buf, static_cast<size_t>(n));
    size_t nl = chunk.find('\n');
    size += nl == std::string_view::npos ? chunk.size() : nl;
    if (!too_large) line.append(chunk.substr(0, nl));
    if (size > kMaxRequest && !too_large) {
      too_large = true;
      std::string().swap(line);
    }
    if (nl != std::string_view::npos) return too_large ? ReadLine::TooLarge : ReadLine::Ok;
  }
}

void write_all(int fd, const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    ssize_t n = ::send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // the client went away: nothing to tell it
    off += static_cast<size_t>(n);
  }
}

std::string required(const nlohmann::json& req, const char* key) {
  if (!req.contains(key) || !req[key].is_string()) throw BuildError(std::string("the request has no '") + key + "'");
  return req[key].get<std::string>();
}

}  // namespace

CommunicatorProxy::CommunicatorProxy(Communicator& comm, const CancelToken& cancel, std::filesystem::path socket_path,
                                     std::function<std::optional<milliseconds>()> time_left)
    : comm_(comm), cancel_(cancel), path_(std::move(socket_path)), time_left_(std::move(time_left)) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::string p = path_.string();
  if (p.size() >= sizeof addr.sun_path)
    throw BuildError("the socket path " + p + " is too long for a Unix socket (" +
                     std::to_string(sizeof addr.sun_path - 1) + " bytes at most): set TMPDIR to a shorter directory");
  std::memcpy(addr.sun_path, p.c_str(), p.size() + 1);
  listen_.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!listen_) throw BuildError(std::string("cannot make a Unix socket: ") + std::strerror(errno));
  if (::bind(listen_.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(listen_.get(), 16) != 0)
    throw BuildError("cannot listen on " + p + ": " + std::strerror(errno));
  thread_ = std::thread([this] { serve(); });
}

CommunicatorProxy::~CommunicatorProxy() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  std::error_code ec;
  std::filesystem::remove(path_, ec);
}

void CommunicatorProxy::serve() {
  while (!stop_) {
    pollfd p{listen_.get(), POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    util::UniqueFd fd(::accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!fd) continue;
    serve_one(fd.get());
  }
}

void CommunicatorProxy::serve_one(int fd) {
  std::string line;
  size_t size = 0;
  ReadLine got = read_line(fd, line, size);
  if (got == ReadLine::Failed) return;
  nlohmann::json answer;
  if (got == ReadLine::TooLarge) {
    answer = {{"error", "the request of " + std::to_string(size) + " bytes exceeds imgbake's limit of " +
                            std::to_string(kMaxRequest >> 20) +
                            " MiB (a module's arguments or a file too big to "
                            "pass through the connection: copy it with the copy module's src instead)"}};
  } else {
    try {
      answer = handle(nlohmann::json::parse(line));
    } catch (const nlohmann::json::exception& e) {
      answer = {{"error", std::string("the request is not JSON: ") + e.what()}};
    }
  }
  ++served_;
  write_all(fd, answer.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
}

nlohmann::json CommunicatorProxy::handle(const nlohmann::json& req) {
  try {
    if (!req.is_object()) throw BuildError("the request is not an object");
    std::string op = req.value("op", "");
    if (op == "exec") {
      RemoteCommand c;
      c.command = required(req, "cmd");
      if (req.contains("stdin")) {
        std::string remote = "/tmp/.imgbake-stdin-" + util::uuid_v4().substr(0, 8);
        {
          TempFile input(provenance::base64_decode(required(req, "stdin")), "imgbake-stdin", 0600);
          comm_.upload(input.path(), remote, cancel_);
        }
        c.command = "(" + c.command + ") < '" + remote + "'; s=$?; rm -f '" + remote + "'; exit $s";
      }
      c.timeout = time_left_ ? time_left_() : std::nullopt;
      std::string out, err;
      auto to = [](std::string& s) { return [&s](std::string_view l) { (s += l) += '\n'; }; };
      RunResult r = comm_.run(c, to(out), to(err), cancel_);
      if (r.disconnected) return {{"error", "the connection to the machine dropped"}};
      return {{"rc", r.status}, {"stdout", out}, {"stderr", err}};
    }
    if (op == "put") {
      comm_.upload(required(req, "local"), required(req, "remote"), cancel_);
      return {{"ok", true}};
    }
    if (op == "fetch") {
      comm_.download(required(req, "remote"), required(req, "local"), cancel_);
      return {{"ok", true}};
    }
    throw BuildError("unknown op '" + op + "' (exec, put, fetch)");
  } catch (const std::exception& e) {
    return {{"error", e.what()}};
  }
}

}  // namespace imgbake
