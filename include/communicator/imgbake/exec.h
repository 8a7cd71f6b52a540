// The exec communicator: runs provisioners inside a root filesystem directory on the host,
// without a daemon, in a sandbox of fresh namespaces (bubblewrap, else unshare + chroot).
// The rootfs builder uses it; its tree is diffed afterwards, so nothing here leaves traces in
// the tree that the commands themselves did not make.
#pragma once

#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "imgbake/cancel.h"
#include "imgbake/communicator.h"
#include "imgbake/process.h"

namespace imgbake {

struct ExecOptions {
  std::filesystem::path root;  // the rootfs directory
  bool network = false;        // false: own empty network namespace (only a loopback that is down)
  // The environment commands start with (plus PATH, HOME=/root and TERM=dumb defaults when not
  // given); a RemoteCommand's env is added on top.
  std::map<std::string, std::string> env;
  std::string workdir = "/";
  // Where the communicator's own directory (mode 0700: the sandbox's /tmp and the command
  // files) is made; empty: the process's temporary directory (process_temp_dir). A builder gives its build directory,
  // which `store gc` cleans after a kill -9.
  std::filesystem::path private_dir;
};

// Commands run as root, in new mount, PID, IPC and UTS namespaces (and network, unless
// `network`), with a fresh /proc, a minimal /dev and a /tmp of their own.
//
// /tmp is a scratch directory on the host that this communicator owns: it lasts from the
// first command to the destructor, so that the shell provisioner's upload to /tmp and the
// command that runs it meet, but it never becomes part of the tree (the tree's own /tmp is
// hidden, as a tmpfs would hide it). Remote paths under /tmp name files in it.
//
// A tree that lacks /proc, /dev, /tmp (or /etc/resolv.conf, with network) gets them for the
// duration of each command; they are removed afterwards and their parent's times restored.
// A tree that has them is left exactly as it was by a command that changes nothing.
//
// One communicator serves one thread at a time.
class ExecCommunicator : public Communicator {
 public:
  // Throws BuildError when `opts.root` is not a directory.
  explicit ExecCommunicator(ExecOptions opts);
  ~ExecCommunicator() override;
  ExecCommunicator(const ExecCommunicator&) = delete;
  ExecCommunicator& operator=(const ExecCommunicator&) = delete;

  // Runs `cmd.command` with /bin/sh -c inside the tree (which must have a /bin/sh). Output is
  // streamed line by line; cancellation and timeouts kill the whole sandbox (Cancelled, or a
  // BuildError naming the timeout). A sandbox that cannot be set up is a BuildError with the
  // tool's own message, never an exit status. Never reports a dropped connection.
  RunResult run(const RemoteCommand& cmd, const LineSink& out, const LineSink& err, const CancelToken& cancel) override;
  // Like the SSH communicator: a file becomes `remote_path` with the local file's permission
  // bits (the parent must exist); a directory is copied recursively so that `remote_path`
  // becomes a copy of it (parents created, symlinks followed, an existing destination keeps its
  // mode). Remote paths resolve as if the tree were "/": symlinks in the tree stay inside it.
  // Files are written to a temporary name and renamed into place.
  void upload(const std::string& local_path, const std::string& remote_path, const CancelToken& cancel) override;
  // Files keep their permission bits; directories are copied recursively.
  void download(const std::string& remote_path, const std::string& local_path, const CancelToken& cancel) override;
  // A tree without a runnable /bin/sh stays that way: no retrying.
  bool may_be_unreachable() const override { return false; }

  // "bwrap" when /usr/bin/bwrap (or `bwrap` on PATH) exists, else "unshare" (unshare + chroot,
  // from util-linux). IMGBAKE_EXEC_SANDBOX=bwrap|unshare chooses. Throws BuildError when the
  // chosen tool is missing or the variable has another value.
  static std::string sandbox_tool();

  // Hears what is worth a note: entries skipped in transfers. May be empty.
  std::function<void(std::string_view)> log;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace imgbake
