// imgbake export REF --format tar|raw|qcow2 -o PATH
#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <iostream>

#include "imgbake/cancel.h"
#include "imgbake/error.h"
#include "imgbake/layer.h"
#include "imgbake/process.h"
#include "imgbake/temp_path_guard.h"
#include "imgbake/util.h"
#include "store_verbs.h"

namespace imgbake::cli {

namespace {

void export_tar(store::Store& st, const nlohmann::json& manifest, const std::string& out) {
  std::string tmp = out + ".imgbake-tmp";
  struct archive* a = archive_write_new();
  archive_write_set_format_pax_restricted(a);
  if (archive_write_open_filename(a, tmp.c_str()) != ARCHIVE_OK) {
    std::string err = archive_error_string(a);
    archive_write_free(a);
    throw BuildError("cannot write " + tmp + ": " + err);
  }
  std::vector<char> buf(1 << 20);
  for (const auto& l : manifest["layers"]) {
    std::string digest = l["digest"];
    std::string name = l.contains("annotations") ? l["annotations"].value("org.opencontainers.image.title", "") : "";
    if (name.empty()) name = digest.substr(7);
    struct archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, name.c_str());
    archive_entry_set_size(e, l["size"].get<int64_t>());
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    archive_write_header(a, e);
    st.blobs().check_regular(digest);  // never a FIFO or a device to wait on
    int fd = open(st.blobs().path(digest).c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
      archive_entry_free(e);
      archive_write_free(a);
      throw BuildError("blob " + digest + " is missing; run imgbake store check");
    }
    // The blob is hashed as it is written out: a damaged store never exports silently.
    util::Hasher hasher;
    ssize_t n;
    while ((n = ::read(fd, buf.data(), buf.size())) > 0) {
      hasher.update(buf.data(), static_cast<size_t>(n));
      archive_write_data(a, buf.data(), static_cast<size_t>(n));
    }
    close(fd);
    archive_entry_free(e);
    std::string hex = hasher.hex();
    if ("sha256:" + hex != digest) {
      archive_write_free(a);
      std::filesystem::remove(tmp);
      throw BuildError("blob " + digest + " (" + name + ") is corrupt: its content hashes to sha256:" + hex +
                       "; nothing was exported (imgbake store check)");
    }
  }
  archive_write_close(a);
  archive_write_free(a);
  std::filesystem::rename(tmp, out);
}

// "512M", "2G", "1048576" → bytes; 0 when it is not a size.
uint64_t parse_size(const std::string& s) {
  if (s.empty() || !std::isdigit(static_cast<unsigned char>(s[0]))) return 0;
  size_t used = 0;
  uint64_t n = std::stoull(s, &used);
  std::string unit = s.substr(used);
  if (unit.empty() || unit == "B") return n;
  if (unit == "K" || unit == "KiB") return n << 10;
  if (unit == "M" || unit == "MiB") return n << 20;
  if (unit == "G" || unit == "GiB") return n << 30;
  return 0;
}

uint64_t tree_bytes(const std::filesystem::path& dir) {
  uint64_t total = 0;
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(dir, ec); it != decltype(it)(); it.increment(ec)) {
    struct stat sb {};
    if (lstat(it->path().c_str(), &sb) == 0) total += static_cast<uint64_t>(sb.st_blocks) * 512 + 256;
  }
  return total;
}

}  // namespace

bool is_container_image(const nlohmann::json& manifest) {
  if (manifest["layers"].empty()) return false;
  for (const auto& l : manifest["layers"])
    if (!l.value("mediaType", "").starts_with("application/vnd.oci.image.layer.v1.tar")) return false;
  return true;
}

std::pair<std::string, std::string> disk_layer(const nlohmann::json& manifest) {
  for (const auto& l : manifest["layers"]) {
    const std::string mt = l.value("mediaType", "");
    if (mt == oci::kDiskQcow2MediaType || mt == oci::kDiskRawMediaType)
      return {l["digest"], mt == oci::kDiskQcow2MediaType ? "qcow2" : "raw"};
  }
  return {};
}

void unpack_rootfs(store::Store& st, const nlohmann::json& manifest, const std::filesystem::path& tree) {
  nlohmann::json config = nlohmann::json::parse(st.blobs().read(manifest["config"]["digest"]));
  const auto& diff_ids = config["rootfs"]["diff_ids"];
  std::filesystem::create_directories(tree);
  std::filesystem::permissions(tree, std::filesystem::perms(0755));
  for (size_t i = 0; i < manifest["layers"].size(); ++i) {
    std::string digest = manifest["layers"][i]["digest"];
    st.blobs().check_regular(digest);
    std::string got = layer::apply(st.blobs().path(digest), tree, global_cancel());
    if (i < diff_ids.size() && got != diff_ids[i])
      throw BuildError("layer " + digest + " unpacks to " + got + ", not its diff_id " +
                       diff_ids[i].get<std::string>() + " (imgbake store check)");
  }
}

