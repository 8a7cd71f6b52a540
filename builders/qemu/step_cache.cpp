#include "step_cache.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <chrono>

#include "imgbake/cache_remote.h"
#include "imgbake/error.h"
#include "imgbake/fetch.h"
#include "imgbake/json_diff.h"
#include "imgbake/temp_path_guard.h"
#include "imgbake/util.h"
#include "qemu_config.h"
#include "qemu_run.h"

namespace imgbake::qemu {

namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;

// A disk level (the base disk, a step's overlay) and a saved VM state, as blobs of the store.
constexpr const char* kDiskMediaType = "application/vnd.imgbake.qemu.disk.v1.qcow2";
constexpr const char* kStateMediaType = "application/vnd.imgbake.qemu.state.v1.gzip";

std::string short_key(const std::string& k) { return k.substr(0, 12); }

// '…' for /bin/sh: qemu runs exec: migration URIs through it.
std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

std::string format_seconds(double s) {
  char buf[32];
  snprintf(buf, sizeof buf, "%.1f s", s);
  return buf;
}

// A file the user gives (a kernel, an initrd): its digest is part of the machine.
nlohmann::json with_file_digest(const std::string& value) {
  std::error_code ec;
  if (!value.empty() && value.find('=') == std::string::npos && fs::is_regular_file(value, ec))
    return {{"file", value}, {"sha256", util::file_digest_hex(value)}};
  return value;
}

}  // namespace

std::string source_digest(const fs::path& file, const fs::path& memo_file) {
  struct stat sb {};
  if (::stat(file.c_str(), &sb) != 0) return util::file_digest_hex(file);  // which says why
  auto ns = [](const timespec& t) { return static_cast<int64_t>(t.tv_sec) * 1000000000 + t.tv_nsec; };
  const nlohmann::json id = {{"dev", static_cast<uint64_t>(sb.st_dev)},
                             {"ino", static_cast<uint64_t>(sb.st_ino)},
                             {"size", static_cast<int64_t>(sb.st_size)},
                             {"mtime_ns", ns(sb.st_mtim)},
                             {"ctime_ns", ns(sb.st_ctim)}};
  const std::string path = fs::absolute(file).lexically_normal().string();
  nlohmann::json memo = nlohmann::json::object();
  try {
    memo = nlohmann::json::parse(util::read_file(memo_file));
  } catch (const std::exception&) {
  }
  if (!memo.is_object()) memo = nlohmann::json::object();
  if (auto it = memo.find(path); it != memo.end() && it->is_object()) {
    const nlohmann::json& e = *it;
    std::string digest = e.value("sha256", "");
    const int64_t recorded = e.value("recorded_ns", int64_t{0});
    if (e.value("id", nlohmann::json()) == id && digest.size() == 64 && recorded - ns(sb.st_ctim) > 2000000000LL &&
        digest.find_first_not_of("0123456789abcdef") == std::string::npos)
      return digest;
  }
  timespec now{};
  clock_gettime(CLOCK_REALTIME, &now);
  std::string digest = util::file_digest_hex(file);
  memo[path] = {{"id", id}, {"sha256", digest}, {"recorded_ns", ns(now)}};
  // At most 256 files: the ones recorded longest ago go.
  while (memo.size() > 256) {
    auto oldest = memo.begin();
    for (auto it = memo.begin(); it != memo.end(); ++it)
      if (it->value("recorded_ns", int64_t{0}) < oldest->value("recorded_ns", int64_t{0})) oldest = it;
    memo.erase(oldest);
  }
  // Written atomically; a memo that cannot be written only costs a hash next time.
  try {
    fs::create_directories(memo_file.parent_path());
    util::write_file_atomic(memo_file, memo.dump());
  } catch (const std::exception&) {
  }
  return digest;
}

std::string cache_refusal(const CacheEligibility& e) {
  if (e.no_cache) return "--no-cache";
  if (e.communicator != "ssh") return "the communicator is '" + e.communicator + "', not ssh";
  if (e.temporary_key)
    return "the guest authorizes a temporary SSH key pair, which does not outlive the build, so a later build could "
           "not log in to a resumed VM; give ssh_private_key_file or ssh_password to cache steps";
  if (e.use_backing_file) return "use_backing_file keeps the output disk on top of the source image";
  if (e.additional_disks) return "disk_additional_size: only the main disk is checkpointed";
  if (e.user_drives) return "qemuargs give their own -drive, which a checkpoint cannot follow";
  if (e.secrets)
    return "the template has sensitive variables, and a checkpoint keeps the guest's memory, where a step may have "
           "left them";
  return "";
}

