// The qemu builder's steps around the running VM: HTTP server, start, boot command, wait for
// SSH (with the kvm probe), shutdown.
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <csignal>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include "accelerator.h"
#include "boot_command.h"
#include "http_server.h"
#include "imgbake/error.h"
#include "imgbake/process.h"
#include "imgbake/ssh.h"
#include "imgbake/util.h"
#include "qemu_config.h"
#include "qemu_run.h"
#include "qmp.h"

namespace fs = std::filesystem;

namespace imgbake::qemu {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using Clock = std::chrono::steady_clock;

// The guest sees the host as 10.0.2.2 under qemu user networking.
constexpr const char* kGuestHostAddress = "10.0.2.2";

class HttpServerStep : public Step {
 public:
  explicit HttpServerStep(QemuRun& r) : r_(r) {}
  std::string name() const override { return "HTTP server"; }
  nlohmann::json key_material(const State&) const override {
    return {{"step", "qemu-http"}, {"directory", r_.cfg.http_directory}};
  }
  void run(State& st) override {
    const QemuConfig& c = r_.cfg;
    // http_content may use run-time values such as {{ .SSHPublicKey }} (a preseed file that
    // authorizes the temporary key).
    std::map<std::string, std::string> content;
    for (const auto& [path, body] : c.http_content) content[path] = st.render(body);
    r_.http = HttpServer::start(c.http_directory, content, c.http_bind_address, static_cast<int>(c.http_port_min),
                                static_cast<int>(c.http_port_max));
    Ui& ui = st.ui;
    std::string build = st.build.name;
    r_.http->log = [&ui, build](std::string_view line) { ui.message(build, "http: " + std::string(line)); };
    st.data["HTTPIP"] = kGuestHostAddress;
    st.data["HTTPPort"] = std::to_string(r_.http->port());
    st.data["HTTPDir"] = c.http_directory;
    st.message("serving " + (c.http_directory.empty() ? std::string("http_content") : c.http_directory) + " on " +
               c.http_bind_address + ":" + std::to_string(r_.http->port()) + " (the guest's http://" +
               kGuestHostAddress + ":" + std::to_string(r_.http->port()) + "/)");
  }
  void cleanup(State&) noexcept override { r_.http.reset(); }

 private:
  QemuRun& r_;
};

class LaunchStep : public Step {
 public:
  LaunchStep(QemuRun& r, std::mt19937& rng) : r_(r), rng_(rng) {}
  std::string name() const override { return "start VM"; }
  nlohmann::json key_material(const State&) const override {
    return {{"step", "qemu-launch"},
            {"accelerator", r_.cfg.accelerator},
            {"memory", r_.cfg.memory},
            {"cpus", r_.cfg.cpus},
            {"qemuargs", r_.cfg.qemuargs}};
  }
  void run(State& st) override {
    QemuConfig& c = r_.cfg;
    if (const char* env = std::getenv("IMGBAKE_QEMU_ACCEL"); env && *env && c.accelerator != env) {
      st.message("IMGBAKE_QEMU_ACCEL=" + std::string(env) + " replaces accelerator '" + c.accelerator + "'");
      c.accelerator = env;
      c.accel = accelerator_kind(c.accelerator).value_or(Accelerator::Other);
    }
    AcceleratorVerdicts verdicts = verdicts_for(c);
    bool is_auto = c.accel == Accelerator::Auto;
    AcceleratorChoice choice = choose_accelerator(is_auto ? "auto" : c.accelerator, is_auto && kvm_usable(),
                                                  is_auto && verdicts.kvm_stuck(), verdicts.file());
    r_.accel = choice.accel;
    if (!choice.message.empty()) st.message(choice.message);
    r_.cache.plan(st, r_);
    if (r_.cache.full_hit()) return;
    launch(st, r_, rng_);
  }
  void cleanup(State& st) noexcept override {
    r_.qmp.reset();
    if (r_.vm && !r_.vm->exited()) {
      st.message("stopping qemu (pid " + std::to_string(r_.vm->pid()) + ")");
      r_.vm->stop(seconds(3));
    }
    r_.vm.reset();
  }

