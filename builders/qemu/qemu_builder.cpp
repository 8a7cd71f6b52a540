// The qemu builder (Packer's "qemu"): boots a VM from a disk image or an install ISO,
// provisions it over SSH, shuts it down and leaves a compacted disk image. The build is
// the flat list of steps in QemuBuilder::steps(); they share one QemuRun.
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <unistd.h>
#include <csignal>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include <libssh/libssh.h>

#include "boot_command.h"
#include "cd_files.h"
#include "http_server.h"
#include "imgbake/builder.h"
#include "imgbake/error.h"
#include "imgbake/fetch.h"
#include "imgbake/oci.h"
#include "imgbake/process.h"
#include "imgbake/ssh.h"
#include "imgbake/util.h"
#include "qemu_config.h"
#include "qmp.h"

namespace fs = std::filesystem;

namespace imgbake::qemu {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using Clock = std::chrono::steady_clock;

// The guest sees the host as 10.0.2.2 under qemu user networking.
constexpr const char* kGuestHostAddress = "10.0.2.2";

struct QemuRun {
  QemuConfig cfg;
  fs::path output_dir;
  fs::path work_dir;  // short temp dir: the QMP socket path must fit in sun_path
  std::string source_path;
  std::string source_format;
  fs::path disk_path;
  std::vector<std::string> extra_disks;
  std::string cd_path;
  std::unique_ptr<HttpServer> http;
  std::string accel;  // resolved
  int host_port = 0;
  std::unique_ptr<BackgroundProcess> vm;
  std::unique_ptr<QmpClient> qmp;
  std::unique_ptr<SshCommunicator> comm;
  fs::path temp_key;  // private key of the temporary key pair
  bool vm_exited_cleanly = false;

  fs::path qemu_log() const { return work_dir / "qemu.log"; }
  fs::path serial_log() const { return work_dir / "serial.log"; }
};

std::string tail_of(const fs::path& p, size_t max_lines) {
  std::ifstream in(p);
  std::vector<std::string> lines;
  for (std::string l; std::getline(in, l);) {
    if (!l.empty() && l.back() == '\r') l.pop_back();
    lines.push_back(l);
    if (lines.size() > max_lines) lines.erase(lines.begin());
  }
  return util::join(lines, "\n");
}

uintmax_t file_size_or_zero(const fs::path& p) {
  std::error_code ec;
  auto n = fs::file_size(p, ec);
  return ec ? 0 : n;
}

// Runs a host tool (qemu-img) to completion; throws with its stderr on failure.
std::string run_tool(State& st, const std::vector<std::string>& argv) {
  ProcessSpec spec;
  spec.argv = argv;
  std::string out, err;
  int status = run_process(
      spec, [&](std::string_view l) { out.append(l).push_back('\n'); },
      [&](std::string_view l) { err.append(l).push_back('\n'); }, st.cancel);
  if (status != 0)
    throw BuildError(util::join(argv, " ") + " failed (status " + std::to_string(status) + "): " + util::trim(err));
  return out;
}

nlohmann::json image_info(State& st, const std::string& path) {
  return nlohmann::json::parse(run_tool(st, {"qemu-img", "info", "--output=json", path}));
}

// The state of /dev/kvm and of earlier probes, for accelerator "auto".
fs::path accel_verdict_file() { return fs::path(default_download_cache_dir()).parent_path() / "accel-verdicts.json"; }

std::string accel_verdict_key(const QemuConfig& c) {
  struct utsname u = {};
  uname(&u);
  return c.qemu_binary + "|" + u.release + "|" + u.version;
}

bool kvm_known_stuck(const QemuConfig& c) {
  try {
    auto j = nlohmann::json::parse(util::read_file(accel_verdict_file()));
    return j.value(accel_verdict_key(c), "") == "kvm-no-progress";
  } catch (const std::exception&) {
    return false;
  }
}

void remember_kvm_stuck(const QemuConfig& c) {
  nlohmann::json j = nlohmann::json::object();
  try {
    j = nlohmann::json::parse(util::read_file(accel_verdict_file()));
  } catch (const std::exception&) {
  }
  j[accel_verdict_key(c)] = "kvm-no-progress";
  std::error_code ec;
  fs::create_directories(accel_verdict_file().parent_path(), ec);
  try {
    util::write_file_atomic(accel_verdict_file(), j.dump(2) + "\n");
  } catch (const std::exception&) {
  }
}

bool kvm_usable() {
  int fd = ::open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (fd < 0) return false;
  ::close(fd);
  return true;
}

// A port in [lo, hi] that nothing listens on right now (random start, so parallel builds
// rarely pick the same one; qemu failing to bind is retried by the caller).
int free_port(int lo, int hi, std::mt19937& rng) {
  int span = hi - lo + 1;
  int start = std::uniform_int_distribution<int>(0, span - 1)(rng);
  for (int i = 0; i < span; ++i) {
    int port = lo + (start + i) % span;
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) continue;
    sockaddr_in a = {};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<uint16_t>(port));
    bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    ::close(fd);
    if (ok) return port;
  }
  throw BuildError("no free TCP port between host_port_min " + std::to_string(lo) + " and host_port_max " +
                   std::to_string(hi));
}

