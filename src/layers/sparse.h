// Sparse files in layers (private to the layers module): which parts of a file with holes hold
// data, found with SEEK_DATA/SEEK_HOLE so that a hole is never read, and decided by content so
// that the same file gives the same map on every filesystem.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace imgbake::layer::detail {

// Holes are decided in blocks of this size, at offsets that are multiples of it.
inline constexpr uint64_t kSparseBlockBytes = 4096;
// A run of zero blocks shorter than this stays data: a map entry per small gap costs more
// than the zeros, which compress to nearly nothing.
inline constexpr uint64_t kMinHoleBytes = 64 * 1024;

struct DataExtent {
  uint64_t offset = 0;
  uint64_t length = 0;
  bool operator==(const DataExtent&) const = default;
};

// The data of a regular file of `size` bytes that has holes on disk (fewer bytes allocated than
// its size), as sorted, disjoint extents: every 4 KiB block that is not all zeros, where runs of
// zero blocks shorter than kMinHoleBytes count as data. Bytes in the filesystem's holes are
// known to be zero and are not read. nullopt when the file should be stored densely: it has no
// holes on disk, or its content has no zero run of kMinHoleBytes. Throws BuildError naming
// `what` when the file cannot be read.
std::optional<std::vector<DataExtent>> sparse_data_extents(int fd, uint64_t size, uint64_t allocated_bytes,
                                                           const std::string& what);

}  // namespace imgbake::layer::detail
