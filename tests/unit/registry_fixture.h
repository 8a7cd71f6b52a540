// A real registry for unit tests: Debian's docker-registry (distribution 2.8) on a free port of
// 127.0.0.1 with its own storage directory, stopped and removed with the object.
#pragma once

#include <stdlib.h>

#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "imgbake/process.h"
#include "sshd_fixture.h"

namespace registry_fixture {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

inline constexpr const char* kRegistryBinary = "/usr/bin/docker-registry";

inline fs::path MakeTempDir(const std::string& prefix) {
  std::string tmpl = (fs::temp_directory_path() / (prefix + "-XXXXXX")).string();
  if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
  return tmpl;
}

// One `docker-registry serve`; `auth_yaml` is appended to its config (htpasswd, token).
class LocalRegistry {
 public:
  explicit LocalRegistry(const std::string& auth_yaml = "") {
    dir_ = MakeTempDir("imgbake-registry");
    port_ = sshd_fixture::FreePort();
    std::string config =
        "version: 0.1\nlog: {level: warn}\nstorage: {filesystem: {rootdirectory: " + (dir_ / "data").string() +
        "}, delete: {enabled: true}}\nhttp: {addr: 127.0.0.1:" + std::to_string(port_) + "}\n" + auth_yaml;
    sshd_fixture::WriteFile(dir_ / "config.yml", config, 0644);
    process_ = std::make_unique<imgbake::BackgroundProcess>(
        std::vector<std::string>{kRegistryBinary, "serve", (dir_ / "config.yml").string()},
        (dir_ / "registry.log").string());
    ready_ = sshd_fixture::Eventually([&] { return sshd_fixture::Accepts(port_); }, 10s);
  }
  ~LocalRegistry() {
    process_.reset();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  LocalRegistry(const LocalRegistry&) = delete;
  LocalRegistry& operator=(const LocalRegistry&) = delete;
  bool ready() const { return ready_; }
  int port() const { return port_; }
  std::string host() const { return "127.0.0.1:" + std::to_string(port_); }
  const fs::path& dir() const { return dir_; }
  std::string log() const { return sshd_fixture::ReadFile(dir_ / "registry.log"); }

 private:
  fs::path dir_;
  int port_ = 0;
  std::unique_ptr<imgbake::BackgroundProcess> process_;
  bool ready_ = false;
};

}  // namespace registry_fixture
