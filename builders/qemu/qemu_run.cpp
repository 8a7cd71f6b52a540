#include "qemu_run.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>

#include "imgbake/cancel.h"
#include "imgbake/error.h"
#include "imgbake/temp_file.h"
#include "imgbake/util.h"

namespace imgbake::qemu {

std::string tail_of(const fs::path& p, size_t max_lines) {
  std::ifstream in(p);
  std::vector<std::string> lines;
  for (std::string l; std::getline(in, l);) {
    if (!l.empty() && l.back() == '\r') l.pop_back();
    lines.push_back(l);
    if (lines.size() > max_lines) lines.erase(lines.begin());
  }
  return util::join(lines, "\n");
}

uintmax_t file_size_or_zero(const fs::path& p) {
  std::error_code ec;
  auto n = fs::file_size(p, ec);
  return ec ? 0 : n;
}

// Runs a host tool (qemu-img) to completion; throws with its stderr on failure.
std::string run_tool(State& st, const std::vector<std::string>& argv) {
  ProcessSpec spec;
  spec.argv = argv;
  std::string out, err;
  int status = run_process(
      spec, [&](std::string_view l) { out.append(l).push_back('\n'); },
      [&](std::string_view l) { err.append(l).push_back('\n'); }, st.cancel);
  if (status != 0)
    throw BuildError(util::join(argv, " ") + " failed (status " + std::to_string(status) + "): " + util::trim(err));
  return out;
}

nlohmann::json image_info(State& st, const std::string& path) {
  return nlohmann::json::parse(run_tool(st, {"qemu-img", "info", "--output=json", path}));
}

fs::path make_work_dir() {
  // In this process's private temp directory (swept after a kill -9), unless its path is too
  // long for the QMP socket's sun_path (108 bytes).
  std::string base = process_temp_dir().string();
  if (base.size() >= 60) base = "/tmp";
  std::string tmpl = base + "/imgbake-qemu-XXXXXX";
  if (!::mkdtemp(tmpl.data())) throw BuildError("cannot create a temporary directory in " + base);
  register_temp_path(tmpl);
  return tmpl;
}

AcceleratorVerdicts verdicts_for(const QemuConfig& c) {
  return AcceleratorVerdicts(AcceleratorVerdicts::default_file(), AcceleratorVerdicts::host_key(c.qemu_binary));
}

// A port in [lo, hi] that nothing listens on right now (random start, so parallel builds
// rarely pick the same one; qemu failing to bind is retried by the caller).
int free_port(int lo, int hi, std::mt19937& rng) {
  int span = hi - lo + 1;
  int start = std::uniform_int_distribution<int>(0, span - 1)(rng);
  for (int i = 0; i < span; ++i) {
    int port = lo + (start + i) % span;
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) continue;
    sockaddr_in a = {};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<uint16_t>(port));
    bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    ::close(fd);
    if (ok) return port;
  }
  throw BuildError("no free TCP port between host_port_min " + std::to_string(lo) + " and host_port_max " +
                   std::to_string(hi));
}

}  // namespace imgbake::qemu