 private:
  QemuRun& r_;
  std::mt19937& rng_;
};

class BootCommandStep : public Step {
 public:
  explicit BootCommandStep(QemuRun& r) : r_(r) {}
  std::string name() const override { return "boot command"; }
  nlohmann::json key_material(const State&) const override {
    return {{"step", "qemu-boot-command"}, {"boot_command", r_.cfg.boot_command}};
  }
  void run(State& st) override {
    if (r_.cache.full_hit() || r_.cache.resumed_after() > 0) {
      st.message("not typed: the VM was not booted (step cache)");
      return;
    }
    if (r_.cfg.boot_wait.count() > 0) {
      st.message("waiting " + util::format_duration(r_.cfg.boot_wait) + " (boot_wait) before typing");
      st.cancel.sleep_for(r_.cfg.boot_wait);
    }
    std::string text = st.render(r_.cfg.boot_command);
    for (const auto& w : boot_command_warnings(text)) st.ui.warn(st.build.name, w);
    auto events = parse_boot_command(text);
    st.message("typing the boot command (" + std::to_string(events.size()) + " key events)");
    // As in Packer: boot_key_interval, else $PACKER_KEY_INTERVAL, else 100ms.
    milliseconds interval = kDefaultBootKeyInterval;
    if (r_.cfg.boot_key_interval) {
      interval = *r_.cfg.boot_key_interval;
    } else if (const char* env = std::getenv("PACKER_KEY_INTERVAL"); env && *env) {
      if (auto d = util::parse_duration(env))
        interval = *d;
      else
        st.ui.warn(st.build.name, "PACKER_KEY_INTERVAL='" + std::string(env) + "' is not a duration: using 100ms");
    }
    type_boot_command(*r_.qmp, events, interval, st.cancel);
  }

 private:
  QemuRun& r_;
};

class WaitForSshStep : public Step {
 public:
  WaitForSshStep(QemuRun& r, std::mt19937& rng) : r_(r), rng_(rng) {}
  std::string name() const override { return "wait for SSH"; }
  nlohmann::json key_material(const State&) const override {
    return {{"step", "qemu-ssh"}, {"username", r_.cfg.ssh.username}, {"port", r_.cfg.ssh_port}};
  }
  void run(State& st) override {
    if (r_.cache.full_hit()) {
      st.message("no VM: every step is cached");
      return;
    }
    if (r_.cfg.pause_before_connecting.count() > 0) {
      st.message("pausing " + util::format_duration(r_.cfg.pause_before_connecting) + " before connecting");
      st.cancel.sleep_for(r_.cfg.pause_before_connecting);
    }
    for (;;) {
      Outcome o = attempt(st);
      if (o == Outcome::Connected) break;
      if (o == Outcome::KvmNoProgress) {
        verdicts_for(r_.cfg).remember_kvm_stuck();
        st.ui.warn(st.build.name,
                   "the guest made no progress under kvm in " +
                       util::format_duration(r_.cfg.accelerator_probe_timeout) +
                       " (no serial output, no SSH): this host's /dev/kvm cannot run it (nested virtualization?). "
                       "Restarting with accelerator tcg; set \"accelerator\": \"tcg\" (or IMGBAKE_QEMU_ACCEL=tcg) to "
                       "skip this probe. The verdict is kept in " +
                       AcceleratorVerdicts::default_file().string());
        r_.qmp.reset();
        r_.vm->stop(seconds(1));
        r_.vm.reset();
        r_.accel = "tcg";
        launch(st, r_, rng_);
        continue;
      }
    }
    st.communicator = r_.comm.get();
    // Packer's generated data for the SSH endpoint: what the ansible provisioner logs in with.
    st.data["ConnType"] = "ssh";
    st.data["Host"] = r_.cfg.ssh_host.empty() ? "127.0.0.1" : r_.cfg.ssh_host;
    st.data["Port"] = std::to_string(r_.host_port ? r_.host_port : static_cast<int>(r_.cfg.ssh_port));
    st.data["User"] = r_.cfg.ssh.username;
    st.data["SSHPrivateKeyFile"] = r_.cfg.ssh.private_key_file;
  }
  void cleanup(State& st) noexcept override {
    st.communicator = nullptr;
    r_.comm.reset();
  }

