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

class Communicator {
 public:
  virtual ~Communicator() = default;
  // Streams output line by line; returns the exit status. A dropped connection
  // is reported as kDisconnected rather than as a failure status.
  virtual int run(const RemoteCommand& cmd, const LineSink& out, const LineSink& err, const CancelToken& cancel) = 0;
  virtual void upload(const std::string& local_path, const std::string& remote_path, const CancelToken& cancel) = 0;
  virtual void download(const std::string& remote_path, const std::string& local_path, const CancelToken& cancel) = 0;

  static constexpr int kDisconnected = 2300218;  // Packer's value for "connection dropped"
};

}  // namespace imgbake
