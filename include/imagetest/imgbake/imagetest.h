// Running the checks of a test spec (test_spec.h) against a machine made from an image: a
// sandbox around its root filesystem, or a booted guest over SSH. Each check is a shell command
// on the machine, judged here; docs/testing-images.md.
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "imgbake/cancel.h"
#include "imgbake/communicator.h"
#include "imgbake/ssh.h"
#include "imgbake/test_spec.h"

namespace imgbake::imagetest {

struct CheckResult {
  std::string name;
  std::string kind;
  bool passed = false;
  std::string message;  // why it failed (or what it found, when it passed)
  std::chrono::nanoseconds duration{};
};

struct SuiteResult {
  std::string suite;
  std::string image;    // NAME:VERSION
  std::string digest;   // the image's manifest digest
  std::string started;  // RFC 3339
  std::chrono::nanoseconds duration{};
  std::vector<CheckResult> checks;
  size_t failed() const;
  bool passed() const { return failed() == 0 && !checks.empty(); }
};

// What the runners that work from the host (testinfra, serverspec) need: the machine's SSH
// endpoint and a private host directory for their files (an ssh_config, reports).
struct HostAccess {
  std::optional<SshConfig> ssh;  // none: a sandbox, which those runners cannot reach
  std::filesystem::path scratch;
  // The port on 127.0.0.1 that reaches the machine's TCP port (http checks "from": "host");
  // empty when the machine cannot be reached from the host.
  std::function<int(int guest_port)> forward_tcp;
};

// Runs the checks in order, each to its end (a failed check does not stop the others); a check
// that cannot run (its command does not start, a timeout) fails, saying why. A runner (testinfra,
// serverspec) becomes one result per test it ran, named "CHECK: TEST". `on_result` sees each
// result as it comes. Throws Cancelled when `cancel` fires.
std::vector<CheckResult> run_checks(const TestSpec& spec, Communicator& machine, const CancelToken& cancel,
                                    const std::function<void(const CheckResult&)>& on_result = nullptr,
                                    const HostAccess& host = {});

// The listening sockets in /proc/net/{tcp,tcp6,udp,udp6} text (the kernel's format): whether one
// listens on `port` (TCP: state LISTEN; UDP: bound). Exposed for the unit tests.
bool proc_net_listens(const std::string& text, int64_t port, bool tcp);

// The JUnit XML report of a suite (the format Jenkins, GitLab and GitHub readers take: one
// <testsuite> in <testsuites>, a <testcase> per check, <failure message=…> when it failed).
std::string junit_xml(const SuiteResult& r);

// What a test run is evidence of: an in-toto Statement v1 whose subject is the image (NAME:VERSION
// and its manifest digest) and whose predicate is a test result
// (https://in-toto.io/attestation/test-result/v0.1: result PASSED/FAILED, the passed, warned and
// failed check names, the spec as its configuration), with imgbake's own facts under "imgbake":
// suite, runner, when it started, how long it took and each check's outcome.
struct RunFacts {
  std::string spec_name;    // the spec or template file, as given
  std::string spec_sha256;  // hex digest of its bytes
  std::string runner;       // "imgbake 0.1.0 (sandbox)"
};
nlohmann::json test_result_statement(const SuiteResult& r, const RunFacts& facts);

}  // namespace imgbake::imagetest
