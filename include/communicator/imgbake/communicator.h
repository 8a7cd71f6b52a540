// The seam between provisioners and the machine being built: run a command,
// move files. SSH (libssh) and exec (namespaces) implement it; "none" has none.
#pragma once

#include <chrono>
#include <map>
#include <optional>
#include <string>

#include "imgbake/cancel.h"
#include "imgbake/process.h"

namespace imgbake {

struct RemoteCommand {
  std::string command;  // a shell command line
  std::map<std::string, std::string> env;
  std::optional<std::chrono::milliseconds> timeout;
};

// How a command on the machine ended: with an exit status, or with the connection dropping
// before one came (a reboot, sshd restarting). A dropped connection has no status: `status`
// is then -1, so that a caller looking only at `status == 0` never takes a drop for success.
struct RunResult {
  int status = 0;             // the exit status, 128+N when signal N killed the command
  bool disconnected = false;  // the connection dropped before an exit status came

  static RunResult exited(int status) { return {status, false}; }
  static RunResult dropped() { return {-1, true}; }
  // Exited with status 0.
  bool succeeded() const { return !disconnected && status == 0; }
  bool operator==(const RunResult&) const = default;
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  // Streams output line by line; returns how the command ended. A dropped connection is
  // RunResult::dropped() rather than a failure status or an exception.
  virtual RunResult run(const RemoteCommand& cmd, const LineSink& out, const LineSink& err,
                        const CancelToken& cancel) = 0;
  virtual void upload(const std::string& local_path, const std::string& remote_path, const CancelToken& cancel) = 0;
  virtual void download(const std::string& remote_path, const std::string& local_path, const CancelToken& cancel) = 0;
  // Whether a failure can be the machine being away for a while (a reboot over SSH), so that
  // retrying later may succeed. A local sandbox has no connection: its failures are final.
  virtual bool may_be_unreachable() const { return true; }
};

}  // namespace imgbake