 private:
  enum class Outcome { Connected, KvmNoProgress };

  Outcome attempt(State& st) {
    SshConfig sc = r_.cfg.ssh;
    sc.host = r_.cfg.ssh_host.empty() ? "127.0.0.1" : r_.cfg.ssh_host;
    sc.port = r_.host_port ? r_.host_port : static_cast<int>(r_.cfg.ssh_port);
    st.message("waiting for SSH on " + sc.host + ":" + std::to_string(sc.port) + " (ssh_timeout " +
               util::format_duration(sc.timeout) + ")");
    // A watcher stops the wait early when qemu exits, or when a kvm guest shows no sign of life.
    CancelToken stop;
    std::atomic<bool> done{false};
    std::atomic<bool> vm_exited{false};
    std::atomic<bool> no_progress{false};
    bool probing = r_.accel == "kvm";
    bool auto_fallback = probing && r_.cfg.accel == Accelerator::Auto;
    auto start = Clock::now();
    std::thread watcher([&] {
      bool warned = false;
      while (!done.load()) {
        if (st.cancel.cancelled()) {
          stop.cancel(st.cancel.signal());
          return;
        }
        if (r_.vm->exited()) {
          vm_exited = true;
          stop.cancel(SIGTERM);
          return;
        }
        if (probing && Clock::now() - start > r_.cfg.accelerator_probe_timeout &&
            file_size_or_zero(r_.serial_log()) == 0) {
          if (auto_fallback) {
            no_progress = true;
            stop.cancel(SIGTERM);
            return;
          }
          if (!warned) {
            warned = true;
            st.ui.warn(st.build.name, "no output from the guest in " +
                                          util::format_duration(r_.cfg.accelerator_probe_timeout) +
                                          " under kvm: if it hangs, this host's /dev/kvm may not run it; use "
                                          "\"accelerator\": \"tcg\"");
          }
        }
        if (probing && file_size_or_zero(r_.serial_log()) > 0) probing = false;
        std::this_thread::sleep_for(milliseconds(100));
      }
    });
    std::string last_state;
    auto progress = [&](std::string_view s) {
      last_state = s;
      if (st.build.debug) st.message(std::string(s));
    };
    try {
      r_.comm = SshCommunicator::connect(sc, stop, progress);
    } catch (const Cancelled&) {
      done = true;
      watcher.join();
      if (st.cancel.cancelled()) throw;
      if (no_progress) return Outcome::KvmNoProgress;
      if (vm_exited) throw BuildError(exited_message());
      throw;
    } catch (const BuildError& e) {
      done = true;
      watcher.join();
      std::string msg = e.what();
      if (r_.accel == "kvm" && file_size_or_zero(r_.serial_log()) == 0)
        msg += " (the guest printed nothing on its serial console under kvm: try \"accelerator\": \"tcg\")";
      std::string serial = tail_of(r_.serial_log(), 10);
      if (!serial.empty()) msg += "\nlast lines of the guest's serial console:\n" + serial;
      throw BuildError(msg);
    }
    done = true;
    watcher.join();
    auto elapsed = std::chrono::duration_cast<milliseconds>(Clock::now() - start);
    st.message("connected to SSH as " + sc.username + " after " + util::format_duration(elapsed));
    SshCommunicator* comm = r_.comm.get();
    Ui& ui = st.ui;
    std::string build = st.build.name;
    comm->log = [&ui, build](std::string_view line) { ui.message(build, std::string(line)); };
    return Outcome::Connected;
  }

  std::string exited_message() const {
    std::string msg = "qemu exited with status " + std::to_string(r_.vm->exit_status()) + " before SSH was reachable";
    std::string log = tail_of(r_.qemu_log(), 10);
    if (!log.empty()) msg += "; qemu said:\n" + log;
    std::string serial = tail_of(r_.serial_log(), 10);
    if (!serial.empty()) msg += "\nlast lines of the guest's serial console:\n" + serial;
    return msg;
  }

