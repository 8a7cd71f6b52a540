// Programs the unit tests run, and the Debian package that provides each: a test that needs one
// fails naming the package (tools/setup.sh installs them all), rather than with a bare
// "No such file or directory" from deep inside the test.
#pragma once

#include <unistd.h>

#include <cstdlib>
#include <map>
#include <string>
#include <string_view>

namespace tool_check {

inline const std::map<std::string, std::string, std::less<>>& Packages() {
  static const std::map<std::string, std::string, std::less<>> packages = {
      {"bwrap", "bubblewrap"},
      {"cc", "gcc"},
      {"docker-registry", "docker-registry"},
      {"genisoimage", "genisoimage"},
      {"htpasswd", "apache2-utils"},
      {"isoinfo", "genisoimage"},
      {"qemu-img", "qemu-utils"},
      {"qemu-system-x86_64", "qemu-system-x86"},
      {"skopeo", "skopeo"},
      {"ssh-add", "openssh-client"},
      {"ssh-agent", "openssh-client"},
      {"sshd", "openssh-server"},
      {"tar", "tar"},
      {"umoci", "umoci"},
      {"xorriso", "xorriso"},
      {"zstd", "zstd"},
  };
  return packages;
}

// The program's path on PATH (or in /usr/sbin, /sbin for daemons), or "" when it is not there.
inline std::string Find(std::string_view tool) {
  std::string path = std::getenv("PATH") ? std::getenv("PATH") : "/usr/bin:/bin";
  path += ":/usr/sbin:/sbin";
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find(':', start);
    if (end == std::string::npos) end = path.size();
    std::string candidate = path.substr(start, end - start) + "/" + std::string(tool);
    if (end > start && ::access(candidate.c_str(), X_OK) == 0) return candidate;
    start = end + 1;
  }
  return "";
}

// "" when the tool is on PATH; otherwise what to install.
inline std::string Missing(std::string_view tool) {
  if (!Find(tool).empty()) return "";
  auto it = Packages().find(tool);
  std::string package = it == Packages().end() ? "?" : it->second;
  return std::string(tool) + " is not installed (Debian package " + package + ": apt-get install " + package +
         ", or run tools/setup.sh as root)";
}

}  // namespace tool_check

// Fails the current test (and returns from it) when TOOL is missing.
#define REQUIRE_TOOL(tool)                                               \
  do {                                                                   \
    if (std::string why_ = ::tool_check::Missing(tool); !why_.empty()) { \
      FAIL() << why_;                                                    \
    }                                                                    \
  } while (0)