CheckpointCache::CheckpointCache() = default;

CheckpointCache::~CheckpointCache() {
  if (dir_.empty()) return;
  std::error_code ec;
  fs::remove_all(dir_, ec);
}

fs::path CheckpointCache::link_path(const std::string& key) const { return dir_ / ("ck-" + key); }

// dir_/ck-KEY -> target: the overlays name their backing file "ck-KEY" (relative), so a chain
// resolves through these links wherever its blobs are.
void CheckpointCache::link(const std::string& key, const fs::path& target) {
  std::error_code ec;
  fs::remove(link_path(key), ec);
  fs::create_symlink(target, link_path(key));
}

store::Descriptor CheckpointCache::adopt(const fs::path& file, const std::string& media_type) {
  std::string digest = "sha256:" + util::file_digest_hex(file);
  return store_->blobs().adopt(file, digest, fs::file_size(file), media_type);
}

// A new overlay on top of the level `backing_key` names; the VM writes to it from now on.
void CheckpointCache::new_top(State& st, const std::string& backing_key, uint64_t virtual_size) {
  fs::path next = dir_ / ("top-" + std::to_string(++tops_) + ".qcow2");
  // -u: the backing level may be open in the running qemu (which holds its lock).
  run_tool(st, {"qemu-img", "create", "-q", "-f", "qcow2", "-u", "-b", "ck-" + backing_key, "-F", "qcow2",
                next.string(), std::to_string(virtual_size)});
  top_ = next;
}

// A disk level (and the VM state saved with it) into the store and the build cache under `key`;
// ck-KEY then points at the blob.
store::CacheEntry CheckpointCache::record(const std::string& key, const std::string& preimage, const fs::path& disk,
                                          const fs::path& state, const std::string& created_by,
                                          const std::string& slot) {
  store::CacheEntry entry;
  entry.key = key;
  entry.material = preimage;
  entry.blob = adopt(disk, kDiskMediaType);
  if (!state.empty()) entry.state = adopt(state, kStateMediaType);
  entry.created_by = created_by;
  store::cache_record(*store_, remote_, entry, slot_prefix_ + slot);
  link(key, store_->blobs().path(entry.blob.digest));
  return entry;
}

// Re-hashes one blob of a cache entry (a disk level or a VM state) before it is used.
bool CheckpointCache::intact(State& st, const store::Descriptor& blob, const std::string& key,
                             const std::string& what) {
  std::string problem = store_->blobs().check(blob.digest);
  if (problem.empty()) return true;
  st.ui.warn(st.build.name, "step cache: " + what + " (key " + short_key(key) + ") is damaged: " + problem +
                                "; not used, the step runs again");
  return false;
}

// A disk level must be a qcow2 whose one reference outside itself is the level below it ("ck-KEY",
// relative; none for the base disk): a level from a shared cache (--cache-from) could otherwise
// name any file of the host as its backing file or external data file, and the VM would read it.
bool CheckpointCache::level_ok(State& st, const store::CacheEntry& level, const std::string& backing_key,
                               const std::string& what) {
  std::string problem;
  try {
    nlohmann::json info = nlohmann::json::parse(run_tool(
        st, {"qemu-img", "info", "--output=json", "-f", "qcow2", store_->blobs().path(level.blob.digest).string()}));
    const std::string backing = info.value("backing-filename", "");
    const std::string want = backing_key.empty() ? "" : "ck-" + backing_key;
    if (backing != want) {
      problem = "its backing file is '" + backing + "', not '" + want + "'";
    } else if (!backing.empty() && info.value("backing-filename-format", "qcow2") != "qcow2") {
      problem = "its backing file is not read as qcow2";
    } else if (info.contains(nlohmann::json::json_pointer("/format-specific/data/data-file"))) {
      problem = "it names an external data file";
    }
  } catch (const std::exception& ex) {
    problem = std::string("qemu-img cannot read it as qcow2: ") + ex.what();
  }
  if (problem.empty()) return true;
  st.ui.warn(st.build.name, "step cache: " + what + " (key " + short_key(level.key) +
                                ") is not a disk level of this chain: " + problem + "; not used, the step runs again");
  return false;
}

