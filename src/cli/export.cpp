// imgbake export REF --format tar|raw|qcow2 -o PATH
#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <unistd.h>

#include <iostream>

#include "cli/store_verbs.h"
#include "imgbake/cancel.h"
#include "imgbake/error.h"
#include "imgbake/process.h"
#include "imgbake/util.h"

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
    int fd = open(st.blobs().path(digest).c_str(), O_RDONLY | O_CLOEXEC);
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

}  // namespace

Action setup_export(CLI::App& sub, const GlobalOptions&) {
  struct Opts {
    std::string ref, format, out;
  };
  auto o = std::make_shared<Opts>();
  sub.add_option("ref", o->ref, "The image")->required();
  sub.add_option("--format", o->format, "tar (the image's files), raw or qcow2 (its disk)")
      ->required()
      ->check(CLI::IsMember({"tar", "raw", "qcow2"}));
  sub.add_option("-o,--out", o->out, "Where to write")->required();
  return [o] {
    auto st = open_store();
    store::ImageRecord img = st->resolve(o->ref);
    nlohmann::json m = st->manifest(img);
    if (o->format == "tar") {
      export_tar(*st, m, o->out);
      std::cout << "exported " << img.ref() << " (" << m["layers"].size() << " files) to " << o->out << "\n";
      return 0;
    }
    std::string disk, disk_format;
    for (const auto& l : m["layers"]) {
      std::string mt = l["mediaType"];
      if (mt == store::kDiskQcow2MediaType || mt == store::kDiskRawMediaType) {
        disk = l["digest"];
        disk_format = mt == store::kDiskQcow2MediaType ? "qcow2" : "raw";
        break;
      }
    }
    if (disk.empty()) throw BuildError(img.ref() + " holds files, not a disk image; --format tar exports them");
    ProcessSpec spec;
    std::string tmp = o->out + ".imgbake-tmp";
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