  QemuRun& r_;
  std::mt19937& rng_;
};

class ShutdownStep : public Step {
 public:
  explicit ShutdownStep(QemuRun& r) : r_(r) {}
  std::string name() const override { return "shut down"; }
  nlohmann::json key_material(const State&) const override {
    return {{"step", "qemu-shutdown"}, {"shutdown_command", r_.cfg.shutdown_command}};
  }
  void run(State& st) override {
    if (r_.cache.full_hit()) {
      st.message("no VM: every step is cached");
      return;
    }
    shut_down(st);
    r_.cache.after_shutdown(st, r_);
  }

 private:
  void shut_down(State& st) {
    const QemuConfig& c = r_.cfg;
    auto deadline_text = util::format_duration(c.shutdown_timeout);
    if (!c.shutdown_command.empty() && st.communicator) {
      st.message("running the shutdown command: " + st.ui.mask(c.shutdown_command));
      RemoteCommand cmd;
      cmd.command = st.render(c.shutdown_command);
      cmd.timeout = c.shutdown_timeout;
      auto out = [&](std::string_view l) { st.ui.output(st.build.name, Stream::Stdout, l); };
      auto err = [&](std::string_view l) { st.ui.output(st.build.name, Stream::Stderr, l); };
      // The guest may power off before the command's status comes back: no status is expected.
      RunResult result = RunResult::dropped();
      try {
        result = st.communicator->run(cmd, out, err, st.cancel);
      } catch (const Cancelled&) {
        throw;
      } catch (const BuildError& e) {
        // The guest may power off before the command's status comes back.
        st.message(std::string("the shutdown command ended without a status (") + e.what() + "): expected");
      }
      if (!result.disconnected && result.status != 0)
        st.ui.warn(st.build.name, "the shutdown command exited with status " + std::to_string(result.status));
      st.communicator = nullptr;
      r_.comm.reset();
      if (wait_exit(st, c.shutdown_timeout)) return;
      r_.vm->stop(seconds(3));
      throw BuildError("the guest did not power off within shutdown_timeout (" + deadline_text +
                       ") after the shutdown command; qemu was killed, so the disk may be inconsistent");
    }
    st.communicator = nullptr;
    r_.comm.reset();
    st.message("no shutdown_command: asking the guest to power off (ACPI, QMP system_powerdown)");
    try {
      r_.qmp->execute("system_powerdown");
    } catch (const BuildError& e) {
      st.ui.warn(st.build.name, std::string("system_powerdown failed: ") + e.what());
    }
    if (wait_exit(st, c.shutdown_timeout)) return;
    r_.vm->stop(seconds(3));
    throw BuildError("the guest did not power off within shutdown_timeout (" + deadline_text +
                     ") after an ACPI power-down request; qemu was killed, so the disk may be inconsistent. Give a "
                     "shutdown_command (e.g. \"poweroff\") if the guest does not handle ACPI");
  }

  bool wait_exit(State& st, milliseconds timeout) {
    auto t0 = Clock::now();
    if (!r_.vm->wait_for(timeout, st.cancel)) return false;
    r_.qmp.reset();
    r_.vm_exited_cleanly = true;
    auto d = std::chrono::duration_cast<milliseconds>(Clock::now() - t0);
    st.message("the guest powered off (" + util::format_duration(d) + ")");
    return true;
  }

