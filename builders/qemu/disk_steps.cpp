// The qemu builder's steps around the disk: output directory, source, temporary key, seed CD,
// disk, compaction, artifact.
#include <unistd.h>

#include <filesystem>

#include <libssh/libssh.h>

#include "cd_files.h"
#include "imgbake/error.h"
#include "imgbake/fetch.h"
#include "imgbake/oci.h"
#include "imgbake/process.h"
#include "imgbake/temp_file.h"
#include "imgbake/temp_path_guard.h"
#include "imgbake/util.h"
#include "qemu_run.h"

namespace imgbake::qemu {
namespace {

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
    r_.work_dir = make_work_dir();
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
    if (r_.cache.prepare_disk(st, r_)) return;  // the output disk is made from the overlay chain at the end
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

class CompactStep : public Step {
 public:
  explicit CompactStep(QemuRun& r) : r_(r) {}
  std::string name() const override { return "compact disk"; }
  nlohmann::json key_material(const State&) const override {
    return {{"step", "qemu-compact"}, {"format", r_.cfg.format}, {"compression", r_.cfg.disk_compression}};
  }
  void run(State& st) override {
    const QemuConfig& c = r_.cfg;
    if (r_.cache.enabled()) {
      if (r_.cache.cached_output(st, r_.disk_path)) return;
      // The chain of overlays (from the cache or this build) becomes one disk in the template's format.
      std::string disk = r_.disk_path.string();
      util::TempPathGuard tmp(disk + ".imgbake-convert");
      std::vector<std::string> argv = {"qemu-img", "convert", "-f", "qcow2", "-O", c.format};
      if (c.disk_compression) argv.push_back("-c");
      argv.insert(argv.end(), c.qemu_img_args_convert.begin(), c.qemu_img_args_convert.end());
      argv.insert(argv.end(), {r_.cache.top().string(), tmp.path().string()});
      run_tool(st, argv);
      fs::rename(tmp.path(), disk);
      tmp.dismiss();
      st.message("wrote " + disk + " (" + c.format + ", " + std::to_string(file_size_or_zero(disk) >> 10) +
                 " KiB) from the step cache's disk chain");
      r_.cache.keep_output(st, c, disk);
      return;
    }
    if (c.skip_compaction) {
      st.message("skip_compaction: not compacted");
      return;
    }
    if (c.use_backing_file) {
      st.message("use_backing_file: not converting (that would merge the backing file into the image)");
      return;
    }
    std::vector<std::string> disks = {r_.disk_path.string()};
    disks.insert(disks.end(), r_.extra_disks.begin(), r_.extra_disks.end());
    for (const auto& disk : disks) {
      auto before = file_size_or_zero(disk);
      util::TempPathGuard tmp(disk + ".imgbake-convert");
      std::vector<std::string> argv = {"qemu-img", "convert", "-f", c.format, "-O", c.format};
      if (c.disk_compression) argv.push_back("-c");
      argv.insert(argv.end(), c.qemu_img_args_convert.begin(), c.qemu_img_args_convert.end());
      argv.insert(argv.end(), {disk, tmp.path().string()});
      run_tool(st, argv);
      fs::rename(tmp.path(), disk);
      tmp.dismiss();
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
    a->metadata["image_labels"] = boot_labels(st, r_.cfg);
    st.artifact = a;
  }

 private:
  QemuRun& r_;
};

// A provisioner step, skipped when the step cache holds its checkpoint, else run and checkpointed.
class CachedProvisionStep : public Step {
 public:
  CachedProvisionStep(QemuRun& r, std::unique_ptr<Step> inner, size_t index)
      : r_(r), inner_(std::move(inner)), index_(index) {}
  std::string name() const override { return inner_->name(); }
  nlohmann::json key_material(const State& st) const override { return inner_->key_material(st); }
  bool runs_on_abort() const override { return inner_->runs_on_abort(); }
  HostEffect host_effect() const override { return inner_->host_effect(); }
  void cleanup(State& st) noexcept override { inner_->cleanup(st); }
  void run(State& st) override {
    if (!r_.cache.enabled()) {
      inner_->run(st);
      return;
    }
    const std::string& key = r_.cache.key(index_);
    st.step_cache = StepCache{r_.cache.skips(index_), key};
    if (r_.cache.skips(index_)) {
      if (inner_->host_effect() == HostEffect::None) {
        st.message("cached (step key " + key.substr(0, 12) + "); not run");
        return;
      }
      // Its effect is on the host (shell-local): the checkpoint holds the machine, not that.
      st.message("cached (step key " + key.substr(0, 12) + "); it runs anyway: its effect is on the host");
      inner_->run(st);
      return;
    }
    inner_->run(st);
    r_.cache.checkpoint(st, r_, index_);
  }

 private:
  QemuRun& r_;
  std::unique_ptr<Step> inner_;
  size_t index_;
};

}  // namespace

std::unique_ptr<Step> make_cached_provision_step(QemuRun& r, std::unique_ptr<Step> inner, size_t index) {
  return std::make_unique<CachedProvisionStep>(r, std::move(inner), index);
}
std::unique_ptr<Step> make_output_dir_step(QemuRun& r) { return std::make_unique<OutputDirStep>(r); }
std::unique_ptr<Step> make_fetch_source_step(QemuRun& r) { return std::make_unique<FetchSourceStep>(r); }
std::unique_ptr<Step> make_temporary_key_step(QemuRun& r) { return std::make_unique<TemporaryKeyStep>(r); }
std::unique_ptr<Step> make_seed_cd_step(QemuRun& r) { return std::make_unique<SeedCdStep>(r); }
std::unique_ptr<Step> make_disk_step(QemuRun& r) { return std::make_unique<DiskStep>(r); }
std::unique_ptr<Step> make_compact_step(QemuRun& r) { return std::make_unique<CompactStep>(r); }
std::unique_ptr<Step> make_artifact_step(QemuRun& r) { return std::make_unique<ArtifactStep>(r); }

}  // namespace imgbake::qemu