std::string CheckpointCache::explain(State& st, const std::string& what, const std::string& key,
                                     const std::string& preimage, const std::string& slot, bool hit) {
  if (!st.build.explain_cache) return key;
  st.message("cache: " + what + ": key " + key.substr(0, 16) + " = sha256 of " + preimage);
  if (hit) {
    st.message("cache: " + what + ": hit");
  } else if (auto last = store_->cache_last_in_slot(slot); last && last->key != key) {
    // As the rootfs builder says it: which inputs changed since the step last ran.
    std::vector<std::string> changes;
    try {
      json_diff(nlohmann::json::parse(last->material), nlohmann::json::parse(preimage), "", changes);
    } catch (const std::exception&) {
    }
    st.message("cache: " + what + ": miss; last time this step had key " + last->key.substr(0, 16) + ", changed:");
    for (const auto& c : changes)
      st.message("  " + (c.starts_with("prev:") ? "prev (an earlier step's key changed): " + c.substr(6) : c));
  } else {
    st.message("cache: " + what + ": miss");
  }
  return key;
}

namespace {

// The key of a step: sha256 of {"prev": previous key, "step": material}, with secrets as their
// digests (as the rootfs builder's keys).
std::string chain_key(const State& st, const nlohmann::json& material, const std::string& prev, std::string& preimage) {
  nlohmann::json step = material;
  st.ui.redact_strings(step);
  preimage = nlohmann::json({{"prev", prev}, {"step", step}}).dump();
  return util::sha256_hex(preimage);
}

}  // namespace

bool CheckpointCache::prepare_disk(State& st, QemuRun& r) {
  const QemuConfig& c = r.cfg;
  CacheEligibility e;
  e.no_cache = st.build.no_cache;
  e.communicator = c.communicator;
  e.temporary_key = c.ssh_temporary_key_pair;
  e.use_backing_file = c.use_backing_file;
  e.additional_disks = !c.disk_additional_size.empty();
  for (const auto& a : c.qemuargs) e.user_drives = e.user_drives || (!a.empty() && a.front() == "-drive");
  e.secrets = st.ui.has_secrets();
  if (std::string why = cache_refusal(e); !why.empty()) {
    st.message("step cache: off (" + why + ")");
    return false;
  }
  store_ = std::make_unique<store::Store>(st.build.store_home.empty() ? store::Store::default_home()
                                                                      : fs::path(st.build.store_home));
  remote_ = st.build.cache_remote.get();
  fs::path tmp = store_->blobs().temp_dir();
  fs::create_directories(tmp);
  std::string tmpl = (tmp / "qemu-XXXXXX").string();
  if (!mkdtemp(tmpl.data())) throw BuildError("cannot create a directory in " + tmp.string());
  dir_ = tmpl;
  slot_prefix_ = st.build.template_path + "#" + st.build.name + "#";

  // The root of the chain: everything the machine is made of before the first provisioner.
  nlohmann::json qemuargs = nlohmann::json::array();
  for (const auto& entry : c.qemuargs) {
    nlohmann::json parts = nlohmann::json::array();
    for (const auto& part : entry) parts.push_back(with_file_digest(st.render(part)));
    qemuargs.push_back(parts);
  }
  nlohmann::json cd_files = nlohmann::json::array();
  for (const auto& f : c.cd_files) cd_files.push_back(with_file_digest(f));
  nlohmann::json ssh = {{"username", c.ssh.username}, {"port", c.ssh_port}, {"password", c.ssh.password}};
  if (!c.ssh.private_key_file.empty())
    ssh["key_sha256"] = util::sha256_hex(util::file_digest_hex(c.ssh.private_key_file));
  nlohmann::json material = {
      {"step", "qemu-machine"},
      {"source_sha256",
       source_digest(r.source_path, fs::path(default_download_cache_dir()).parent_path() / "file-digests.json")},
      {"disk_image", c.disk_image},
      {"disk_size", c.disk_size},
      {"skip_resize_disk", c.skip_resize_disk},
      {"machine",
       {{"accelerator", c.accelerator},
        {"machine_type", c.machine_type},
        {"cpu_model", c.cpu_model},
        {"memory", c.memory},
        {"cpus", c.cpus},
        {"firmware", c.firmware},
        {"net_device", c.net_device},
        {"disk_interface", c.disk_interface},
        {"disk_cache", c.disk_cache},
        {"disk_discard", c.disk_discard},
        {"disk_detect_zeroes", c.disk_detect_zeroes},
        {"cdrom_interface", c.cdrom_interface},
        {"qemuargs", qemuargs}}},
      {"cd", {{"files", cd_files}, {"content", c.cd_content}, {"label", c.cd_label}}},
      {"boot", {{"command", c.boot_command}, {"http_directory", c.http_directory}, {"http_content", c.http_content}}},
      {"ssh", ssh}};
  std::string preimage;
  root_key_ = chain_key(st, material, "", preimage);
  auto hit = store::cache_find(*store_, remote_, root_key_, slot_prefix_ + "base");
  if (hit && !(intact(st, hit->blob, root_key_, "the base disk") && level_ok(st, *hit, "", "the base disk")))
    hit.reset();
  explain(st, "base disk", root_key_, preimage, slot_prefix_ + "base", hit.has_value());
  if (hit) {
    link(root_key_, store_->blobs().path(hit->blob.digest));
    st.message("step cache: base disk from the cache (" + hit->blob.digest.substr(0, 19) + ", key " +
               short_key(root_key_) + ")");
  } else {
    fs::path base = dir_ / "base.qcow2";
    if (c.disk_image) {
      std::string format = image_info(st, r.source_path).value("format", "raw");
      run_tool(st, {"qemu-img", "convert", "-f", format, "-O", "qcow2", r.source_path, base.string()});
      uint64_t size = image_info(st, base.string()).value("virtual-size", uint64_t{0});
      if (!c.skip_resize_disk && size < c.disk_size)
        run_tool(st, {"qemu-img", "resize", "-q", "-f", "qcow2", base.string(), std::to_string(c.disk_size)});
    } else {
      run_tool(st, {"qemu-img", "create", "-q", "-f", "qcow2", base.string(), std::to_string(c.disk_size)});
    }
    store::CacheEntry entry = record(root_key_, preimage, base, "", "imgbake qemu: base disk", "base");
    st.message("step cache: base disk " + entry.blob.digest.substr(0, 19) + " (" + util::format_bytes(entry.blob.size) +
               ", key " + short_key(root_key_) + ")");
  }
  virtual_size_ = image_info(st, link_path(root_key_).string()).value("virtual-size", uint64_t{0});
  new_top(st, root_key_, virtual_size_);
  enabled_ = true;
  return true;
}

