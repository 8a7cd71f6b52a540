// Booting a stored qemu image for `imgbake test` (imgbake/disk_boot.h): the image's disk under a
// copy-on-write overlay in a private directory, started and reached with the builder's own launch
// and wait-for-SSH steps (accelerator probe and fallback, the SSH banner wait, qemu's exit noticed).
#include <filesystem>
#include <map>
#include <random>

#include "imgbake/disk_boot.h"
#include "imgbake/error.h"
#include "imgbake/util.h"
#include "qemu_run.h"

namespace imgbake::qemu {

namespace {

constexpr const char* kPrefix = "io.imgbake.boot.";

std::string label(const std::map<std::string, std::string>& labels, const std::string& key) {
  auto it = labels.find(kPrefix + key);
  return it == labels.end() ? "" : it->second;
}

int64_t number(const std::map<std::string, std::string>& labels, const std::string& key, int64_t def) {
  const std::string v = label(labels, key);
  try {
    return v.empty() ? def : std::stoll(v);
  } catch (const std::exception&) {
    throw BuildError("the image's label " + std::string(kPrefix) + key + " is not a number: '" + v + "'");
  }
}

class QemuTestMachine : public BootedMachine {
 public:
  QemuTestMachine(Ui& ui, const CancelToken& cancel, BuildInfo info)
      : st_(ui, cancel, std::move(info)), rng_(std::random_device{}()) {}
  ~QemuTestMachine() override { stop(); }
  QemuTestMachine(const QemuTestMachine&) = delete;
  QemuTestMachine& operator=(const QemuTestMachine&) = delete;

  void boot(const DiskBootRequest& req) {
    try {
      configure(req);
      run_.work_dir = make_work_dir();
      run_.disk_path = run_.work_dir / "overlay.qcow2";
      // The stored disk is the overlay's read-only backing file: the instance never writes to it.
      run_tool(st_, {"qemu-img", "create", "-q", "-f", "qcow2", "-F", req.disk_format, "-b", req.disk.string(),
                     run_.disk_path.string()});
      steps_.push_back(make_launch_step(run_, rng_));
      steps_.push_back(make_wait_for_ssh_step(run_, rng_));
      for (auto& s : steps_) {
        ++ran_;
        s->run(st_);
      }
      ssh_ = run_.cfg.ssh;
      ssh_.host = "127.0.0.1";
      ssh_.port = run_.host_port;
    } catch (...) {
      stop();
      throw;
    }
  }

  Communicator& communicator() override { return *run_.comm; }
  const SshConfig& ssh() const override { return ssh_; }
  int forward_tcp(int guest_port) override {
    if (auto it = forwarded_.find(guest_port); it != forwarded_.end()) return it->second;
    const QemuConfig& c = run_.cfg;
    const int port = free_port(static_cast<int>(c.host_port_min), static_cast<int>(c.host_port_max), rng_);
    const std::string rule = "user.0 tcp:127.0.0.1:" + std::to_string(port) + "-:" + std::to_string(guest_port);
    // hostfwd_add is a monitor command: QMP runs it through human-monitor-command, which
    // answers its text (empty when it worked).
    const nlohmann::json said = run_.qmp->execute("human-monitor-command", {{"command-line", "hostfwd_add " + rule}});
    if (said.is_string() && !util::trim(said.get<std::string>()).empty())
      throw BuildError("qemu cannot forward 127.0.0.1:" + std::to_string(port) + " to the guest's port " +
                       std::to_string(guest_port) + ": " + util::trim(said.get<std::string>()));
    st_.message("forwarding 127.0.0.1:" + std::to_string(port) + " to the guest's port " + std::to_string(guest_port));
    forwarded_[guest_port] = port;
    return port;
  }

