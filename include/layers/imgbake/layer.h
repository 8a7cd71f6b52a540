// OCI image layers for the rootfs builder: snapshots of a root directory (lstat of every path),
// the diff of two snapshots written as one reproducible layer tar (gzip, zstd or none), and the
// applier that unpacks layers onto a directory with whiteouts, opaque directories and path checks.
// docs/layers.md is the user's view of what a layer holds.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "imgbake/cancel.h"

namespace imgbake::layer {

enum class Compression { Gzip, Zstd, None };
// "gzip", "zstd", "none" (case-sensitive); nullopt otherwise.
std::optional<Compression> parse_compression(std::string_view s);
// application/vnd.oci.image.layer.v1.tar+gzip / +zstd / application/vnd.oci.image.layer.v1.tar
std::string media_type(Compression c);

// What lstat says of one path below the root (relative path, no leading "/", "" never present).
struct Entry {
  mode_t mode = 0;  // type + permission bits
  uid_t uid = 0;
  gid_t gid = 0;
  uint64_t size = 0;
  int64_t mtime_ns = 0;
  int64_t ctime_ns = 0;
  ino_t ino = 0;
  dev_t dev = 0;
  nlink_t nlink = 0;
  dev_t rdev = 0;
  std::string link_target;  // symlinks
  bool operator==(const Entry&) const = default;
};
struct Snapshot {
  std::map<std::string, Entry> entries;  // sorted by path (byte order)
};
// lstat of every path below root (not root itself). Does not cross into other filesystems
// (mount points are skipped, like the tmpfs/proc a sandbox mounts). Throws BuildError naming
// the path when root or a directory below it cannot be read.
Snapshot scan(const std::filesystem::path& root);

struct Options {
  Compression compression = Compression::Gzip;
  int level = -1;                            // -1: the default (gzip 1, zstd 3), chosen for speed
  std::optional<int64_t> source_date_epoch;  // clamps every mtime to it when set
};
struct LayerBlob {
  std::filesystem::path file;  // the compressed tar that was written
  std::string digest;          // "sha256:…" of the file's bytes (compressed)
  std::string diff_id;         // "sha256:…" of the uncompressed tar
  uint64_t size = 0;           // bytes of the file
  std::string media_type;
  size_t entries = 0;  // tar entries written (whiteouts included)
};

// The changes between `before` and `after` (= scan(root) now) written as one OCI layer tar to
// out_file: added/changed paths (any stat field differs), deleted paths as whiteouts ".wh.NAME"
// (a deleted directory: one whiteout, not its children), a directory that was replaced (another
// inode) or changed type gets an opaque marker ".wh..wh..opq" and its full content. Hardlinks
// inside the layer are written as tar hardlinks to the first path written. Sockets are skipped;
// the xattr security.capability is kept. The file appears atomically (temp name + rename) and
// nothing is left behind on error or cancellation (Cancelled).
LayerBlob write_diff(const std::filesystem::path& root, const Snapshot& before, const Snapshot& after,
                     const std::filesystem::path& out_file, const Options& opts, const CancelToken& cancel);
// The whole tree as one layer (flattened export, a base layer): write_diff against an empty snapshot.
LayerBlob write_tree(const std::filesystem::path& root, const std::filesystem::path& out_file, const Options& opts,
                     const CancelToken& cancel);

// Extracts a layer (any compression libarchive reads) onto root, honouring whiteouts and opaque
// directories (OCI image-spec "Applying Changesets"). Refuses (BuildError, naming the entry) any
// entry that would land outside root: absolute paths, "..", or a path through a symlink in root
// that points outside (symlinks resolve as if root were "/"). Keeps numeric uid/gid, modes,
// mtimes, device nodes, security.capability. Returns the diff_id ("sha256:" of the uncompressed
// tar stream) so callers can check it.
std::string apply(const std::filesystem::path& layer_file, const std::filesystem::path& root,
                  const CancelToken& cancel);

// A layer blob's diff_id ("sha256:" of its uncompressed stream, any compression libarchive
// reads), without unpacking it. Throws BuildError naming the file when it cannot be read.
std::string diff_id_of(const std::filesystem::path& layer_file, const CancelToken& cancel);

// The newest modification time (seconds since 1970) among the entries of a tar archive (any
// compression libarchive reads); nullopt for an archive without entry times. Throws BuildError
// naming the file when it cannot be read.
std::optional<int64_t> newest_mtime(const std::filesystem::path& tar_file);

}  // namespace imgbake::layer
