// Errors meant for people. A Diagnostic names where (file:line:col) and what;
// a ConfigError carries one or more of them. Exit codes live here too.
#pragma once

#include "imgbake/json.h"

#include <stdexcept>
#include <string>
#include <vector>

namespace imgbake {

enum ExitCode : int {
  kExitOk = 0,
  kExitFailure = 1,  // a build, a template's validation, or a check failed
  kExitUsage = 2,    // bad command line (unknown flag or verb, missing argument)
  kExitSigint = 130,
  kExitSigterm = 143,
};

struct Diagnostic {
  std::string file;
  json::Pos pos;
  std::string message;
  bool warning = false;

  // "file:line:col: message" (parts that are unknown are left out).
  std::string str() const;
};

// Collects diagnostics while validating, so that a user sees all problems at once.
class Diagnostics {
 public:
  void error(const std::string& file, json::Pos pos, std::string message);
  void warn(const std::string& file, json::Pos pos, std::string message);
  bool has_errors() const;
  const std::vector<Diagnostic>& items() const { return items_; }
  std::vector<Diagnostic> errors() const;
  std::vector<Diagnostic> warnings() const;
  void merge(const Diagnostics& other);
  // Throws ConfigError with all errors if there are any.
  void throw_if_errors() const;

 private:
  std::vector<Diagnostic> items_;
};

class ConfigError : public std::runtime_error {
 public:
  explicit ConfigError(std::vector<Diagnostic> diags);
  ConfigError(const std::string& file, json::Pos pos, const std::string& message);
  const std::vector<Diagnostic>& diagnostics() const { return diags_; }

 private:
  std::vector<Diagnostic> diags_;
};

// A failure while running a build (not a configuration problem).
class BuildError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A command that ran and exited with a status it was not allowed (a provisioner's script):
// the status goes into the `error` event.
class CommandFailed : public BuildError {
 public:
  CommandFailed(const std::string& what, int exit_status) : BuildError(what), exit_status(exit_status) {}
  int exit_status;
};

// Thrown by waits and child processes when the user interrupted the run.
class Cancelled : public std::runtime_error {
 public:
  Cancelled() : std::runtime_error("cancelled") {}
};

// Usage errors on the command line (exit 2).
class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace imgbake