namespace {

// A container image as a flattened root filesystem: a tar, or an ext4 disk (raw/qcow2).
void export_rootfs(store::Store& st, const nlohmann::json& manifest, const std::string& format, const std::string& size,
                   const std::string& out) {
  // The tree is built in a directory of mode 0700 (the image's setuid files are nobody's to reach).
  util::TempPathGuard scratch(st.blobs().temp_dir() / ("export-" + util::uuid_v4()));
  std::filesystem::create_directories(scratch.path());
  std::filesystem::permissions(scratch.path(), std::filesystem::perms::owner_all);
  std::filesystem::path tree = scratch.path() / "rootfs";
  unpack_rootfs(st, manifest, tree);
  if (format == "tar") {
    layer::Options opts;
    opts.compression = layer::Compression::None;
    layer::write_tree(tree, out, opts, global_cancel());
    return;
  }
  uint64_t bytes = parse_size(size);
  if (!size.empty() && bytes == 0) throw UsageError("--size '" + size + "': expected a size such as 512M or 2G");
  if (bytes == 0) bytes = tree_bytes(tree) * 5 / 4 + (64u << 20);  // content plus room for ext4 and changes
  bytes = (bytes + (1u << 20) - 1) / (1u << 20) * (1u << 20);
  util::TempPathGuard raw(format == "raw" ? std::filesystem::path(out + ".imgbake-tmp") : scratch.path() / "disk.raw");
  auto run = [](std::vector<std::string> argv, const std::string& what) {
    ProcessSpec spec;
    spec.argv = std::move(argv);
    std::string err;
    int rc = run_process(
        spec, [&](std::string_view l) { err += std::string(l) + "\n"; },
        [&](std::string_view l) { err += std::string(l) + "\n"; }, global_cancel());
    if (rc != 0) throw BuildError(what + " failed: " + err);
  };
  // mkfs.ext4 -d fills the file system from the tree without mounting anything.
  run({"mkfs.ext4", "-q", "-F", "-L", "rootfs", "-d", tree.string(), raw.path().string(),
       std::to_string(bytes >> 10) + "k"},
      "mkfs.ext4");
  if (format == "raw") {
    std::filesystem::rename(raw.path(), out);
    raw.dismiss();
    return;
  }
  util::TempPathGuard tmp(out + ".imgbake-tmp");
  run({"qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw.path().string(), tmp.path().string()},
      "qemu-img convert");
  std::filesystem::rename(tmp.path(), out);
  tmp.dismiss();
}

}  // namespace

Action setup_export(CLI::App& sub, const GlobalOptions&) {
  struct Opts {
    std::string ref, format, out, size;
  };
  auto o = std::make_shared<Opts>();
  sub.add_option("ref", o->ref, "The image")->required();
  sub.add_option("--format", o->format, "tar (the image's files), raw or qcow2 (its disk)")
      ->required()
      ->check(CLI::IsMember({"tar", "raw", "qcow2"}));
  sub.add_option("-o,--out", o->out, "Where to write")->required();
  sub.add_option("--size", o->size,
                 "Container images as raw/qcow2: the disk's size (e.g. 2G; default: the content plus a quarter "
                 "plus 64 MiB)");
  return [o] {
    CooperativeInterrupts interrupts;  // the export polls the token and removes its scratch tree
    auto st = open_store();
    store::ImageRecord img = st->resolve(o->ref);
    nlohmann::json m = st->manifest(img);
    if (is_container_image(m)) {
      export_rootfs(*st, m, o->format, o->size, o->out);
      std::cout << "exported " << img.ref() << " (" << m["layers"].size() << " layers, flattened) as "
                << (o->format == "tar" ? "a root filesystem tar" : "an ext4 " + o->format + " disk") << " to " << o->out
                << "\n";
      return 0;
    }
    if (o->format == "tar") {
      export_tar(*st, m, o->out);
      std::cout << "exported " << img.ref() << " (" << m["layers"].size() << " files) to " << o->out << "\n";
      return 0;
    }
    const auto [disk, disk_format] = disk_layer(m);
    if (disk.empty()) throw BuildError(img.ref() + " holds files, not a disk image; --format tar exports them");
    ProcessSpec spec;
    std::string tmp = o->out + ".imgbake-tmp";
    st->blobs().check_regular(disk);
    spec.argv = {"qemu-img", "convert", "-f", disk_format, "-O", o->format, st->blobs().path(disk).string(), tmp};
    std::string err;
    int rc = run_process(
        spec, nullptr, [&](std::string_view l) { err += std::string(l) + "\n"; }, global_cancel());
    if (rc != 0) throw BuildError("qemu-img convert failed: " + err);
    std::filesystem::rename(tmp, o->out);
    std::cout << "exported " << img.ref() << " as " << o->format << " to " << o->out << "\n";
    return 0;
  };
}

}  // namespace imgbake::cli
