// OCI layers: the checked applier (whiteouts, opaque directories, no entry outside the root).
#include "imgbake/layer.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <deque>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "imgbake/error.h"
#include "imgbake/util.h"
#include "layer_tar.h"

namespace imgbake::layer {

namespace fs = std::filesystem;

using detail::archive_message;
using detail::child_of;
using detail::errno_text;
using detail::kOpaqueMarker;
using detail::kReadBytes;
using detail::kWhiteoutMetaPrefix;
using detail::kWhiteoutPrefix;
using detail::name_of;
using detail::parent_of;
using detail::ReadArchive;
using detail::Utf8ThreadLocale;
using detail::WriteArchive;

namespace {

constexpr int kMaxSymlinkHops = 40;  // what Linux allows in one path lookup

// The layer's name for an entry: relative, no ".", no empty components, no trailing "/".
// Throws for absolute names and "..".
std::string normalize_entry_name(const std::string& layer, std::string_view raw) {
  if (!raw.empty() && raw.front() == '/') {
    throw BuildError("layer " + layer + ": entry '" + std::string(raw) +
                     "' has an absolute path; refusing to extract it (layer entries are relative to the root)");
  }
  std::string out;
  for (const auto& part : util::split(raw, '/')) {
    if (part.empty() || part == ".") continue;
    if (part == "..") {
      throw BuildError("layer " + layer + ": entry '" + std::string(raw) +
                       "' contains '..' and could land outside the root; refusing to extract it");
    }
    if (!out.empty()) out += '/';
    out += part;
  }
  return out;
}

// Where the layer path `rel` is on the host below `root`: every symlink on the way (and the last
// component's too when follow_last) resolves as if root were "/"; a link leading above root is an
// escape and refused.
fs::path resolve_in_root(const fs::path& root, const std::string& rel, bool follow_last, const std::string& layer,
                         const std::string& entry_name) {
  std::vector<std::string> resolved;
  std::deque<std::string> pending;
  for (auto& part : util::split(rel, '/')) pending.push_back(std::move(part));
  int hops = 0;
  auto host_of = [&](const std::vector<std::string>& parts) {
    fs::path p = root;
    for (const auto& part : parts) p /= part;
    return p;
  };
  while (!pending.empty()) {
    std::string part = std::move(pending.front());
    pending.pop_front();
    if (part.empty() || part == ".") continue;
    if (part == "..") {
      if (resolved.empty()) {
        throw BuildError("layer " + layer + ": entry '" + entry_name + "' would be written outside " + root.string() +
                         " through a symlink that leads above the root; refusing to extract it");
      }
      resolved.pop_back();
      continue;
    }
    if (pending.empty() && !follow_last) {
      resolved.push_back(std::move(part));
      break;
    }
    fs::path host = host_of(resolved) / part;
    struct stat st {};
    if (lstat(host.c_str(), &st) != 0 || !S_ISLNK(st.st_mode)) {
      resolved.push_back(std::move(part));
      continue;
    }
    if (++hops > kMaxSymlinkHops) {
      throw BuildError("layer " + layer + ": entry '" + entry_name + "' goes through too many symlinks");
    }
    std::string target(static_cast<size_t>(st.st_size) + 1, '\0');
    ssize_t n = readlink(host.c_str(), target.data(), target.size());
    if (n < 0) throw BuildError("cannot read symlink " + host.string() + ": " + errno_text(errno));
    target.resize(static_cast<size_t>(n));
    if (!target.empty() && target.front() == '/') resolved.clear();
    auto parts = util::split(target, '/');
    pending.insert(pending.begin(), parts.begin(), parts.end());
  }
  return host_of(resolved);
}

// Feeds the decompressed stream of the outer reader to the tar reader, hashing it on the way.
struct StreamTap {
  archive* outer = nullptr;
  util::Hasher hasher;
  bool at_end = false;

  static la_ssize_t read(archive* inner, void* self, const void** buf) {
    auto* tap = static_cast<StreamTap*>(self);
    size_t size = 0;
    la_int64_t offset = 0;
    int r = archive_read_data_block(tap->outer, buf, &size, &offset);
    if (r == ARCHIVE_EOF) {
      tap->at_end = true;
      return 0;
    }
    if (r < ARCHIVE_WARN) {
      archive_set_error(inner, EIO, "%s", archive_error_string(tap->outer));
      return -1;
    }
    tap->hasher.update(*buf, size);
    return static_cast<la_ssize_t>(size);
  }
};

void remove_path(const fs::path& host) {
  std::error_code ec;
  fs::remove_all(host, ec);
  if (ec) throw BuildError("cannot remove " + host.string() + " while applying a layer: " + ec.message());
}

class LayerApplier {
 public:
  LayerApplier(const fs::path& layer_file, const fs::path& root) : layer_(layer_file.string()), root_(root) {}

