#include "qemu_config.h"

#include <algorithm>
#include <cctype>
#include <filesystem>

#include "imgbake/fetch.h"
#include "imgbake/util.h"

namespace imgbake::qemu {

std::optional<Accelerator> accelerator_kind(const std::string& name) {
  if (name == "auto" || name.empty()) return Accelerator::Auto;
  if (name == "kvm") return Accelerator::Kvm;
  if (name == "tcg") return Accelerator::Tcg;
  if (name == "none") return Accelerator::None;
  if (name == "xen" || name == "hax" || name == "hvf" || name == "whpx") return Accelerator::Other;
  return std::nullopt;
}

std::optional<uint64_t> parse_disk_size(const std::string& text) {
  std::string s = util::trim(text);
  size_t i = 0;
  while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i;
  if (i == 0 || i > 19) return std::nullopt;
  uint64_t n = std::stoull(s.substr(0, i));
  std::string unit = s.substr(i);
  for (auto& ch : unit) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  // A lone "B" means bytes (Packer: ^[0-9]+(b|k|m|g|t)?$); "10GB" and "10GiB" are "10G".
  int shift = 0;
  if (unit == "B")
    shift = 0;
  else if (unit.empty() || unit == "M" || unit == "MB" || unit == "MIB")
    shift = 20;
  else if (unit == "K" || unit == "KB" || unit == "KIB")
    shift = 10;
  else if (unit == "G" || unit == "GB" || unit == "GIB")
    shift = 30;
  else if (unit == "T" || unit == "TB" || unit == "TIB")
    shift = 40;
  else
    return std::nullopt;
  if (n > (UINT64_MAX >> shift)) return std::nullopt;  // beyond 16 EiB
  return n << shift;
}

namespace {

std::vector<std::vector<std::string>> read_qemuargs(ConfigReader& cfg) {
  std::vector<std::vector<std::string>> out;
  const json::Value* v = cfg.raw("qemuargs");
  if (!v || v->kind == json::Value::Kind::Null) return out;
  if (v->kind != json::Value::Kind::Array) {
    cfg.error("qemuargs", "must be a list of lists of strings, e.g. [[\"-m\", \"1024M\"]]");
    return out;
  }
  for (const auto& entry : v->items) {
    if (entry.kind != json::Value::Kind::Array || entry.items.empty()) {
      cfg.error("qemuargs", "each entry must be a non-empty list of strings, e.g. [\"-m\", \"1024M\"]");
      continue;
    }
    std::vector<std::string> parts;
    for (const auto& p : entry.items) {
      if (p.kind == json::Value::Kind::String)
        parts.push_back(p.text);
      else if (p.kind == json::Value::Kind::Number)
        parts.push_back(p.text);
      else
        cfg.error("qemuargs", "each entry must hold strings");
    }
    if (!parts.empty() && (parts[0].empty() || parts[0][0] != '-'))
      cfg.error("qemuargs",
                "'" + parts[0] + "' is not a qemu flag: each entry starts with one, e.g. [\"-m\", \"1024M\"]");
    out.push_back(std::move(parts));
  }
  return out;
}

uint64_t read_size(ConfigReader& cfg, const std::string& key, const json::Value& v, bool& ok) {
  std::string text = v.kind == json::Value::Kind::Number || v.kind == json::Value::Kind::String ? v.text : "";
  auto n = parse_disk_size(text);
  ok = n.has_value();
  if (!n) cfg.error(key, "'" + text + "' is not a size: give MiB (10240) or a number with K, M, G or T (\"10G\")");
  return n.value_or(0);
}

}  // namespace

void read_config(ConfigReader& cfg, QemuConfig& c) {
  // Source
  if (auto u = cfg.optional_string("iso_url"); u && !u->empty()) c.iso_urls.push_back(*u);
  for (const auto& u : cfg.strings("iso_urls")) c.iso_urls.push_back(u);
  if (cfg.has("iso_url") && cfg.has("iso_urls")) cfg.error("iso_urls", "give either 'iso_url' or 'iso_urls', not both");
  c.iso_checksum = cfg.string("iso_checksum");
  std::string checksum_type = cfg.string("iso_checksum_type");
  if (!checksum_type.empty()) {
    // Packer before 1.6 spelled the algorithm separately; Packer 1.6 refuses the old key and
    // asks for `packer fix`. imgbake reads the old pair and says what to write instead.
    if (checksum_type == "none")
      c.iso_checksum = "none";
    else if (!c.iso_checksum.empty() && c.iso_checksum.find(':') == std::string::npos)
      c.iso_checksum = checksum_type + ":" + c.iso_checksum;
    std::string raw = cfg.string("iso_checksum");
    cfg.warn("iso_checksum_type",
             "'iso_checksum_type' is deprecated (Packer 1.6 removed it): write \"iso_checksum\": \"" +
                 (checksum_type == "none"                              ? std::string("none")
                  : raw.empty() || raw.find("{{") != std::string::npos ? checksum_type + ":HEX"
                  : raw.find(':') == std::string::npos                 ? checksum_type + ":" + raw
                                                                       : raw) +
                 "\" and drop 'iso_checksum_type'");
  }
  c.iso_target_extension = cfg.string("iso_target_extension", c.iso_target_extension);
  c.iso_target_path = cfg.string("iso_target_path");
  c.iso_skip_cache = cfg.boolean("iso_skip_cache", false);
  c.disk_image = cfg.boolean("disk_image", false);
  c.use_backing_file = cfg.boolean("use_backing_file", false);
  c.skip_resize_disk = cfg.boolean("skip_resize_disk", false);
  if (c.iso_urls.empty())
    cfg.error("'iso_url' or 'iso_urls' is required (with disk_image: true, the disk to start from)");
  if (c.iso_checksum.empty())
    cfg.error("'iso_checksum' is required: \"sha256:HEX\", \"file:URL-of-SHA256SUMS\", or \"none\" to skip the check");
  else if (auto err = checksum_syntax_error(c.iso_checksum))
    cfg.error("iso_checksum", *err);
  else if (c.iso_checksum == "none")
    cfg.warn("iso_checksum", "iso_checksum is \"none\": the source will not be verified");
  if (c.use_backing_file && !c.disk_image) cfg.error("use_backing_file", "use_backing_file needs disk_image: true");
  if (c.use_backing_file && cfg.string("format", "qcow2") != "qcow2")
    cfg.error("use_backing_file", "use_backing_file needs format qcow2 (the output is a qcow2 overlay)");

  // Machine
  c.accelerator = cfg.string("accelerator", c.accelerator);
  if (auto kind = accelerator_kind(c.accelerator))
    c.accel = *kind;
  else
    cfg.error("accelerator",
              "'" + c.accelerator + "' is not an accelerator: auto, kvm, tcg, none, xen, hax, hvf or whpx");
  if (auto d = cfg.duration("accelerator_probe_timeout")) c.accelerator_probe_timeout = *d;
  c.memory = cfg.integer("memory", c.memory);
  c.cpus = cfg.integer("cpus", c.cpus);
  if (c.memory < 16) cfg.error("memory", "memory is in MiB and must be at least 16");
  if (c.cpus < 1) cfg.error("cpus", "cpus must be at least 1");
  c.machine_type = cfg.string("machine_type", c.machine_type);
  c.cpu_model = cfg.string("cpu_model");
  c.net_device = cfg.string("net_device", c.net_device);
  c.disk_interface = cfg.string("disk_interface", c.disk_interface);
  static const std::vector<std::string> interfaces = {"virtio", "virtio-scsi", "ide", "scsi", "sd", "none"};
  if (std::find(interfaces.begin(), interfaces.end(), c.disk_interface) == interfaces.end())
    cfg.error("disk_interface", "'" + c.disk_interface + "' is not a disk interface: " + util::join(interfaces, ", "));
  c.disk_cache = cfg.string("disk_cache", c.disk_cache);
  c.disk_discard = cfg.string("disk_discard", c.disk_discard);
  c.disk_detect_zeroes = cfg.string("disk_detect_zeroes", c.disk_detect_zeroes);
  static const std::vector<std::string> caches = {"writethrough", "writeback", "none", "unsafe", "directsync"};
  if (std::find(caches.begin(), caches.end(), c.disk_cache) == caches.end())
    cfg.error("disk_cache", "'" + c.disk_cache + "' is not a cache mode: " + util::join(caches, ", "));
  if (c.disk_discard != "ignore" && c.disk_discard != "unmap")
    cfg.error("disk_discard", "'" + c.disk_discard + "' must be ignore or unmap");
  if (c.disk_detect_zeroes != "off" && c.disk_detect_zeroes != "on" && c.disk_detect_zeroes != "unmap")
    cfg.error("disk_detect_zeroes", "'" + c.disk_detect_zeroes + "' must be off, on or unmap");
  // As in Packer, "" and 0 mean the default.
  if (const json::Value* v = cfg.raw("disk_size");
      v && v->kind != json::Value::Kind::Null && v->text != "" && v->text != "0") {
    bool ok = false;
    c.disk_size = read_size(cfg, "disk_size", *v, ok);
    c.disk_size_given = ok;
  }
  if (const json::Value* v = cfg.raw("disk_additional_size"); v && v->kind != json::Value::Kind::Null) {
    // A single size is a one-element list, as for other list options.
    std::vector<json::Value> items = v->kind == json::Value::Kind::Array ? v->items : std::vector<json::Value>{*v};
    for (const auto& item : items) {
      bool ok = false;
      uint64_t n = read_size(cfg, "disk_additional_size", item, ok);
      if (ok) c.disk_additional_size.push_back(n);
    }
  }
  c.qemu_binary = cfg.string("qemu_binary", c.qemu_binary);
  c.qemuargs = read_qemuargs(cfg);
  auto img_args = [&](const char* sub) -> std::vector<std::string> {
    const json::Value* v = cfg.raw("qemu_img_args");
    if (!v || v->kind != json::Value::Kind::Object) return {};
    const json::Value* list = v->find(sub);
    std::vector<std::string> out;
    if (list && list->kind == json::Value::Kind::Array)
      for (const auto& s : list->items) out.push_back(s.text);
    return out;
  };
  c.qemu_img_args_convert = img_args("convert");
  c.qemu_img_args_create = img_args("create");
  c.qemu_img_args_resize = img_args("resize");
  c.headless = cfg.boolean("headless", false);
  c.use_default_display = cfg.boolean("use_default_display", false);
  c.display = cfg.string("display");
  c.firmware = cfg.string("firmware");
  c.cdrom_interface = cfg.string("cdrom_interface");
  c.vm_name = cfg.string("vm_name");
  c.output_directory = cfg.string("output_directory");
  c.format = cfg.string("format", c.format);
  if (c.format != "qcow2" && c.format != "raw") cfg.error("format", "'" + c.format + "' must be qcow2 or raw");
  c.skip_compaction = cfg.boolean("skip_compaction", false);
  c.disk_compression = cfg.boolean("disk_compression", false);
  if (c.disk_compression && c.format != "qcow2") cfg.error("disk_compression", "disk_compression needs format qcow2");
  c.host_port_min = cfg.integer("host_port_min", cfg.integer("ssh_host_port_min", c.host_port_min));
  c.host_port_max = cfg.integer("host_port_max", cfg.integer("ssh_host_port_max", c.host_port_max));
  if (c.host_port_min < 1 || c.host_port_max > 65535 || c.host_port_min > c.host_port_max)
    cfg.error("host_port_min", "host_port_min..host_port_max must be a range of TCP ports");
  c.skip_nat_mapping = cfg.boolean("skip_nat_mapping", cfg.boolean("ssh_skip_nat_mapping", false));
  if (!cfg.string("net_bridge").empty())
    cfg.error("net_bridge", "net_bridge is not supported: imgbake uses qemu user networking with a forwarded port");

  // Boot
  c.boot_command = util::join(cfg.strings("boot_command"), "");
  if (auto d = cfg.duration("boot_wait")) c.boot_wait = *d;
  c.boot_key_interval = cfg.duration("boot_key_interval");
  cfg.accept({"boot_keygroup_interval"});
  c.http_directory = cfg.string("http_directory");
  c.http_content = cfg.string_map("http_content");
  c.http_bind_address = cfg.string("http_bind_address", c.http_bind_address);
  cfg.accept({"http_interface"});
  c.http_port_min = cfg.integer("http_port_min", c.http_port_min);
  c.http_port_max = cfg.integer("http_port_max", c.http_port_max);
  if (c.http_port_min < 1 || c.http_port_max > 65535 || c.http_port_min > c.http_port_max)
    cfg.error("http_port_min", "http_port_min..http_port_max must be a range of TCP ports");
  if (!c.http_directory.empty() && !std::filesystem::is_directory(c.http_directory))
    cfg.error("http_directory", "'" + c.http_directory + "' is not a directory");
  c.cd_files = cfg.strings("cd_files");
  c.cd_content = cfg.string_map("cd_content");
  c.cd_label = cfg.string("cd_label");
  for (const char* k : {"floppy_files", "floppy_dirs"}) {
    if (!cfg.strings(k).empty()) cfg.error(k, std::string(k) + " is not supported: use cd_files (a seed CD) instead");
  }
  cfg.accept({"floppy_label", "vnc_bind_address", "vnc_port_min", "vnc_port_max", "vnc_use_password", "disable_vnc",
              "qmp_enable", "qmp_socket_path", "run_once"});

  // Shutdown
  c.shutdown_command = cfg.string("shutdown_command");
  if (auto d = cfg.duration("shutdown_timeout")) c.shutdown_timeout = *d;

  // Communicator
  c.communicator = cfg.string("communicator", "ssh");
  if (c.communicator == "winrm")
    cfg.error("communicator", "the winrm communicator is not supported yet: use ssh");
  else if (c.communicator != "ssh" && c.communicator != "none")
    cfg.error("communicator", "'" + c.communicator + "' must be ssh or none");
  c.ssh_host = cfg.string("ssh_host");
  c.ssh_port = cfg.integer("ssh_port", 22);
  c.ssh.username = cfg.string("ssh_username");
  c.ssh.password = cfg.string("ssh_password");
  c.ssh.private_key_file = cfg.string("ssh_private_key_file");
  if (auto d = cfg.duration("ssh_timeout"))
    c.ssh.timeout = *d;
  else if (auto w = cfg.duration("ssh_wait_timeout"))
    c.ssh.timeout = *w;
  c.ssh.handshake_attempts = static_cast<int>(cfg.integer("ssh_handshake_attempts", 10));
  c.ssh.pty = cfg.boolean("ssh_pty", false);
  if (auto d = cfg.duration("ssh_keep_alive_interval")) c.ssh.keep_alive_interval = *d;
  c.ssh.agent_auth = cfg.boolean("ssh_agent_auth", false);
  if (auto d = cfg.duration("pause_before_connecting")) c.pause_before_connecting = *d;
  c.ssh_temporary_key_pair = cfg.boolean("ssh_temporary_key_pair", false);
  std::string key_type = cfg.string("temporary_key_pair_type", "ed25519");
  if (key_type != "ed25519") cfg.error("temporary_key_pair_type", "only ed25519 temporary keys are made");
  cfg.accept({"temporary_key_pair_bits", "temporary_key_pair_name", "ssh_clear_authorized_keys",
              "ssh_disable_agent_forwarding", "ssh_file_transfer_method", "ssh_read_write_timeout", "ssh_ciphers",
              "ssh_key_exchange_algorithms", "ssh_keypair_name", "ssh_public_key", "ssh_private_key"});
  for (const char* k : {"ssh_bastion_host", "ssh_proxy_host", "ssh_certificate_file"}) {
    if (!cfg.string(k).empty()) cfg.error(k, std::string(k) + " is not supported yet");
  }
  cfg.accept({"ssh_bastion_agent_auth",  "ssh_bastion_certificate_file",
              "ssh_bastion_interactive", "ssh_bastion_password",
              "ssh_bastion_port",        "ssh_bastion_private_key_file",
              "ssh_bastion_username",    "ssh_proxy_password",
              "ssh_proxy_port",          "ssh_proxy_username",
              "ssh_local_tunnels",       "ssh_remote_tunnels",
              "ssh_interface",           "winrm_host",
              "winrm_insecure",          "winrm_no_proxy",
              "winrm_password",          "winrm_port",
              "winrm_timeout",           "winrm_use_ntlm",
              "winrm_use_ssl",           "winrm_username"});
  if (c.communicator == "ssh") {
    if (c.ssh.username.empty()) cfg.require("ssh_username");
    bool has_auth = !c.ssh.password.empty() || !c.ssh.private_key_file.empty() || c.ssh.agent_auth;
    // As in Packer: without a password or key, a temporary key pair is made for the guest
    // to authorize (it reaches the guest through cd_content's {{ .SSHPublicKey }}).
    if (!has_auth) c.ssh_temporary_key_pair = true;
    if (!c.ssh.private_key_file.empty() && !std::filesystem::is_regular_file(c.ssh.private_key_file))
      cfg.error("ssh_private_key_file", "'" + c.ssh.private_key_file + "' does not exist");
  }
}

std::vector<std::string> qemu_command_line(const QemuConfig& c, const LaunchFacts& f,
                                           const std::vector<std::vector<std::string>>& qemuargs) {
  // Flag -> values, in the order qemu will see them.
  std::vector<std::pair<std::string, std::vector<std::string>>> args;
  auto add = [&](const std::string& flag, std::string value) {
    for (auto& [k, vals] : args) {
      if (k == flag) {
        vals.push_back(std::move(value));
        return;
      }
    }
    args.push_back({flag, {std::move(value)}});
  };
  add("-name", c.vm_name);
  std::string machine = "type=" + c.machine_type;
  if (f.accelerator != "none" && !f.accelerator.empty()) machine += ",accel=" + f.accelerator;
  add("-machine", machine);
  if (!c.cpu_model.empty()) add("-cpu", c.cpu_model);
  if (f.host_port > 0)
    add("-netdev",
        "user,id=user.0,hostfwd=tcp:127.0.0.1:" + std::to_string(f.host_port) + "-:" + std::to_string(c.ssh_port));
  else
    add("-netdev", "user,id=user.0");
  add("-device", c.net_device + ",netdev=user.0");
  // virtio-scsi is not a -drive bus: as Packer does, a virtio-scsi-pci controller with
  // scsi-hd/scsi-cd devices on drives of if=none.
  int drives = 0;
  bool scsi_controller = false;
  auto on_virtio_scsi = [&](const std::string& spec, const char* device) {
    if (!scsi_controller) add("-device", "virtio-scsi-pci,id=scsi0");
    scsi_controller = true;
    std::string id = "drive" + std::to_string(drives++);
    add("-drive", spec + ",if=none,id=" + id);
    add("-device", std::string(device) + ",bus=scsi0.0,drive=" + id);
  };
  auto disk = [&](const std::string& path) {
    std::string opts = ",cache=" + c.disk_cache + ",discard=" + c.disk_discard +
                       ",format=" + (f.disk_format.empty() ? c.format : f.disk_format);
    if (c.disk_detect_zeroes != "off") opts += ",detect-zeroes=" + c.disk_detect_zeroes;
    if (c.disk_interface == "virtio-scsi")
      on_virtio_scsi("file=" + path + opts, "scsi-hd");
    else
      add("-drive", "file=" + path + ",if=" + c.disk_interface + opts);
  };
  auto cdrom = [&](const std::string& path) {
    std::string d = "file=" + path + ",media=cdrom";
    if (c.cdrom_interface == "virtio-scsi")
      on_virtio_scsi(d, "scsi-cd");
    else
      add("-drive", d + (c.cdrom_interface.empty() ? "" : ",if=" + c.cdrom_interface));
  };
  disk(f.disk_path);
  for (const auto& d : f.extra_disks) disk(d);
  if (!f.iso_path.empty()) cdrom(f.iso_path);
  if (!f.cd_path.empty()) cdrom(f.cd_path);
  add("-boot", c.disk_image ? "c" : "once=d");
  add("-m", std::to_string(c.memory) + "M");
  add("-smp", "cpus=" + std::to_string(c.cpus) + ",sockets=" + std::to_string(c.cpus));
  if (!c.firmware.empty()) add("-bios", c.firmware);
  if (!c.display.empty())
    add("-display", c.display);
  else if (c.headless || std::getenv("DISPLAY") == nullptr)
    add("-display", "none");
  else if (!c.use_default_display)
    add("-display", "gtk");
  add("-qmp", "unix:" + f.qmp_socket + ",server=on,wait=off");
  add("-serial", "file:" + f.serial_log);
  if (!f.incoming.empty()) add("-incoming", f.incoming);

  // qemuargs: each flag the user gives replaces all of that flag's defaults.
  std::vector<std::pair<std::string, std::vector<std::string>>> user;
  for (const auto& entry : qemuargs) {
    const std::string& flag = entry.front();
    std::string value;
    for (size_t i = 1; i < entry.size(); ++i) value += entry[i];
    auto it = std::find_if(user.begin(), user.end(), [&](const auto& p) { return p.first == flag; });
    if (it == user.end()) {
      user.push_back({flag, {}});
      it = user.end() - 1;
    }
    if (!value.empty()) it->second.push_back(value);  // ["-nographic", ""] is a bare flag
  }
  // As Packer 1.6.6 does (its issue #6804): a template that gives its own -device entries
  // but no network card still gets the default one.
  for (auto& [flag, vals] : user) {
    if (flag != "-device") continue;
    bool has_nic = std::any_of(vals.begin(), vals.end(),
                               [&](const std::string& v) { return v.find(c.net_device) != std::string::npos; });
    if (!has_nic) vals.push_back(c.net_device + ",netdev=user.0");
  }
  std::vector<std::string> argv = {c.qemu_binary};
  auto emit = [&](const std::string& flag, const std::vector<std::string>& vals) {
    if (vals.empty()) argv.push_back(flag);
    for (const auto& v : vals) {
      argv.push_back(flag);
      argv.push_back(v);
    }
  };
  for (const auto& entry : args) {
    const std::string& flag = entry.first;
    auto it = std::find_if(user.begin(), user.end(), [&](const auto& p) { return p.first == flag; });
    emit(flag, it == user.end() ? entry.second : it->second);
  }
  for (const auto& entry : user) {
    const std::string& flag = entry.first;
    bool is_default = std::any_of(args.begin(), args.end(), [&](const auto& p) { return p.first == flag; });
    if (!is_default) emit(flag, entry.second);
  }
  return argv;
}

}  // namespace imgbake::qemu
