// The runners that work from the host over the machine's SSH: testinfra (pytest) and
// serverspec (rspec). Each test they run becomes one check result.
#pragma once

#include <string>
#include <vector>

#include "imgbake/imagetest.h"

namespace imgbake::imagetest {

// Runs `c` (kind "testinfra" or "serverspec") against `host.ssh`. A runner that cannot start, or
// whose file fails before any test runs, is one failed result named as the check.
std::vector<CheckResult> run_host_runner(const TestCheck& c, const HostAccess& host, const CancelToken& cancel);

// The test cases of a JUnit XML report (pytest's), for the unit tests: name, passed, message.
std::vector<CheckResult> junit_cases(const std::string& xml);

}  // namespace imgbake::imagetest