  // Whiteouts and opaque markers; true when the entry was one.
  bool apply_whiteout(const std::string& name) {
    std::string_view base = name_of(name);
    if (base.substr(0, kWhiteoutPrefix.size()) != kWhiteoutPrefix) return false;
    std::string dir = parent_of(name);
    if (base == kOpaqueMarker) {
      fs::path host = dir.empty() ? root_ : resolve_in_root(root_, dir, false, layer_, name);
      struct stat st {};
      if (lstat(host.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) return true;
      remember_dir_time(host);
      std::error_code ec;
      for (const auto& child : fs::directory_iterator(host, ec)) {
        if (written_.count(child_of(dir, child.path().filename().string())) == 0) remove_path(child.path());
      }
      if (ec) throw BuildError("cannot read " + host.string() + " while applying a layer: " + ec.message());
      return true;
    }
    if (base.substr(0, kWhiteoutMetaPrefix.size()) == kWhiteoutMetaPrefix) return true;  // other aufs metadata
    std::string_view hidden = base.substr(kWhiteoutPrefix.size());
    // ".wh." alone, ".wh.." and ".wh..." would name the directory itself or its parent: the
    // OCI image spec forbids them, and honouring one deletes a directory or the whole root.
    if (hidden.empty() || hidden == "." || hidden == "..")
      throw BuildError("layer " + layer_ + ": whiteout '" + name + "' names " +
                       (hidden.empty() ? std::string("no file") : "'" + std::string(hidden) + "'") +
                       ", which the OCI image spec forbids; refusing the layer");
    std::string target = child_of(dir, hidden);
    if (written_.count(target) != 0) return true;  // whiteouts hide lower layers only
    fs::path host = resolve_in_root(root_, target, false, layer_, name);
    struct stat st {};
    if (lstat(host.c_str(), &st) == 0) {
      remember_dir_time(host.parent_path());
      remove_path(host);
    }
    return true;
  }

  // Where a (non-whiteout) entry goes, with whatever is in the way removed.
  fs::path prepare(const std::string& name, bool is_dir) {
    fs::path host = resolve_in_root(root_, name, false, layer_, name);
    remember_dir_time(host.parent_path());
    struct stat st {};
    if (lstat(host.c_str(), &st) == 0 && !(S_ISDIR(st.st_mode) && is_dir)) remove_path(host);
    return host;
  }
  // libarchive sets an existing directory's time at once, and entries below it may still come
  // and go; so the layer's directory times are set again at the end.
  void note_layer_dir(const fs::path& host, archive_entry* entry) {
    timespec mtime{archive_entry_mtime(entry), archive_entry_mtime_nsec(entry)};
    if (archive_entry_mtime_is_set(entry) == 0) mtime.tv_nsec = UTIME_OMIT;
    layer_dir_times_[host.string()] = mtime;
  }

  // Directories keep the mtime the layer gives them, or the one they had when the layer has no
  // entry for them, although entries came and went in them.
  void restore_dir_times() const {
    auto set_mtime = [](const std::string& host, timespec mtime) {
      timespec times[2] = {{0, UTIME_OMIT}, mtime};
      if (utimensat(AT_FDCWD, host.c_str(), times, AT_SYMLINK_NOFOLLOW) != 0 && errno != ENOENT) {
        throw BuildError("cannot set the time of " + host + " while applying a layer: " + errno_text(errno));
      }
    };
    for (const auto& [host, mtime] : dir_times_) {
      if (layer_dir_times_.count(host) == 0) set_mtime(host, mtime);
    }
    for (const auto& [host, mtime] : layer_dir_times_) set_mtime(host, mtime);
  }
  fs::path hardlink_target(const std::string& raw_target, const std::string& name) {
    return resolve_in_root(root_, normalize_entry_name(layer_, raw_target), false, layer_, name);
  }

  void note_written(std::string name) {
    while (!name.empty() && written_.insert(name).second) name = parent_of(name);
  }
  const std::string& layer() const { return layer_; }

 private:
  void remember_dir_time(const fs::path& host_dir) {
    std::string key = host_dir.string();
    if (dir_times_.count(key) != 0) return;
    struct stat st {};
    if (lstat(host_dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) dir_times_.emplace(std::move(key), st.st_mtim);
  }

  std::string layer_;
  fs::path root_;
  std::unordered_set<std::string> written_;                    // paths this layer made, and their ancestors
  std::unordered_map<std::string, timespec> layer_dir_times_;  // the layer's directories -> their mtime
  std::unordered_map<std::string, timespec> dir_times_;        // host directory -> mtime before we touched it
};

}  // namespace

std::string apply(const std::filesystem::path& layer_file, const std::filesystem::path& root,
                  const CancelToken& cancel) {
  std::error_code ec;
  fs::path real_root = fs::canonical(root, ec);
  if (ec) throw BuildError("cannot apply a layer onto " + root.string() + ": " + ec.message());

  Utf8ThreadLocale utf8;
  ReadArchive outer(archive_read_new());
  archive_read_support_filter_all(outer.get());
  archive_read_support_format_raw(outer.get());
  if (archive_read_open_filename(outer.get(), layer_file.c_str(), kReadBytes) != ARCHIVE_OK) {
    throw BuildError("cannot read layer " + layer_file.string() + ": " + archive_message(outer.get()));
  }
  archive_entry* raw = nullptr;
  if (archive_read_next_header(outer.get(), &raw) != ARCHIVE_OK) {
    throw BuildError("cannot read layer " + layer_file.string() + ": " + archive_message(outer.get()));
  }
  StreamTap tap;
  tap.outer = outer.get();
  ReadArchive inner(archive_read_new());
  archive_read_support_format_tar(inner.get());
  if (archive_read_open2(inner.get(), &tap, nullptr, &StreamTap::read, nullptr, nullptr) != ARCHIVE_OK) {
    throw BuildError("layer " + layer_file.string() + " is not a tar archive: " + archive_message(inner.get()));
  }
  WriteArchive disk(archive_write_disk_new());
  // Numeric owners (no lookup function set), exact modes, times, capabilities; no "..", and
  // libarchive refuses symlinks on the way as a second line behind resolve_in_root. Blocks of
  // zeros become holes (SPARSE), so a disk image stored densely in a tarball is sparse in the
  // tree and in the layers written from it.
  archive_write_disk_set_options(disk.get(), ARCHIVE_EXTRACT_OWNER | ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_TIME |
                                                 ARCHIVE_EXTRACT_XATTR | ARCHIVE_EXTRACT_SECURE_NODOTDOT |
                                                 ARCHIVE_EXTRACT_SECURE_SYMLINKS | ARCHIVE_EXTRACT_SPARSE);

  LayerApplier applier(layer_file, real_root);
  const std::string& layer = applier.layer();
  while (true) {
    cancel.throw_if_cancelled();
    archive_entry* entry = nullptr;
    int r = archive_read_next_header(inner.get(), &entry);
    if (r == ARCHIVE_EOF) break;
    if (r < ARCHIVE_WARN) throw BuildError("cannot read layer " + layer + ": " + archive_message(inner.get()));
    const char* raw_name = archive_entry_pathname(entry);
    std::string name = normalize_entry_name(layer, raw_name != nullptr ? raw_name : "");
    if (name.empty()) continue;  // the root itself: its owner and mode belong to the caller
    if (applier.apply_whiteout(name)) continue;

    fs::path host = applier.prepare(name, archive_entry_filetype(entry) == AE_IFDIR);
    if (const char* link = archive_entry_hardlink(entry)) {
      archive_entry_copy_hardlink(entry, applier.hardlink_target(link, name).c_str());
    }
    archive_entry_copy_pathname(entry, host.c_str());
    if (archive_write_header(disk.get(), entry) < ARCHIVE_WARN) {
      throw BuildError("layer " + layer + ": cannot extract '" + name + "': " + archive_message(disk.get()));
    }
    const void* block = nullptr;
    size_t size = 0;
    la_int64_t offset = 0;
    while ((r = archive_read_data_block(inner.get(), &block, &size, &offset)) == ARCHIVE_OK) {
      if (archive_write_data_block(disk.get(), block, size, offset) < ARCHIVE_WARN) {
        throw BuildError("layer " + layer + ": cannot extract '" + name + "': " + archive_message(disk.get()));
      }
    }
    if (r != ARCHIVE_EOF) throw BuildError("cannot read layer " + layer + ": " + archive_message(inner.get()));
    if (archive_write_finish_entry(disk.get()) < ARCHIVE_WARN) {
      throw BuildError("layer " + layer + ": cannot extract '" + name + "': " + archive_message(disk.get()));
    }
    if (archive_entry_filetype(entry) == AE_IFDIR) applier.note_layer_dir(host, entry);
    applier.note_written(name);
  }
  // Directory times and modes are set last, after their content was written.
  if (archive_write_close(disk.get()) != ARCHIVE_OK) {
    throw BuildError("layer " + layer + ": cannot finish extracting: " + archive_message(disk.get()));
  }
  applier.restore_dir_times();
  // The digest covers the whole stream, also the padding after the end-of-archive blocks.
  const void* rest = nullptr;
  while (!tap.at_end) {
    if (StreamTap::read(inner.get(), &tap, &rest) < 0) {
      throw BuildError("cannot read layer " + layer + ": " + archive_message(inner.get()));
    }
  }
  return "sha256:" + tap.hasher.hex();
}

}  // namespace imgbake::layer