void CheckpointCache::plan(State& st, QemuRun& r) {
  if (!enabled_) return;
  std::string prev = root_key_;
  bool reads_machine = false;  // a step that must see the machine (a download) runs on every build
  for (size_t i = 0; i < steps_.size(); ++i) {
    std::string preimage;
    prev = chain_key(st, steps_[i]->key_material(st), prev, preimage);
    keys_.push_back(prev);
    preimages_.push_back(preimage);
    reads_machine = reads_machine || steps_[i]->host_effect() == HostEffect::FromMachine;
  }
  final_key_ =
      chain_key(st, {{"step", "qemu-shutdown"}, {"shutdown_command", r.cfg.shutdown_command}}, prev, final_preimage_);

  // The longest run of steps from the first whose checkpoints are all there and intact (the last
  // step has none: its changes are in the shut-down disk).
  // A full hit whose converted output disk is cached needs no level: none is fetched from a shared
  // cache or re-hashed, only the output disk is. (The levels this store has are still noted, so
  // that --cache-to sends the whole chain.)
  if (!reads_machine) {
    std::string preimage;
    auto out = store::cache_find(*store_, remote_, output_key(r.cfg, preimage), slot_prefix_ + "output");
    if (out && !out->empty && intact(st, out->blob, out->key, "the output disk")) output_ = out;
  }
  std::vector<store::CacheEntry> levels;
  const size_t checkpointed = steps_.empty() ? 0 : steps_.size() - 1;
  for (size_t i = 0; i < checkpointed; ++i) {
    if (steps_[i]->host_effect() == HostEffect::FromMachine) break;
    auto e = output_ ? store_->cache_get(keys_[i])
                     : store::cache_find(*store_, remote_, keys_[i], slot_prefix_ + std::to_string(i + 1));
    if (!e || e->state.digest.empty()) break;
    if (output_ && remote_) remote_->note(*e);
    levels.push_back(*e);
  }
  std::optional<store::CacheEntry> final_entry;
  if (!reads_machine && levels.size() == checkpointed)
    final_entry = output_ ? store_->cache_get(final_key_)
                          : store::cache_find(*store_, remote_, final_key_, slot_prefix_ + "shutdown");
  if (output_ && final_entry && remote_) remote_->note(*final_entry);
  // Every disk level used is re-hashed first; a VM state only when the VM resumes from it.
  for (size_t i = 0; i < levels.size() && !output_; ++i) {
    const std::string what = "the disk after step " + std::to_string(i + 1);
    if (!intact(st, levels[i].blob, levels[i].key, what) ||
        !level_ok(st, levels[i], i == 0 ? root_key_ : keys_[i - 1], what)) {
      levels.resize(i);
      final_entry.reset();
      break;
    }
  }
  if (final_entry && !output_ &&
      !(intact(st, final_entry->blob, final_key_, "the shut-down disk") &&
        level_ok(st, *final_entry, levels.empty() ? root_key_ : levels.back().key, "the shut-down disk")))
    final_entry.reset();
  if (!final_entry && !output_) {
    while (!levels.empty() && !intact(st, levels.back().state, levels.back().key,
                                      "the VM state after step " + std::to_string(levels.size())))
      levels.pop_back();
  }
  for (size_t i = 0; i < steps_.size(); ++i)
    explain(st, steps_[i]->name(), keys_[i], preimages_[i], slot_prefix_ + std::to_string(i + 1),
            i < levels.size() || final_entry.has_value() || output_.has_value());
  explain(st, "shut down", final_key_, final_preimage_, slot_prefix_ + "shutdown",
          final_entry.has_value() || output_.has_value());

  if (output_) {
    full_hit_ = true;
    st.message("step cache: every step is cached (output disk " + output_->blob.digest.substr(0, 19) +
               "): no VM is started");
    return;
  }
  for (size_t i = 0; i < levels.size(); ++i) link(keys_[i], store_->blobs().path(levels[i].blob.digest));
  if (final_entry) {
    link(final_key_, store_->blobs().path(final_entry->blob.digest));
    top_ = link_path(final_key_);
    full_hit_ = true;
    st.message("step cache: every step is cached (shut-down disk " + final_entry->blob.digest.substr(0, 19) +
               "): no VM is started");
    return;
  }
  resume_after_ = levels.size();
  if (resume_after_ == 0) return;
  const store::CacheEntry& last = levels.back();
  state_path_ = store_->blobs().path(last.state.digest).string();
  new_top(st, keys_[resume_after_ - 1], virtual_size_);
  st.message("step cache: resuming the VM after step " + std::to_string(resume_after_) + " of " +
             std::to_string(steps_.size()) + " (checkpoint " + short_key(last.key) + ", state " +
             util::format_bytes(last.state.size) + "): no boot");
}

