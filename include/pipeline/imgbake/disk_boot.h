// Booting a stored disk image for `imgbake test`: a builder whose images boot (qemu) registers a
// DiskBooter under its type, so that the CLI finds it by the image's builder annotation without
// knowing the builder (docs/testing-images.md, "Disk images").
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <string>

#include "imgbake/cancel.h"
#include "imgbake/communicator.h"
#include "imgbake/component_registry.h"
#include "imgbake/ssh.h"
#include "imgbake/test_spec.h"
#include "imgbake/ui.h"

namespace imgbake {

struct DiskBootRequest {
  std::filesystem::path disk;                 // the stored disk: only read (the instance writes to an overlay)
  std::string disk_format;                    // "qcow2" or "raw"
  std::map<std::string, std::string> labels;  // the image's labels: the boot settings it recorded
  TestBoot boot;                              // the spec's settings, over the recorded ones
  std::filesystem::path scratch;              // a private directory, removed by the caller
  std::string name;                           // for messages: "web:3"
};

// A running instance of the image. The destructor stops it (its overlay is in the scratch
// directory, which the caller removes).
class BootedMachine {
 public:
  virtual ~BootedMachine() = default;
  virtual Communicator& communicator() = 0;
  // How to reach it over SSH from this host (the runners' tools log in with it).
  virtual const SshConfig& ssh() const = 0;
  // Forwards a port of 127.0.0.1 to the guest's TCP port (once per port) and returns it.
  virtual int forward_tcp(int guest_port) = 0;
};

class DiskBooter {
 public:
  virtual ~DiskBooter() = default;
  // Boots the image and waits until it accepts SSH. Throws BuildError (saying why: qemu's own
  // message, the serial console's last lines) or Cancelled; nothing is left running then.
  virtual std::unique_ptr<BootedMachine> boot(const DiskBootRequest& req, Ui& ui, const CancelToken& cancel) = 0;
};

using DiskBooterRegistry = ComponentRegistry<DiskBooter>;

}  // namespace imgbake

#define IMGBAKE_REGISTER_DISK_BOOTER(NAME, CLASS) IMGBAKE_REGISTER(::imgbake::DiskBooter, NAME, CLASS)