// ---------------------------------------------------------------------------

class OutputDirStep : public Step {
 public:
  explicit OutputDirStep(QemuRun& r) : r_(r) {}
  std::string name() const override { return "output directory"; }
  nlohmann::json key_material(const State&) const override {
    return {{"step", "qemu-output-dir"}, {"path", r_.cfg.output_directory}};
  }
  bool silent() const override { return true; }
  void run(State& st) override {
    if (r_.cfg.output_directory.empty()) r_.cfg.output_directory = "output-" + st.build.name;
    if (r_.cfg.vm_name.empty()) r_.cfg.vm_name = "packer-" + st.build.name;
    r_.output_dir = fs::absolute(r_.cfg.output_directory);
    if (fs::exists(r_.output_dir)) {
      if (!st.build.force)
        throw BuildError("output directory '" + r_.cfg.output_directory +
                         "' already exists: remove it, choose another output_directory, or build with -force");
      st.message("-force: removing the existing output directory " + r_.cfg.output_directory);
      fs::remove_all(r_.output_dir);
    }
    fs::create_directories(r_.output_dir);
    created_ = true;
    // $TMPDIR unless its path is too long for the QMP socket's sun_path (108 bytes).
    const char* tmpdir = std::getenv("TMPDIR");
    std::string base = tmpdir && *tmpdir && std::strlen(tmpdir) < 60 ? tmpdir : "/tmp";
    std::string tmpl = base + "/imgbake-qemu-XXXXXX";
    if (!::mkdtemp(tmpl.data())) throw BuildError("cannot create a temporary directory in " + base);
    r_.work_dir = tmpl;
    register_temp_path(r_.work_dir.string());
  }
  void cleanup(State& st) noexcept override {
    std::error_code ec;
    if (!r_.work_dir.empty()) {
      fs::remove_all(r_.work_dir, ec);
      unregister_temp_path(r_.work_dir.string());
    }
    // A failed or interrupted build leaves no half-made output behind (as Packer does).
    if (created_ && !st.artifact) fs::remove_all(r_.output_dir, ec);
  }

 private:
  QemuRun& r_;
  bool created_ = false;
};