// The output disk's key: the shut-down disk's key and what shapes the conversion.
std::string CheckpointCache::output_key(const QemuConfig& c, std::string& preimage) const {
  nlohmann::json step = {{"step", "qemu-output"},
                         {"format", c.format},
                         {"compression", c.disk_compression},
                         {"convert_args", c.qemu_img_args_convert}};
  preimage = nlohmann::json({{"prev", final_key_}, {"step", step}}).dump();
  return util::sha256_hex(preimage);
}

bool CheckpointCache::cached_output(State& st, const fs::path& disk) {
  if (!output_) return false;
  util::TempPathGuard tmp(disk.string() + ".imgbake-copy");
  fs::copy_file(store_->blobs().path(output_->blob.digest), tmp.path(), fs::copy_options::overwrite_existing);
  // The blob is read-only; the output disk is the user's.
  fs::permissions(tmp.path(),
                  fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read | fs::perms::others_read);
  fs::rename(tmp.path(), disk);
  tmp.dismiss();
  st.message("wrote " + disk.string() + " (" + util::format_bytes(output_->blob.size) + "): the cached output disk " +
             output_->blob.digest.substr(0, 19) + " of this chain");
  return true;
}

void CheckpointCache::keep_output(State&, const QemuConfig& c, const fs::path& disk) {
  if (!enabled_ || broken_) return;
  store::CacheEntry e;
  e.key = output_key(c, e.material);
  e.blob = store_->blobs().put_file(disk, c.format == "raw" ? oci::kDiskRawMediaType : oci::kDiskQcow2MediaType);
  e.created_by = "imgbake qemu: output disk (" + c.format + ")";
  store::cache_record(*store_, remote_, e, slot_prefix_ + "output");
}

