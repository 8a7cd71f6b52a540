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
  std::string kind;  // "command", "file", "package", "user", "group"
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
  std::string subject;  // the package, user or group name
  std::string version;
};

inline constexpr std::chrono::seconds kDefaultCheckTimeout{60};

struct TestSpec {
  std::string suite = "default";
  std::vector<TestCheck> checks;
  std::string file;  // where the spec was read (a template or a --spec file)
  json::Pos pos;
};

// Reads a spec: {"suite": NAME, "checks": [...]}. Every problem is a diagnostic at its
// file:line:col (an unknown key, a check without a kind or with two, a bad mode or regex).
TestSpec read_test_spec(const json::Value& v, const std::string& file, Diagnostics& diags);

}  // namespace imgbake