class FetchSourceStep : public Step {
 public:
  explicit FetchSourceStep(QemuRun& r) : r_(r) {}
  std::string name() const override { return r_.cfg.disk_image ? "source disk" : "source ISO"; }
  nlohmann::json key_material(const State&) const override {
    return {{"step", "qemu-fetch"}, {"urls", r_.cfg.iso_urls}, {"checksum", r_.cfg.iso_checksum}};
  }
  void run(State& st) override {
    FetchRequest req;
    req.urls = r_.cfg.iso_urls;
    req.checksum = r_.cfg.iso_checksum;
    req.target_extension = r_.cfg.iso_target_extension;
    if (r_.cfg.iso_skip_cache) {
      req.cache_dir = (r_.work_dir / "download").string();
    } else if (!r_.cfg.iso_target_path.empty()) {
      fs::path p = r_.cfg.iso_target_path;
      req.cache_dir = (fs::is_directory(p) || p.extension().empty() ? p : p.parent_path()).string();
    } else {
      req.cache_dir = default_download_cache_dir();
    }
    int last_decile = -1;
    auto progress = [&](uint64_t done, uint64_t total) {
      if (total == 0) return;
      int decile = static_cast<int>(done * 10 / total);
      if (decile == last_decile) return;
      last_decile = decile;
      st.message("downloading: " + std::to_string(decile * 10) + "% of " + std::to_string(total >> 20) + " MiB");
    };
    FetchResult res = fetch(req, progress, st.cancel);
    r_.source_path = fs::absolute(res.path).string();
    if (res.checksum_type == "none")
      st.message("using " + res.path + " (not verified: iso_checksum is none)");
    else
      st.message("using " + res.path + " (" + res.checksum_type + " verified" +
                 (res.from_cache ? ", from the cache" : "") + ")");
  }

 private:
  QemuRun& r_;
};

class TemporaryKeyStep : public Step {
 public:
  explicit TemporaryKeyStep(QemuRun& r) : r_(r) {}
  std::string name() const override { return "temporary SSH key"; }
  nlohmann::json key_material(const State&) const override { return {{"step", "qemu-temporary-key"}}; }
  bool silent() const override { return true; }
  void run(State& st) override {
    ssh_key key = nullptr;
    if (ssh_pki_generate(SSH_KEYTYPE_ED25519, 0, &key) != SSH_OK) throw BuildError("cannot generate an ed25519 key");
    r_.temp_key = r_.work_dir / "temporary_key";
    char* b64 = nullptr;
    int rc = ssh_pki_export_privkey_file(key, nullptr, nullptr, nullptr, r_.temp_key.c_str());
    if (rc == SSH_OK) rc = ssh_pki_export_pubkey_base64(key, &b64);
    ssh_key_free(key);
    if (rc != SSH_OK) throw BuildError("cannot write the temporary SSH key to " + r_.temp_key.string());
    fs::permissions(r_.temp_key, fs::perms::owner_read | fs::perms::owner_write);
    st.data["SSHPublicKey"] = std::string("ssh-ed25519 ") + b64 + " imgbake-" + st.build.run_uuid;
    ssh_string_free_char(b64);
    r_.cfg.ssh.private_key_file = r_.temp_key.string();
  }

 private:
  QemuRun& r_;
};

class SeedCdStep : public Step {
 public:
  explicit SeedCdStep(QemuRun& r) : r_(r) {}
  std::string name() const override { return "seed CD"; }
  nlohmann::json key_material(const State&) const override {
    nlohmann::json files = nlohmann::json::array();
    for (const auto& f : r_.cfg.cd_files) {
      std::error_code ec;
      files.push_back(
          {{"path", f}, {"sha256", fs::is_regular_file(f, ec) ? util::file_digest_hex(f) : std::string("not a file")}});
    }
    return {{"step", "qemu-cd"}, {"files", files}, {"content", r_.cfg.cd_content}, {"label", r_.cfg.cd_label}};
  }
  void run(State& st) override {
    CdSpec spec;
    spec.files = r_.cfg.cd_files;
    for (const auto& [path, body] : r_.cfg.cd_content) spec.content[path] = st.render(body);
    spec.label = r_.cfg.cd_label;
    r_.cd_path = (r_.work_dir / "cd.iso").string();
    make_cd(spec, r_.cd_path, st.cancel);
    st.message("made " + r_.cd_path + " (" + std::to_string(spec.files.size() + spec.content.size()) + " entries" +
               ", label " + (spec.label.empty() ? std::string("packer") : spec.label) + ")");
  }

 private:
  QemuRun& r_;
};