 private:
  // The recorded settings, then the spec's over them.
  void configure(const DiskBootRequest& req) {
    const auto& l = req.labels;
    const TestBoot& b = req.boot;
    QemuConfig& c = run_.cfg;
    c.disk_image = true;
    c.format = "qcow2";  // the overlay
    c.headless = true;
    c.vm_name = "imgbake-test";
    c.memory = b.memory.value_or(number(l, "memory", c.memory));
    c.cpus = b.cpus.value_or(number(l, "cpus", c.cpus));
    if (const std::string v = label(l, "machine_type"); !v.empty()) c.machine_type = v;
    if (const std::string v = label(l, "disk_interface"); !v.empty()) c.disk_interface = v;
    if (const std::string v = label(l, "net_device"); !v.empty()) c.net_device = v;
    c.ssh_port = number(l, "ssh_port", c.ssh_port);
    c.accelerator = !b.accelerator.empty() ? b.accelerator : label(l, "accelerator");
    if (c.accelerator.empty()) c.accelerator = "auto";
    auto kind = accelerator_kind(c.accelerator);
    if (!kind) throw UsageError("boot: '" + c.accelerator + "' is not an accelerator: auto, kvm, tcg, none, ...");
    c.accel = *kind;
    c.ssh.username = !b.ssh_username.empty() ? b.ssh_username : label(l, "ssh_username");
    c.ssh.password = b.ssh_password;
    c.ssh.private_key_file = !b.ssh_private_key_file.empty() || !b.ssh_password.empty()
                                 ? b.ssh_private_key_file
                                 : label(l, "ssh_private_key_file");
    if (c.ssh.username.empty())
      throw UsageError(req.name +
                       " does not say which user logs in over SSH: give \"boot\": {\"ssh_username\": …} in the tests");
    if (c.ssh.private_key_file.empty() && c.ssh.password.empty())
      throw UsageError(req.name +
                       " does not say how to log in over SSH: give \"boot\": {\"ssh_private_key_file\": …} "
                       "(or ssh_password) in the tests");
    c.ssh.timeout = b.ssh_timeout.value_or(std::chrono::milliseconds(number(l, "ssh_timeout_ms", 300000)));
    // Direct kernel boot, as the image was built (or as the spec says).
    for (const char* what : {"kernel", "initrd", "append"}) {
      const std::string& given = what == std::string("kernel")   ? b.kernel
                                 : what == std::string("initrd") ? b.initrd
                                                                 : b.append;
      const std::string v = given.empty() ? label(l, what) : given;
      if (v.empty()) continue;
      if (what != std::string("append")) {
        if (!std::filesystem::is_regular_file(v))
          throw UsageError("boot: no " + std::string(what) + " " + v + " on this host" +
                           (given.empty() ? " (the path the image recorded when it was built; give \"boot\": {\"" +
                                                std::string(what) + "\": …} in the tests)"
                                          : ""));
        const std::string recorded = label(l, std::string(what) + "_sha256");
        if (given.empty() && !recorded.empty() && util::file_digest_hex(v) != recorded)
          st_.ui.warn(st_.build.name, v + " is not the " + what + " the image was built with (its sha256 changed)");
      }
      c.qemuargs.push_back({"-" + std::string(what), v});
    }
    for (const auto& q : b.qemuargs) c.qemuargs.push_back(q);
  }

  void stop() noexcept {
    for (size_t i = ran_; i-- > 0;) steps_[i]->cleanup(st_);
    ran_ = 0;
    if (!run_.work_dir.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(run_.work_dir, ec);
      unregister_temp_path(run_.work_dir.string());
      run_.work_dir.clear();
    }
  }

  QemuRun run_;
  State st_;
  std::mt19937 rng_;
  StepList steps_;
  size_t ran_ = 0;
  SshConfig ssh_;
  std::map<int, int> forwarded_;  // guest port -> port on 127.0.0.1
};

class QemuDiskBooter : public DiskBooter {
 public:
  std::unique_ptr<BootedMachine> boot(const DiskBootRequest& req, Ui& ui, const CancelToken& cancel) override {
    BuildInfo info;
    info.name = "test";
    info.type = "qemu";
    info.run_uuid = util::uuid_v4();
    auto m = std::make_unique<QemuTestMachine>(ui, cancel, std::move(info));
    m->boot(req);
    return m;
  }
};

}  // namespace

nlohmann::json boot_labels(State& st, const QemuConfig& c) {
  nlohmann::json l = nlohmann::json::object();
  auto put = [&](const std::string& key, const std::string& value) { l[kPrefix + key] = value; };
  put("memory", std::to_string(c.memory));
  put("cpus", std::to_string(c.cpus));
  put("machine_type", c.machine_type);
  put("disk_interface", c.disk_interface);
  put("net_device", c.net_device);
  put("accelerator", c.accelerator);
  put("ssh_port", std::to_string(c.ssh_port));
  put("ssh_timeout_ms", std::to_string(c.ssh.timeout.count()));
  if (c.communicator == "ssh") put("ssh_username", c.ssh.username);
  // A temporary key pair is gone after the build: the tests then give their own key.
  if (c.communicator == "ssh" && !c.ssh_temporary_key_pair && !c.ssh.private_key_file.empty())
    put("ssh_private_key_file", std::filesystem::absolute(c.ssh.private_key_file).string());
  for (const auto& entry : c.qemuargs) {
    if (entry.size() != 2 || (entry[0] != "-kernel" && entry[0] != "-initrd" && entry[0] != "-append")) continue;
    const std::string what = entry[0].substr(1);
    std::string value = st.render(entry[1]);
    if (what != "append") {
      value = std::filesystem::absolute(value).string();
      if (std::filesystem::is_regular_file(value)) put(what + "_sha256", util::file_digest_hex(value));
    }
    put(what, value);
  }
  return l;
}

}  // namespace imgbake::qemu

IMGBAKE_REGISTER_DISK_BOOTER("qemu", imgbake::qemu::QemuDiskBooter)
