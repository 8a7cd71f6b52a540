// OCI layers: the data extents of a sparse file (SEEK_DATA/SEEK_HOLE, then zero blocks by content).
#include "sparse.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "imgbake/error.h"
#include "layer_tar.h"

namespace imgbake::layer::detail {
namespace {

constexpr uint64_t kScanBytes = uint64_t{1} << 20;  // read at once while looking for zero blocks

bool all_zero(const char* p, size_t n) { return n == 0 || (p[0] == 0 && std::memcmp(p, p + 1, n - 1) == 0); }

// Appends [offset, offset+length) to sorted extents, joining it to the last one when the zero
// gap between them is shorter than a hole may be.
void add_data(std::vector<DataExtent>& out, uint64_t offset, uint64_t length) {
  if (!out.empty() && offset - (out.back().offset + out.back().length) < kMinHoleBytes) {
    out.back().length = offset + length - out.back().offset;
    return;
  }
  out.push_back({offset, length});
}

// Where the filesystem says data may be, widened to whole blocks; holes in between read as zeros.
std::vector<DataExtent> allocated_regions(int fd, uint64_t size, const std::string& what) {
  std::vector<DataExtent> regions;
  uint64_t at = 0;
  while (at < size) {
    off_t data = lseek(fd, static_cast<off_t>(at), SEEK_DATA);
    if (data < 0 && errno == ENXIO) break;  // nothing but a hole up to the end
    if (data < 0 && errno == EINVAL) {      // a filesystem that cannot tell: all of it is data
      return {{0, size}};
    }
    off_t hole = data < 0 ? -1 : lseek(fd, data, SEEK_HOLE);
    if (hole < 0) throw BuildError("cannot find the holes of " + what + ": " + errno_text(errno));
    uint64_t begin = static_cast<uint64_t>(data) / kSparseBlockBytes * kSparseBlockBytes;
    uint64_t end =
        std::min(size, (static_cast<uint64_t>(hole) + kSparseBlockBytes - 1) / kSparseBlockBytes * kSparseBlockBytes);
    if (!regions.empty() && begin <= regions.back().offset + regions.back().length) {
      regions.back().length = std::max(regions.back().offset + regions.back().length, end) - regions.back().offset;
    } else if (end > begin) {
      regions.push_back({begin, end - begin});
    }
    if (static_cast<uint64_t>(hole) <= at) break;  // no progress: the file shrank meanwhile
    at = static_cast<uint64_t>(hole);
  }
  return regions;
}

}  // namespace

std::optional<std::vector<DataExtent>> sparse_data_extents(int fd, uint64_t size, uint64_t allocated_bytes,
                                                           const std::string& what) {
  if (size < kMinHoleBytes || allocated_bytes >= size) return std::nullopt;
  std::vector<DataExtent> data;
  std::vector<char> buffer(kScanBytes);
  for (const auto& region : allocated_regions(fd, size, what)) {
    uint64_t end = region.offset + region.length;
    for (uint64_t at = region.offset; at < end;) {
      size_t want = static_cast<size_t>(std::min<uint64_t>(kScanBytes, end - at));
      ssize_t n = pread(fd, buffer.data(), want, static_cast<off_t>(at));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) throw BuildError("cannot read " + what + " for the layer: " + errno_text(errno));
      if (n == 0) {
        throw BuildError(what + " shrank while its layer was being written; nothing may run in the root directory " +
                         "meanwhile");
      }
      for (size_t i = 0; i < static_cast<size_t>(n); i += kSparseBlockBytes) {
        size_t len = std::min<size_t>(kSparseBlockBytes, static_cast<size_t>(n) - i);
        if (!all_zero(buffer.data() + i, len)) add_data(data, at + i, len);
      }
      at += static_cast<uint64_t>(n);
    }
  }
  // A zero run at either end shorter than a hole may be stays data too.
  if (!data.empty() && data.front().offset < kMinHoleBytes) {
    data.front().length += data.front().offset;
    data.front().offset = 0;
  }
  if (!data.empty() && size - (data.back().offset + data.back().length) < kMinHoleBytes) {
    data.back().length = size - data.back().offset;
  }
  uint64_t data_bytes = 0;
  for (const auto& e : data) data_bytes += e.length;
  if (data_bytes == size) return std::nullopt;
  return data;
}

}  // namespace imgbake::layer::detail