class DiskStep : public Step {
 public:
  explicit DiskStep(QemuRun& r) : r_(r) {}
  std::string name() const override { return "create disk"; }
  nlohmann::json key_material(const State&) const override {
    return {{"step", "qemu-disk"},
            {"format", r_.cfg.format},
            {"size", r_.cfg.disk_size},
            {"backing", r_.cfg.use_backing_file},
            {"disk_image", r_.cfg.disk_image}};
  }
  void run(State& st) override {
    const QemuConfig& c = r_.cfg;
    r_.disk_path = r_.output_dir / c.vm_name;
    std::string disk = r_.disk_path.string();
    if (c.disk_image) {
      nlohmann::json info = image_info(st, r_.source_path);
      r_.source_format = info.value("format", "raw");
      uint64_t virtual_size = info.value("virtual-size", uint64_t{0});
      if (c.use_backing_file) {
        std::vector<std::string> argv = {"qemu-img", "create",       "-f", "qcow2",
                                         "-b",       r_.source_path, "-F", r_.source_format};
        argv.insert(argv.end(), c.qemu_img_args_create.begin(), c.qemu_img_args_create.end());
        argv.push_back(disk);
        run_tool(st, argv);
        st.message("created " + disk + " on top of " + r_.source_path + " (backing file)");
      } else if (r_.source_format == c.format && c.format == "qcow2") {
        fs::copy_file(r_.source_path, disk);
        st.message("copied " + r_.source_path + " to " + disk);
      } else {
        std::vector<std::string> argv = {"qemu-img", "convert", "-f", r_.source_format, "-O", c.format};
        argv.insert(argv.end(), c.qemu_img_args_convert.begin(), c.qemu_img_args_convert.end());
        argv.insert(argv.end(), {r_.source_path, disk});
        run_tool(st, argv);
        st.message("converted " + r_.source_path + " (" + r_.source_format + ") to " + disk + " (" + c.format + ")");
      }
      if (!c.skip_resize_disk) {
        if (virtual_size >= c.disk_size) {
          if (c.disk_size_given)
            st.message("disk_size " + std::to_string(c.disk_size >> 20) + " MiB is not larger than the image (" +
                       std::to_string(virtual_size >> 20) + " MiB): not resized");
        } else {
          std::vector<std::string> argv = {"qemu-img", "resize", "-f", c.use_backing_file ? "qcow2" : c.format};
          argv.insert(argv.end(), c.qemu_img_args_resize.begin(), c.qemu_img_args_resize.end());
          argv.insert(argv.end(), {disk, std::to_string(c.disk_size)});
          run_tool(st, argv);
          st.message("resized the disk to " + std::to_string(c.disk_size >> 20) + " MiB");
        }
      }
    } else {
      std::vector<std::string> argv = {"qemu-img", "create", "-f", c.format};
      argv.insert(argv.end(), c.qemu_img_args_create.begin(), c.qemu_img_args_create.end());
      argv.insert(argv.end(), {disk, std::to_string(c.disk_size)});
      run_tool(st, argv);
      st.message("created an empty " + std::to_string(c.disk_size >> 20) + " MiB " + c.format + " disk " + disk);
    }
    for (size_t i = 0; i < c.disk_additional_size.size(); ++i) {
      std::string extra = disk + "-" + std::to_string(i + 1);
      run_tool(st, {"qemu-img", "create", "-f", c.format, extra, std::to_string(c.disk_additional_size[i])});
      r_.extra_disks.push_back(extra);
    }
  }

 private:
  QemuRun& r_;
};

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

