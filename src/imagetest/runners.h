// The checks that work from the host: the runners over the machine's SSH, testinfra (pytest) and
// serverspec (rspec), each test they run one check result; and http checks through a forwarded
// port.
#pragma once

#include <string>
#include <vector>

#include "imgbake/imagetest.h"

namespace imgbake::imagetest {

// Runs `c` (kind "testinfra" or "serverspec") against `host.ssh`. A runner that cannot start, or
// whose file fails before any test runs, is one failed result named as the check.
std::vector<CheckResult> run_host_runner(const TestCheck& c, const HostAccess& host, const CancelToken& cancel);

// An http check "from": "host": the URL's port forwarded to this host, fetched here.
CheckResult http_from_host(const TestCheck& c, const HostAccess& host, const CancelToken& cancel);

// The test cases of a JUnit XML report (pytest's), for the unit tests: name, passed, message.
std::vector<CheckResult> junit_cases(const std::string& xml);

}  // namespace imgbake::imagetest
