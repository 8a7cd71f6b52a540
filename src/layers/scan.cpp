// OCI layers: the snapshot of a tree (statx of every path, mount points skipped).
#include "imgbake/layer.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "imgbake/error.h"
#include "imgbake/unique_fd.h"
#include "layer_tar.h"

namespace imgbake::layer {

namespace fs = std::filesystem;

using detail::child_of;
using detail::errno_text;

namespace {

int64_t to_ns(const statx_timestamp& t) { return int64_t{t.tv_sec} * 1'000'000'000 + t.tv_nsec; }

class SnapshotScanner {
 public:
  SnapshotScanner(const fs::path& root, Snapshot& out) : root_(root), out_(out) {}

  void scan() {
    util::UniqueFd fd(open(root_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!fd) {
      throw BuildError("cannot read the root directory " + root_.string() + ": " + errno_text(errno));
    }
    struct stat st {};
    if (fstat(fd.get(), &st) != 0) {
      throw BuildError("cannot stat the root directory " + root_.string() + ": " + errno_text(errno));
    }
    root_dev_ = st.st_dev;
    scan_dir(std::move(fd), "");
  }

 private:
  void scan_dir(util::UniqueFd owned_fd, const std::string& prefix) {
    const int dir_fd = owned_fd.get();
    DIR* dir = fdopendir(dir_fd);
    if (dir == nullptr) {
      throw BuildError("cannot read directory " + (root_ / prefix).string() + ": " + errno_text(errno));
    }
    owned_fd.release();  // closedir closes it now
    std::unique_ptr<DIR, int (*)(DIR*)> closer(dir, closedir);
    while (true) {
      errno = 0;
      dirent* de = readdir(dir);
      if (de == nullptr) {
        if (errno != 0) {
          throw BuildError("cannot read directory " + (root_ / prefix).string() + ": " + errno_text(errno));
        }
        break;
      }
      std::string_view name = de->d_name;
      if (name == "." || name == "..") continue;
      struct statx stx {};
      if (statx(dir_fd, de->d_name, AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT, STATX_BASIC_STATS, &stx) != 0) {
        if (errno == ENOENT) continue;  // removed while we looked: it is not part of the tree
        throw BuildError("cannot stat " + (root_ / prefix / de->d_name).string() + ": " + errno_text(errno));
      }
      // Mount points (tmpfs, proc, bind mounts of the sandbox) are not part of the image.
      bool mount_root =
          (stx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) != 0 && (stx.stx_attributes & STATX_ATTR_MOUNT_ROOT) != 0;
      if (mount_root || makedev(stx.stx_dev_major, stx.stx_dev_minor) != root_dev_) continue;

      Entry e;
      e.mode = stx.stx_mode;
      e.uid = stx.stx_uid;
      e.gid = stx.stx_gid;
      e.size = stx.stx_size;
      e.mtime_ns = to_ns(stx.stx_mtime);
      e.ctime_ns = to_ns(stx.stx_ctime);
      e.ino = stx.stx_ino;
      e.dev = makedev(stx.stx_dev_major, stx.stx_dev_minor);
      e.nlink = stx.stx_nlink;
      e.rdev = makedev(stx.stx_rdev_major, stx.stx_rdev_minor);
      std::string path = child_of(prefix, name);
      if (S_ISLNK(e.mode)) {
        std::string target(e.size + 1, '\0');
        ssize_t n = readlinkat(dir_fd, de->d_name, target.data(), target.size());
        if (n < 0) throw BuildError("cannot read symlink " + (root_ / path).string() + ": " + errno_text(errno));
        target.resize(static_cast<size_t>(n));
        e.link_target = std::move(target);
      }
      bool is_dir = S_ISDIR(e.mode);
      out_.entries.emplace(path, std::move(e));
      if (is_dir) {
        int sub = openat(dir_fd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (sub < 0) {
          if (errno == ENOENT) continue;
          throw BuildError("cannot read directory " + (root_ / path).string() + ": " + errno_text(errno));
        }
        scan_dir(util::UniqueFd(sub), path);
      }
    }
  }

  const fs::path& root_;
  Snapshot& out_;
  dev_t root_dev_ = 0;
};

}  // namespace

Snapshot scan(const std::filesystem::path& root) {
  Snapshot snapshot;
  SnapshotScanner(root, snapshot).scan();
  return snapshot;
}

}  // namespace imgbake::layer