  QemuRun& r_;
};

// A VM started with -incoming: waits until its saved state is loaded, then lets it run (it was
// paused when the state was saved).
void resume(State& st, QemuRun& r) {
  auto t0 = Clock::now();
  for (;;) {
    if (r.vm->exited())
      throw BuildError("qemu exited while loading the checkpoint's VM state: " + tail_of(r.qemu_log(), 10));
    std::string status = r.qmp->execute("query-status").value("status", "");
    if (status != "inmigrate") {
      if (status != "running") r.qmp->execute("cont");
      break;
    }
    if (Clock::now() - t0 > std::chrono::minutes(5))
      throw BuildError("qemu did not load the checkpoint's VM state within 5 minutes");
    st.cancel.sleep_for(milliseconds(50));
    st.cancel.throw_if_cancelled();
  }
  st.message("resumed the VM from its checkpoint in " +
             util::format_duration(std::chrono::duration_cast<milliseconds>(Clock::now() - t0)));
}

}  // namespace

void launch(State& st, QemuRun& r, std::mt19937& rng) {
  const QemuConfig& c = r.cfg;
  st.data["OutputDir"] = r.output_dir.string();
  st.data["Name"] = c.vm_name;
  std::string last_error;
  for (int attempt = 0; attempt < 3; ++attempt) {
    r.host_port =
        c.skip_nat_mapping ? 0 : free_port(static_cast<int>(c.host_port_min), static_cast<int>(c.host_port_max), rng);
    st.data["SSHHostPort"] = std::to_string(r.host_port);
    std::vector<std::vector<std::string>> qemuargs;
    for (const auto& entry : c.qemuargs) {
      std::vector<std::string> rendered;
      rendered.reserve(entry.size());
      for (const auto& part : entry) rendered.push_back(st.render(part));
      qemuargs.push_back(std::move(rendered));
    }
    LaunchFacts f;
    f.accelerator = r.accel;
    f.disk_path = r.cache.enabled() ? r.cache.top().string() : r.disk_path.string();
    if (r.cache.enabled()) f.disk_format = "qcow2";
    f.incoming = r.cache.incoming();
    f.extra_disks = r.extra_disks;
    f.cd_path = r.cd_path;
    if (!c.disk_image) f.iso_path = r.source_path;
    f.qmp_socket = (r.work_dir / "qmp.sock").string();
    f.serial_log = r.serial_log().string();
    f.host_port = r.host_port;
    std::error_code ec;
    fs::remove(f.qmp_socket, ec);
    fs::remove(f.serial_log, ec);
    std::vector<std::string> argv = qemu_command_line(c, f, qemuargs);
    st.message("starting qemu (" + r.accel + (r.host_port ? ", SSH on 127.0.0.1:" + std::to_string(r.host_port) : "") +
               "): " + st.ui.mask(util::join(argv, " ")));
    r.vm = std::make_unique<BackgroundProcess>(argv, r.qemu_log().string());
    r.vm_exited_cleanly = false;
    try {
      r.qmp = QmpClient::connect(f.qmp_socket, seconds(20), st.cancel);
      if (!f.incoming.empty()) resume(st, r);
      return;
    } catch (const Cancelled&) {
      throw;
    } catch (const std::exception& e) {
      r.vm->wait_for(milliseconds(500), st.cancel);
      bool exited = r.vm->exited();
      std::string log = tail_of(r.qemu_log(), 15);
      r.vm.reset();
      last_error = exited ? "qemu exited at start: " + log : std::string(e.what()) + (log.empty() ? "" : ": " + log);
      // Another process took the port between our check and qemu's bind: try another.
      if (log.find("hostfwd") == std::string::npos && log.find("host forwarding") == std::string::npos) break;
    }
  }
  throw BuildError(last_error);
}

std::unique_ptr<Step> make_http_server_step(QemuRun& r) { return std::make_unique<HttpServerStep>(r); }
std::unique_ptr<Step> make_launch_step(QemuRun& r, std::mt19937& rng) { return std::make_unique<LaunchStep>(r, rng); }
std::unique_ptr<Step> make_boot_command_step(QemuRun& r) { return std::make_unique<BootCommandStep>(r); }
std::unique_ptr<Step> make_wait_for_ssh_step(QemuRun& r, std::mt19937& rng) {
  return std::make_unique<WaitForSshStep>(r, rng);
}
std::unique_ptr<Step> make_shutdown_step(QemuRun& r) { return std::make_unique<ShutdownStep>(r); }

}  // namespace imgbake::qemu