std::string CheckpointCache::incoming() const {
  return state_path_.empty() ? "" : "exec:gzip -dc < " + shell_quote(state_path_);
}

void CheckpointCache::checkpoint(State& st, QemuRun& r, size_t i) {
  // The last step's changes go into the shut-down disk; a VM state after it would only serve a
  // step appended later, for 2 s on every build.
  if (!enabled_ || broken_ || !r.qmp || i == steps_.size()) return;
  auto t0 = Clock::now();
  const std::string& key = keys_.at(i - 1);
  fs::path frozen = top_;
  fs::path state = dir_ / ("state-" + std::to_string(i) + ".gz");
  bool paused = false;
  try {
    // The disk node the VM writes to: the one it was started with, then the overlay each
    // checkpoint put on top (named by us).
    std::string node = active_node_;
    if (node.empty()) {
      for (const auto& b : r.qmp->execute("query-block")) {
        if (!b.contains("inserted")) continue;
        const auto& ins = b["inserted"];
        if (ins.value("file", "") == frozen.string()) node = ins.value("node-name", "");
      }
    }
    if (node.empty()) throw BuildError("qemu does not show the disk " + frozen.string() + " (query-block)");
    r.qmp->execute("stop");
    paused = true;
    link(key, frozen);
    fs::path next_top = dir_ / ("top-" + std::to_string(tops_ + 1) + ".qcow2");
    new_top(st, key, virtual_size_);
    std::string next_node = "imgbake-top-" + std::to_string(tops_);
    r.qmp->execute("blockdev-snapshot-sync", {{"node-name", node},
                                              {"snapshot-file", next_top.string()},
                                              {"snapshot-node-name", next_node},
                                              {"format", "qcow2"},
                                              {"mode", "existing"}});
    active_node_ = next_node;
    r.qmp->execute("migrate", {{"uri", "exec:gzip -1 > " + shell_quote(state.string())}});
    for (;;) {
      nlohmann::json m = r.qmp->execute("query-migrate");
      std::string status = m.value("status", "");
      if (status == "completed") break;
      if (status == "failed" || status == "cancelled")
        throw BuildError("saving the VM's state failed: " + m.value("error-desc", status));
      st.cancel.sleep_for(std::chrono::milliseconds(50));
      st.cancel.throw_if_cancelled();
    }
    r.qmp->execute("cont");
    paused = false;
    store::CacheEntry entry = record(key, preimages_.at(i - 1), frozen, state,
                                     "imgbake qemu: checkpoint after " + steps_.at(i - 1)->name(), std::to_string(i));
    st.message("checkpoint " + short_key(key) + ": disk " + util::format_bytes(entry.blob.size) + ", VM state " +
               util::format_bytes(entry.state.size) + " (" + format_seconds(seconds_since(t0)) + ")");
  } catch (const Cancelled&) {
    throw;
  } catch (const std::exception& e) {
    broken_ = true;
    top_ = frozen;  // the VM still writes to it
    if (paused) {
      try {
        r.qmp->execute("cont");
      } catch (const std::exception&) {
      }
    }
    std::error_code ec;
    fs::remove(state, ec);
    st.ui.warn(st.build.name, std::string("step cache: no checkpoint after step ") + std::to_string(i) + ": " +
                                  e.what() + "; the rest of this build is not cached");
  }
}

void CheckpointCache::after_shutdown(State& st, QemuRun&) {
  if (!enabled_ || broken_ || full_hit_) return;
  store::CacheEntry entry =
      record(final_key_, final_preimage_, top_, "", "imgbake qemu: disk after shutdown", "shutdown");
  // The last step has no checkpoint (its changes are in the shut-down disk); its key and material
  // are kept all the same (an entry without blobs, never resumed from), so that --explain-cache
  // can say what changed in it next time.
  if (!steps_.empty()) {
    store::CacheEntry last;
    last.key = keys_.back();
    last.material = preimages_.back();
    last.empty = true;
    last.created_by = "imgbake qemu: step " + std::to_string(steps_.size()) + "'s key (the last step: no checkpoint)";
    store_->cache_put(last, slot_prefix_ + std::to_string(steps_.size()));
  }
  top_ = link_path(final_key_);
  st.message("step cache: shut-down disk " + entry.blob.digest.substr(0, 19) + " (" +
             util::format_bytes(entry.blob.size) + ", key " + short_key(final_key_) + ")");
}

}  // namespace imgbake::qemu
