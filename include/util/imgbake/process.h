// Child processes: spawned in their own process group, output streamed line by
// line, killed (whole group) on cancellation or timeout, always reaped.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "imgbake/cancel.h"

namespace imgbake {

struct ProcessSpec {
  std::vector<std::string> argv;
  std::map<std::string, std::string> env_add;  // added to (or overriding) this process's environment
  std::string cwd;
  std::optional<std::chrono::milliseconds> timeout;
  // Start from an empty environment instead of this process's (env_add is then all of it):
  // values passed this way never appear in the child's command line.
  bool clear_env = false;
  // Descriptors the child inherits: {this process's fd, the number it has in the child}.
  std::vector<std::pair<int, int>> inherit_fds;
};

using LineSink = std::function<void(std::string_view line)>;

// Cuts a byte stream into lines (without "\n" or "\r\n") for a LineSink; flush()
// delivers a last line that has no newline.
class LineSplitter {
 public:
  explicit LineSplitter(const LineSink& sink) : sink_(sink) {}
  void feed(const char* data, size_t n);
  void flush();

 private:
  const LineSink& sink_;
  std::string buf_;
};

// Runs to completion and returns the exit status (128+N when killed by signal N).
// Throws Cancelled when `cancel` fires (after the group is killed and reaped) and
// BuildError when the program can't be started or the timeout passes.
// Held while a child is being started (until it has exec'd) and while an executable
// temp file is open for writing: a child forked while another thread writes a script
// would keep a writable descriptor to it, and executing the script fails with
// "Text file busy".
std::mutex& spawn_mutex();

int run_process(const ProcessSpec& spec, const LineSink& out, const LineSink& err, const CancelToken& cancel);

// A long-running child (a VM): started in its own process group with stdout/stderr
// sent to a log file; the destructor stops the group (TERM, then KILL) and reaps it.
class BackgroundProcess {
 public:
  BackgroundProcess(const std::vector<std::string>& argv, const std::string& log_path);
  ~BackgroundProcess();
  BackgroundProcess(const BackgroundProcess&) = delete;
  BackgroundProcess& operator=(const BackgroundProcess&) = delete;

  int pid() const { return pid_; }
  // Whether it has exited (reaps it when it has); exit_status() is valid afterwards.
  bool exited();
  int exit_status() const { return status_; }
  // Waits up to `d` for it to exit by itself; true when it did.
  bool wait_for(std::chrono::milliseconds d, const CancelToken& cancel);
  // TERM, then KILL after `grace`.
  void stop(std::chrono::milliseconds grace = std::chrono::seconds(3));

 private:
  int pid_ = -1;
  bool reaped_ = false;
  int status_ = -1;
};

}  // namespace imgbake
