// The newest modification time in a tar archive: the rootfs builder's default SOURCE_DATE_EPOCH
// for a tarball base (the same tarball always gives the same time).
#include <archive.h>
#include <archive_entry.h>

#include <algorithm>

#include "imgbake/error.h"
#include "imgbake/layer.h"
#include "layer_tar.h"

namespace imgbake::layer {

std::optional<int64_t> newest_mtime(const std::filesystem::path& tar_file) {
  detail::ReadArchive a(archive_read_new());
  archive_read_support_filter_all(a.get());
  archive_read_support_format_tar(a.get());
  if (archive_read_open_filename(a.get(), tar_file.c_str(), detail::kReadBytes) != ARCHIVE_OK)
    throw BuildError("cannot read " + tar_file.string() + ": " + detail::archive_message(a.get()));
  std::optional<int64_t> newest;
  while (true) {
    archive_entry* entry = nullptr;
    int r = archive_read_next_header(a.get(), &entry);
    if (r == ARCHIVE_EOF) break;
    if (r < ARCHIVE_WARN)
      throw BuildError("cannot read " + tar_file.string() + ": " + detail::archive_message(a.get()));
    if (archive_entry_mtime_is_set(entry)) {
      int64_t t = archive_entry_mtime(entry);
      newest = newest ? std::max(*newest, t) : t;
    }
    archive_read_data_skip(a.get());
  }
  return newest;
}

}  // namespace imgbake::layer