// Starts qemu and connects QMP. Shared by the launch step and the accelerator fallback.
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
    f.disk_path = r.disk_path.string();
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
      c.accel = c.accelerator == "kvm"    ? Accelerator::Kvm
                : c.accelerator == "tcg"  ? Accelerator::Tcg
                : c.accelerator == "none" ? Accelerator::None
                : c.accelerator == "auto" ? Accelerator::Auto
                                          : Accelerator::Other;
    }
    switch (c.accel) {
      case Accelerator::Auto:
        if (!kvm_usable()) {
          r_.accel = "tcg";
          st.message("accelerator auto: /dev/kvm is not usable here, using tcg (software emulation)");
        } else if (kvm_known_stuck(c)) {
          r_.accel = "tcg";
          st.message(
              "accelerator auto: an earlier build found that guests make no progress under kvm on this host "
              "(" +
              accel_verdict_file().string() + "), using tcg");
        } else {
          r_.accel = "kvm";
        }
        break;
      case Accelerator::Kvm: r_.accel = "kvm"; break;
      case Accelerator::Tcg: r_.accel = "tcg"; break;
      case Accelerator::None: r_.accel = "none"; break;
      case Accelerator::Other: r_.accel = c.accelerator; break;
    }
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
    if (r_.cfg.pause_before_connecting.count() > 0) {
      st.message("pausing " + util::format_duration(r_.cfg.pause_before_connecting) + " before connecting");
      st.cancel.sleep_for(r_.cfg.pause_before_connecting);
    }
    for (;;) {
      Outcome o = attempt(st);
      if (o == Outcome::Connected) break;
      if (o == Outcome::KvmNoProgress) {
        remember_kvm_stuck(r_.cfg);
        st.ui.warn(st.build.name,
                   "the guest made no progress under kvm in " +
                       util::format_duration(r_.cfg.accelerator_probe_timeout) +
                       " (no serial output, no SSH): this host's /dev/kvm cannot run it (nested virtualization?). "
                       "Restarting with accelerator tcg; set \"accelerator\": \"tcg\" (or IMGBAKE_QEMU_ACCEL=tcg) to "
                       "skip this probe. The verdict is kept in " +
                       accel_verdict_file().string());
        r_.qmp.reset();
        r_.vm->stop(seconds(1));
        r_.vm.reset();
        r_.accel = "tcg";
        launch(st, r_, rng_);
        continue;
      }
    }
    st.communicator = r_.comm.get();
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
    const QemuConfig& c = r_.cfg;
    auto deadline_text = util::format_duration(c.shutdown_timeout);
    if (!c.shutdown_command.empty() && st.communicator) {
      st.message("running the shutdown command: " + st.ui.mask(c.shutdown_command));
      RemoteCommand cmd;
      cmd.command = st.render(c.shutdown_command);
      cmd.timeout = c.shutdown_timeout;
      auto out = [&](std::string_view l) { st.ui.output(st.build.name, Stream::Stdout, l); };
      auto err = [&](std::string_view l) { st.ui.output(st.build.name, Stream::Stderr, l); };
      int status = Communicator::kDisconnected;
      try {
        status = st.communicator->run(cmd, out, err, st.cancel);
      } catch (const Cancelled&) {
        throw;
      } catch (const BuildError& e) {
        // The guest may power off before the command's status comes back.
        st.message(std::string("the shutdown command ended without a status (") + e.what() + "): expected");
      }
      if (status != Communicator::kDisconnected && status != 0)
        st.ui.warn(st.build.name, "the shutdown command exited with status " + std::to_string(status));
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

 private:
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

class CompactStep : public Step {
 public:
  explicit CompactStep(QemuRun& r) : r_(r) {}
  std::string name() const override { return "compact disk"; }
  nlohmann::json key_material(const State&) const override {
    return {{"step", "qemu-compact"}, {"format", r_.cfg.format}, {"compression", r_.cfg.disk_compression}};
  }
  void run(State& st) override {
    const QemuConfig& c = r_.cfg;
    if (c.use_backing_file) {
      st.message("use_backing_file: not converting (that would merge the backing file into the image)");
      return;
    }
    std::vector<std::string> disks = {r_.disk_path.string()};
    disks.insert(disks.end(), r_.extra_disks.begin(), r_.extra_disks.end());
    for (const auto& disk : disks) {
      auto before = file_size_or_zero(disk);
      std::string tmp = disk + ".imgbake-convert";
      register_temp_path(tmp);
      std::vector<std::string> argv = {"qemu-img", "convert", "-f", c.format, "-O", c.format};
      if (c.disk_compression) argv.push_back("-c");
      argv.insert(argv.end(), c.qemu_img_args_convert.begin(), c.qemu_img_args_convert.end());
      argv.insert(argv.end(), {disk, tmp});
      try {
        run_tool(st, argv);
      } catch (...) {
        std::error_code ec;
        fs::remove(tmp, ec);
        unregister_temp_path(tmp);
        throw;
      }
      fs::rename(tmp, disk);
      unregister_temp_path(tmp);
      st.message("compacted " + fs::path(disk).filename().string() + ": " + std::to_string(before >> 10) + " KiB -> " +
                 std::to_string(file_size_or_zero(disk) >> 10) + " KiB");
    }
  }

 private:
  QemuRun& r_;
};

class ArtifactStep : public Step {
 public:
  explicit ArtifactStep(QemuRun& r) : r_(r) {}
  std::string name() const override { return "artifact"; }
  nlohmann::json key_material(const State&) const override { return {{"step", "artifact"}}; }
  bool silent() const override { return true; }
  void run(State& st) override {
    auto a = std::make_shared<Artifact>();
    a->builder_type = "qemu";
    std::vector<std::string> paths = {r_.disk_path.string()};
    paths.insert(paths.end(), r_.extra_disks.begin(), r_.extra_disks.end());
    a->files = describe_files(paths);
    std::string media = r_.cfg.format == "qcow2" ? oci::kDiskQcow2MediaType : oci::kDiskRawMediaType;
    for (auto& f : a->files) f.media_type = media;
    a->id = "sha256:" + a->files.front().sha256;
    a->metadata["format"] = r_.cfg.format;
    a->metadata["vm_name"] = r_.cfg.vm_name;
    a->metadata["accelerator"] = r_.accel;
    a->metadata["output_directory"] = r_.output_dir.string();
    if (!r_.cfg.iso_checksum.empty() && r_.cfg.disk_image && r_.cfg.iso_checksum != "none")
      a->metadata["source_checksum"] = r_.cfg.iso_checksum;
    if (r_.cfg.disk_image) a->metadata["parent"] = "sha256:" + util::file_digest_hex(r_.source_path);
    st.artifact = a;
  }

 private:
  QemuRun& r_;
};

class QemuBuilder : public Builder {
 public:
  QemuBuilder() : rng_(std::random_device{}()) {}
  std::set<std::string> runtime_keys() const override {
    return {"qemuargs", "boot_command", "cd_content", "http_content", "shutdown_command"};
  }
  void prepare(ConfigReader& cfg) override { read_config(cfg, run_.cfg); }
  StepList steps(StepList provision) override {
    const QemuConfig& c = run_.cfg;
    StepList s;
    s.push_back(std::make_unique<OutputDirStep>(run_));
    s.push_back(std::make_unique<FetchSourceStep>(run_));
    if (c.communicator == "ssh" && c.ssh_temporary_key_pair) s.push_back(std::make_unique<TemporaryKeyStep>(run_));
    if (!c.cd_files.empty() || !c.cd_content.empty()) s.push_back(std::make_unique<SeedCdStep>(run_));
    s.push_back(std::make_unique<DiskStep>(run_));
    if (!c.http_directory.empty() || !c.http_content.empty()) s.push_back(std::make_unique<HttpServerStep>(run_));
    s.push_back(std::make_unique<LaunchStep>(run_, rng_));
    if (!c.boot_command.empty()) s.push_back(std::make_unique<BootCommandStep>(run_));
    if (c.communicator == "ssh") s.push_back(std::make_unique<WaitForSshStep>(run_, rng_));
    for (auto& p : provision) s.push_back(std::move(p));
    s.push_back(std::make_unique<ShutdownStep>(run_));
    if (!c.skip_compaction) s.push_back(std::make_unique<CompactStep>(run_));
    s.push_back(std::make_unique<ArtifactStep>(run_));
    return s;
  }

 private:
  QemuRun run_;
  std::mt19937 rng_;
};

}  // namespace
}  // namespace imgbake::qemu

IMGBAKE_REGISTER_BUILDER("qemu", imgbake::qemu::QemuBuilder)
