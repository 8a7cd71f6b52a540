// The checks `imgbake test` runs against a built image: the `tests` member of a template's
// `imgbake` section, or a spec file given with --spec (docs/testing-images.md).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "imgbake/error.h"
#include "imgbake/json.h"

namespace imgbake {

struct TestCheck {
  std::string name;
  // "command", "file", "package", "user", "group", "service", "port", "http", "kernel_param",
  // and the runners "script", "testinfra", "serverspec"
  std::string kind;
  json::Pos pos;
  std::optional<std::chrono::milliseconds> timeout;  // default: kDefaultCheckTimeout

  // command: its exit status (default 0) and what its output holds.
  std::string command;
  int64_t exit_status = 0;
  std::vector<std::string> stdout_contains, stderr_contains;
  std::string stdout_matches;  // an ECMAScript regular expression searched in the output

  // file (and the path of the others): exists (default true), type, mode, owner, group,
  // contains (every string), sha256.
  std::string path;
  bool exists = true;
  std::string type;  // "file", "directory", "symlink" (or empty: any)
  std::string mode;  // octal, e.g. "0644"
  std::string owner, group;
  std::vector<std::string> contains;
  std::string sha256;

  // package (dpkg or rpm), user, group: `installed`/`exists` (default true), `version` prefix.
  // service, kernel_param: the name.
  std::string subject;  // the package, user, group, service or kernel parameter name
  std::string version;

  // service: running (default true), enabled (unchecked when absent).
  std::optional<bool> running, enabled;
  // port: listening (`exists`, default true) on `port` with `protocol` "tcp" (default) or "udp".
  int64_t port = 0;
  std::string protocol = "tcp";
  // http: `url`, answered with `status` (default 200) and a body holding every `body_contains`;
  // fetched on the machine, or with `from_host` from this host through a forwarded port.
  std::string url;
  bool from_host = false;
  int64_t status = 200;
  std::vector<std::string> body_contains;
  // kernel_param: the value (whitespace runs compare as one space).
  std::string value;
  // script, testinfra, serverspec: a file on the host (absolute, or relative to the spec's
  // directory when read).
  std::string local_file;
};

// How a disk image boots for its tests (the `boot` member of a spec). Each setting given replaces
// what the image recorded when it was built (io.imgbake.boot.* labels); relative paths are
// relative to the spec's directory.
struct TestBoot {
  std::string kernel, initrd, append;   // direct kernel boot
  std::optional<int64_t> memory, cpus;  // MiB, count
  std::string accelerator;              // "auto", "kvm", "tcg", ...
  std::string ssh_username, ssh_password, ssh_private_key_file;
  std::optional<std::chrono::milliseconds> ssh_timeout;
  std::vector<std::vector<std::string>> qemuargs;  // extra qemu arguments, as the qemu builder's
};

inline constexpr std::chrono::seconds kDefaultCheckTimeout{60};

struct TestSpec {
  std::string suite = "default";
  std::vector<TestCheck> checks;
  std::string file;  // where the spec was read (a template or a --spec file)
  json::Pos pos;
  TestBoot boot;
  // A container image: start its own Entrypoint/Cmd in the sandbox before the checks, as the
  // service under test (port and http checks then reach it).
  bool service_start = false;
  std::optional<std::chrono::milliseconds> service_wait;  // how long the service may take to listen
  // Whether a check runs a host tool over SSH (testinfra, serverspec): such a spec needs a disk image.
  bool needs_ssh() const;
};

// Reads a spec: {"suite": NAME, "checks": [...]}. Every problem is a diagnostic at its
// file:line:col (an unknown key, a check without a kind or with two, a bad mode or regex).
TestSpec read_test_spec(const json::Value& v, const std::string& file, Diagnostics& diags);

}  // namespace imgbake
