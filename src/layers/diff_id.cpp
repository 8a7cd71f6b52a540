// OCI layers: a layer blob's diff_id without unpacking it (the sha256 of its uncompressed tar).
#include <archive.h>

#include "imgbake/error.h"
#include "imgbake/layer.h"
#include "imgbake/util.h"
#include "layer_tar.h"

namespace imgbake::layer {

using detail::archive_message;
using detail::kReadBytes;
using detail::ReadArchive;

std::string diff_id_of(const std::filesystem::path& layer_file, const CancelToken& cancel) {
  ReadArchive in(archive_read_new());
  archive_read_support_filter_all(in.get());
  archive_read_support_format_raw(in.get());
  archive_read_support_format_empty(in.get());
  archive_entry* entry = nullptr;
  if (archive_read_open_filename(in.get(), layer_file.c_str(), kReadBytes) != ARCHIVE_OK)
    throw BuildError("cannot read layer " + layer_file.string() + ": " + archive_message(in.get()));
  util::Hasher hasher;
  int r = archive_read_next_header(in.get(), &entry);
  if (r == ARCHIVE_EOF) return "sha256:" + hasher.hex();  // an empty stream
  if (r != ARCHIVE_OK) throw BuildError("cannot read layer " + layer_file.string() + ": " + archive_message(in.get()));
  while (true) {
    cancel.throw_if_cancelled();
    const void* block = nullptr;
    size_t size = 0;
    la_int64_t offset = 0;
    r = archive_read_data_block(in.get(), &block, &size, &offset);
    if (r == ARCHIVE_EOF) break;
    if (r < ARCHIVE_WARN)
      throw BuildError("cannot read layer " + layer_file.string() + ": " + archive_message(in.get()));
    hasher.update(block, size);
  }
  return "sha256:" + hasher.hex();
}

}  // namespace imgbake::layer
