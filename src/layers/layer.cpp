// OCI layers: snapshot, diff, reproducible tar writing (two libarchive writers on two threads so
// that reading files and compressing overlap, like `tar | gzip`), and the checked applier.
#include "imgbake/layer.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <fcntl.h>
#include <locale.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "imgbake/error.h"
#include "imgbake/util.h"

namespace imgbake::layer {
namespace {

namespace fs = std::filesystem;

constexpr size_t kChunkBytes = size_t{1} << 20;  // tar bytes handed to the compressor at once
constexpr size_t kQueuedChunks = 8;              // bounds the memory between the two threads
constexpr size_t kReadBytes = size_t{1} << 20;   // file reads
constexpr int kTarBlockBytes = 10240;            // the tar record size; the stream is padded to it, like GNU tar
constexpr std::string_view kWhiteoutPrefix = ".wh.";
constexpr std::string_view kWhiteoutMetaPrefix = ".wh..wh.";
constexpr std::string_view kOpaqueMarker = ".wh..wh..opq";
constexpr const char* kCapabilityXattr = "security.capability";
constexpr int kMaxSymlinkHops = 40;  // what Linux allows in one path lookup

std::string errno_text(int err) { return std::strerror(err); }

struct ArchiveWriteFree {
  void operator()(archive* a) const { archive_write_free(a); }
};
struct ArchiveReadFree {
  void operator()(archive* a) const { archive_read_free(a); }
};
struct EntryFree {
  void operator()(archive_entry* e) const { archive_entry_free(e); }
};
using WriteArchive = std::unique_ptr<archive, ArchiveWriteFree>;
using ReadArchive = std::unique_ptr<archive, ArchiveReadFree>;
using ArchiveEntry = std::unique_ptr<archive_entry, EntryFree>;

std::string archive_message(archive* a) {
  const char* msg = archive_error_string(a);
  return msg != nullptr ? msg : "unknown libarchive error";
}

std::string parent_of(std::string_view path) {
  auto slash = path.rfind('/');
  return slash == std::string_view::npos ? std::string() : std::string(path.substr(0, slash));
}
std::string_view name_of(std::string_view path) {
  auto slash = path.rfind('/');
  return slash == std::string_view::npos ? path : path.substr(slash + 1);
}
std::string child_of(const std::string& dir, std::string_view name) {
  return dir.empty() ? std::string(name) : dir + "/" + std::string(name);
}

// libarchive converts names between the locale's charset and UTF-8 (PAX path records). A fixed
// UTF-8 locale on this thread makes a non-ASCII name give the same bytes whatever LANG is; where
// C.UTF-8 is missing, the writer stores raw bytes instead (hdrcharset=BINARY).
class Utf8ThreadLocale {
 public:
  Utf8ThreadLocale() : locale_(newlocale(LC_CTYPE_MASK, "C.UTF-8", nullptr)) {
    if (locale_ != nullptr) previous_ = uselocale(locale_);
  }
  ~Utf8ThreadLocale() {
    if (locale_ != nullptr) {
      uselocale(previous_);
      freelocale(locale_);
    }
  }
  Utf8ThreadLocale(const Utf8ThreadLocale&) = delete;
  Utf8ThreadLocale& operator=(const Utf8ThreadLocale&) = delete;
  bool active() const { return locale_ != nullptr; }

 private:
  locale_t locale_;
  locale_t previous_ = nullptr;
};

// ---- scan -------------------------------------------------------------------------------------

int64_t to_ns(const statx_timestamp& t) { return int64_t{t.tv_sec} * 1'000'000'000 + t.tv_nsec; }

class SnapshotScanner {
 public:
  SnapshotScanner(const fs::path& root, Snapshot& out) : root_(root), out_(out) {}

  void scan() {
    int fd = open(root_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
      throw BuildError("cannot read the root directory " + root_.string() + ": " + errno_text(errno));
    }
    struct stat st {};
    if (fstat(fd, &st) != 0) {
      int err = errno;
      close(fd);
      throw BuildError("cannot stat the root directory " + root_.string() + ": " + errno_text(err));
    }
    root_dev_ = st.st_dev;
    scan_dir(fd, "");
  }

 private:
  // Takes ownership of dir_fd.
  void scan_dir(int dir_fd, const std::string& prefix) {
    DIR* dir = fdopendir(dir_fd);
    if (dir == nullptr) {
      int err = errno;
      close(dir_fd);
      throw BuildError("cannot read directory " + (root_ / prefix).string() + ": " + errno_text(err));
    }
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
        scan_dir(sub, path);
      }
    }
  }

  const fs::path& root_;
  Snapshot& out_;
  dev_t root_dev_ = 0;
};

// ---- diff -------------------------------------------------------------------------------------

enum class ItemKind { Write, Whiteout, Opaque };
struct LayerItem {
  std::string tar_path;
  ItemKind kind = ItemKind::Write;
  const Entry* entry = nullptr;  // Write only
};

bool present(const Snapshot& s, const std::string& path, const Entry** found) {
  auto it = s.entries.find(path);
  if (it == s.entries.end() || S_ISSOCK(it->second.mode)) return false;
  if (found != nullptr) *found = &it->second;
  return true;
}

// Whether `path` or one of its ancestors is in `dirs`.
bool within_any(const std::unordered_set<std::string>& dirs, std::string path) {
  if (dirs.empty()) return false;
  while (!path.empty()) {
    if (dirs.count(path) != 0) return true;
    path = parent_of(path);
  }
  return false;
}

std::vector<LayerItem> plan_layer(const Snapshot& before, const Snapshot& after) {
  std::vector<LayerItem> items;
  std::unordered_set<std::string> opaque_dirs;
  for (const auto& [path, now] : after.entries) {
    if (S_ISSOCK(now.mode)) continue;
    const Entry* old = nullptr;
    bool existed = present(before, path, &old);
    bool in_opaque = within_any(opaque_dirs, parent_of(path));
    bool write = in_opaque || !existed || !(*old == now);
    // A directory that is not the one the lower layers hold: their content must not show through.
    if (S_ISDIR(now.mode) && existed && !in_opaque &&
        (!S_ISDIR(old->mode) || old->ino != now.ino || old->dev != now.dev)) {
      opaque_dirs.insert(path);
      items.push_back({path + "/" + std::string(kOpaqueMarker), ItemKind::Opaque, nullptr});
    }
    if (write) items.push_back({path, ItemKind::Write, &now});
  }
  for (const auto& [path, old] : before.entries) {
    if (S_ISSOCK(old.mode) || present(after, path, nullptr)) continue;
    std::string parent = parent_of(path);
    if (!parent.empty()) {
      // Only the topmost deleted path gets a whiteout; below a replaced directory, the opaque
      // marker already hides everything.
      const Entry* parent_now = nullptr;
      if (!present(after, parent, &parent_now) || !S_ISDIR(parent_now->mode) || within_any(opaque_dirs, parent)) {
        continue;
      }
    }
    items.push_back(
        {child_of(parent, std::string(kWhiteoutPrefix) + std::string(name_of(path))), ItemKind::Whiteout, nullptr});
  }
  std::sort(items.begin(), items.end(), [](const LayerItem& a, const LayerItem& b) { return a.tar_path < b.tar_path; });
  return items;
}

// ---- writing ----------------------------------------------------------------------------------

// Filled tar chunks travel from the tar thread to the compressor thread; empty ones come back.
class ChunkPipe {
 public:
  std::vector<char> take_empty() {
    std::unique_lock lock(mu_);
    if (!spare_.empty()) {
      auto chunk = std::move(spare_.back());
      spare_.pop_back();
      chunk.clear();
      return chunk;
    }
    std::vector<char> chunk;
    chunk.reserve(kChunkBytes);
    return chunk;
  }
  // False when the compressor gave up (its error says why).
  bool push(std::vector<char> chunk) {
    std::unique_lock lock(mu_);
    // No timeout needed: the compressor either takes chunks or aborts, which wakes us.
    room_.wait(lock, [&] { return aborted_ || full_.size() < kQueuedChunks; });
    if (aborted_) return false;
    full_.push_back(std::move(chunk));
    ready_.notify_one();
    return true;
  }
  void finish() {
    std::lock_guard lock(mu_);
    finished_ = true;
    ready_.notify_all();
  }
  void abort() {
    std::lock_guard lock(mu_);
    aborted_ = true;
    room_.notify_all();
    ready_.notify_all();
  }
  bool aborted() const {
    std::lock_guard lock(mu_);
    return aborted_;
  }
  // nullopt at the end of the stream or when aborted.
  std::optional<std::vector<char>> pop() {
    std::unique_lock lock(mu_);
    ready_.wait(lock, [&] { return aborted_ || finished_ || !full_.empty(); });
    if (aborted_ || full_.empty()) return std::nullopt;
    auto chunk = std::move(full_.front());
    full_.pop_front();
    room_.notify_one();
    return chunk;
  }
  void give_back(std::vector<char> chunk) {
    std::lock_guard lock(mu_);
    spare_.push_back(std::move(chunk));
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable room_;
  std::condition_variable ready_;
  std::deque<std::vector<char>> full_;
  std::vector<std::vector<char>> spare_;
  bool finished_ = false;
  bool aborted_ = false;
};

// The uncompressed tar stream: hashed (diff_id), cut into chunks for the compressor.
struct TarSink {
  explicit TarSink(ChunkPipe& p) : pipe(p), chunk(p.take_empty()) {}
  ChunkPipe& pipe;
  util::Hasher hasher;
  std::vector<char> chunk;

  static la_ssize_t write(archive* a, void* self, const void* data, size_t n) {
    auto* sink = static_cast<TarSink*>(self);
    sink->hasher.update(data, n);
    const char* p = static_cast<const char*>(data);
    size_t left = n;
    while (left > 0) {
      size_t take = std::min(left, kChunkBytes - sink->chunk.size());
      sink->chunk.insert(sink->chunk.end(), p, p + take);
      p += take;
      left -= take;
      if (sink->chunk.size() == kChunkBytes && !sink->flush()) {
        archive_set_error(a, EIO, "the compressor stopped");
        return -1;
      }
    }
    return static_cast<la_ssize_t>(n);
  }
  bool flush() {
    if (chunk.empty()) return true;
    bool ok = pipe.push(std::move(chunk));
    chunk = pipe.take_empty();
    return ok;
  }
};

// The temp file the compressed bytes go to: hashed (digest), counted, removed unless committed.
class LayerFile {
 public:
  explicit LayerFile(const fs::path& target) : target_(target) {
    fs::path dir = target.parent_path().empty() ? fs::path(".") : target.parent_path();
    std::string pattern = (dir / ("." + target.filename().string() + ".tmp-XXXXXX")).string();
    fd_ = mkostemp(pattern.data(), O_CLOEXEC);
    if (fd_ < 0) {
      throw BuildError("cannot create a layer file in " + dir.string() + ": " + errno_text(errno) +
                       " (does the directory exist and is it writable?)");
    }
    temp_ = pattern;
    register_temp_path(temp_);
    fchmod(fd_, 0644);
  }
  ~LayerFile() {
    if (fd_ >= 0) close(fd_);
    if (!committed_) {
      unlink(temp_.c_str());
      unregister_temp_path(temp_);
    }
  }
  LayerFile(const LayerFile&) = delete;
  LayerFile& operator=(const LayerFile&) = delete;

  static la_ssize_t write(archive* a, void* self, const void* data, size_t n) {
    auto* file = static_cast<LayerFile*>(self);
    const char* p = static_cast<const char*>(data);
    size_t left = n;
    while (left > 0) {
      ssize_t w = ::write(file->fd_, p, left);
      if (w < 0) {
        if (errno == EINTR) continue;
        archive_set_error(a, errno, "cannot write %s: %s", file->temp_.c_str(), std::strerror(errno));
        return -1;
      }
      p += w;
      left -= static_cast<size_t>(w);
    }
    file->hasher_.update(data, n);
    file->bytes_ += n;
    return static_cast<la_ssize_t>(n);
  }

  void commit() {
    int fd = std::exchange(fd_, -1);
    if (close(fd) != 0) throw BuildError("cannot write " + temp_ + ": " + errno_text(errno));
    if (rename(temp_.c_str(), target_.c_str()) != 0) {
      throw BuildError("cannot move the layer into place at " + target_.string() + ": " + errno_text(errno));
    }
    committed_ = true;
    unregister_temp_path(temp_);
  }
  std::string digest() { return "sha256:" + hasher_.hex(); }
  uint64_t bytes() const { return bytes_; }

 private:
  fs::path target_;
  std::string temp_;
  int fd_ = -1;
  bool committed_ = false;
  util::Hasher hasher_;
  uint64_t bytes_ = 0;
};

// Runs the outer (compressing) writer on its own thread; stops and joins it on every path out.
class Compressor {
 public:
  Compressor(archive* outer, ChunkPipe& pipe) : outer_(outer), pipe_(pipe), thread_([this] { run(); }) {}
  ~Compressor() {
    if (thread_.joinable()) {
      pipe_.abort();
      thread_.join();
    }
  }
  Compressor(const Compressor&) = delete;
  Compressor& operator=(const Compressor&) = delete;
  // Waits for the compressor to take the rest of the stream; the error, if it failed.
  std::optional<std::string> join() {
    thread_.join();
    return error_;
  }
  const std::optional<std::string>& error() const { return error_; }

 private:
  void run() {
    while (auto chunk = pipe_.pop()) {
      if (archive_write_data(outer_, chunk->data(), chunk->size()) < 0) {
        error_ = archive_message(outer_);
        pipe_.abort();
        return;
      }
      pipe_.give_back(std::move(*chunk));
    }
  }
  archive* outer_;
  ChunkPipe& pipe_;
  std::optional<std::string> error_;
  std::thread thread_;  // last: starts after the members it uses
};

int64_t tar_mtime(int64_t mtime_ns, const Options& opts) {
  int64_t seconds = mtime_ns / 1'000'000'000;
  if (mtime_ns % 1'000'000'000 < 0) --seconds;  // floor for times before 1970
  if (opts.source_date_epoch && seconds > *opts.source_date_epoch) seconds = *opts.source_date_epoch;
  return seconds;
}

WriteArchive open_compressed_writer(LayerFile& file, const Options& opts) {
  WriteArchive outer(archive_write_new());
  archive* a = outer.get();
  std::string filter;
  int level = opts.level;
  switch (opts.compression) {
    case Compression::Gzip:
      archive_write_add_filter_gzip(a);
      filter = "gzip";
      if (level < 0) level = 1;
      break;
    case Compression::Zstd:
      if (archive_write_add_filter_zstd(a) != ARCHIVE_OK) {
        throw BuildError("this libarchive cannot write zstd: " + archive_message(a) + "; use compression gzip");
      }
      filter = "zstd";
      if (level < 0) level = 3;
      break;
    case Compression::None: archive_write_add_filter_none(a); break;
  }
  if (!filter.empty()) {
    if (archive_write_set_filter_option(a, filter.c_str(), "compression-level", std::to_string(level).c_str()) !=
        ARCHIVE_OK) {
      throw BuildError("compression level " + std::to_string(level) + " is not valid for " + filter + " (" +
                       (filter == "gzip" ? "0-9" : "1-22") + ", or -1 for the default): " + archive_message(a));
    }
  }
  // A gzip header without the current time (and libarchive writes no file name), so that the
  // same tar always compresses to the same bytes.
  if (opts.compression == Compression::Gzip &&
      archive_write_set_filter_option(a, "gzip", "timestamp", nullptr) != ARCHIVE_OK) {
    throw BuildError("libarchive refused to leave the time out of the gzip header: " + archive_message(a));
  }
  archive_write_set_format_raw(a);
  archive_write_set_bytes_per_block(a, static_cast<int>(kChunkBytes));
  archive_write_set_bytes_in_last_block(a, 1);  // no zero padding after the compressed stream
  if (archive_write_open2(a, &file, nullptr, &LayerFile::write, nullptr, nullptr) != ARCHIVE_OK) {
    throw BuildError("cannot start the layer's compressor: " + archive_message(a));
  }
  ArchiveEntry raw(archive_entry_new());
  archive_entry_set_pathname(raw.get(), "layer.tar");
  archive_entry_set_filetype(raw.get(), AE_IFREG);
  if (archive_write_header(a, raw.get()) != ARCHIVE_OK) {
    throw BuildError("cannot start the layer's compressor: " + archive_message(a));
  }
  return outer;
}

// Writes the items into the tar writer `tar` (the producer side).
class TarWriter {
 public:
  TarWriter(archive* tar, const fs::path& root, const Options& opts, const CancelToken& cancel,
            const std::function<std::string()>& compressor_error)
      : tar_(tar),
        root_(root),
        opts_(opts),
        cancel_(cancel),
        compressor_error_(compressor_error),
        entry_(archive_entry_new()),
        buffer_(kReadBytes) {}

  void write(const LayerItem& item) {
    cancel_.throw_if_cancelled();
    archive_entry* e = entry_.get();
    archive_entry_clear(e);
    archive_entry_copy_pathname(e, item.tar_path.c_str());
    if (item.kind != ItemKind::Write) {
      archive_entry_set_filetype(e, AE_IFREG);
      archive_entry_set_perm(e, 0);
      archive_entry_set_size(e, 0);
      archive_entry_set_mtime(e, 0, 0);
      write_header(item.tar_path);
      return;
    }
    const Entry& st = *item.entry;
    archive_entry_set_mode(e, st.mode);
    archive_entry_set_uid(e, st.uid);
    archive_entry_set_gid(e, st.gid);
    archive_entry_set_mtime(e, tar_mtime(st.mtime_ns, opts_), 0);
    if (!S_ISDIR(st.mode) && st.nlink > 1) {
      auto [it, first] = first_link_.try_emplace(std::make_pair(st.dev, st.ino), item.tar_path);
      if (!first) {
        archive_entry_copy_hardlink(e, it->second.c_str());
        archive_entry_set_size(e, 0);
        write_header(item.tar_path);
        return;
      }
    }
    if (S_ISLNK(st.mode)) {
      archive_entry_copy_symlink(e, st.link_target.c_str());
    } else if (S_ISCHR(st.mode) || S_ISBLK(st.mode)) {
      archive_entry_set_rdev(e, st.rdev);
    }
    if (!S_ISREG(st.mode)) {
      write_header(item.tar_path);
      return;
    }
    write_file(item.tar_path, st);
  }

 private:
  void write_header(const std::string& path) {
    if (archive_write_header(tar_, entry_.get()) < ARCHIVE_WARN) fail(path);
  }
  [[noreturn]] void fail(const std::string& path) {
    std::string why = compressor_error_();
    if (why.empty()) why = archive_message(tar_);
    throw BuildError("cannot write " + path + " into the layer: " + why);
  }

  void write_file(const std::string& path, const Entry& st) {
    fs::path host = root_ / path;
    int fd = open(host.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOATIME);
    if (fd < 0 && errno == EPERM) fd = open(host.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) throw BuildError("cannot read " + host.string() + " for the layer: " + errno_text(errno));
    std::unique_ptr<int, void (*)(int*)> closer(&fd, [](int* f) { close(*f); });
    struct stat now {};
    if (fstat(fd, &now) != 0 || now.st_ino != st.ino || static_cast<uint64_t>(now.st_size) != st.size) {
      throw BuildError(host.string() + " changed while its layer was being written; nothing may run in the root " +
                       "directory meanwhile");
    }
    archive_entry_set_size(entry_.get(), static_cast<la_int64_t>(st.size));
    char cap[256];
    ssize_t cap_len = fgetxattr(fd, kCapabilityXattr, cap, sizeof cap);
    if (cap_len > 0) archive_entry_xattr_add_entry(entry_.get(), kCapabilityXattr, cap, static_cast<size_t>(cap_len));
    write_header(path);
    uint64_t left = st.size;
    while (left > 0) {
      ssize_t n = read(fd, buffer_.data(), std::min<uint64_t>(left, buffer_.size()));
      if (n < 0) {
        if (errno == EINTR) continue;
        throw BuildError("cannot read " + host.string() + " for the layer: " + errno_text(errno));
      }
      if (n == 0) break;
      if (archive_write_data(tar_, buffer_.data(), static_cast<size_t>(n)) < 0) fail(path);
      left -= static_cast<uint64_t>(n);
      cancel_.throw_if_cancelled();
    }
    if (left != 0) {
      throw BuildError(host.string() + " shrank while its layer was being written; nothing may run in the root " +
                       "directory meanwhile");
    }
  }

  struct DevIno {
    size_t operator()(const std::pair<dev_t, ino_t>& k) const { return std::hash<uint64_t>()(k.first * 31 + k.second); }
  };

  archive* tar_;
  const fs::path& root_;
  const Options& opts_;
  const CancelToken& cancel_;
  const std::function<std::string()>& compressor_error_;
  ArchiveEntry entry_;
  std::vector<char> buffer_;
  std::unordered_map<std::pair<dev_t, ino_t>, std::string, DevIno> first_link_;
};

// ---- applying ---------------------------------------------------------------------------------

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
    std::string target = child_of(dir, base.substr(kWhiteoutPrefix.size()));
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

std::optional<Compression> parse_compression(std::string_view s) {
  if (s == "gzip") return Compression::Gzip;
  if (s == "zstd") return Compression::Zstd;
  if (s == "none") return Compression::None;
  return std::nullopt;
}

std::string media_type(Compression c) {
  switch (c) {
    case Compression::Gzip: return "application/vnd.oci.image.layer.v1.tar+gzip";
    case Compression::Zstd: return "application/vnd.oci.image.layer.v1.tar+zstd";
    case Compression::None: return "application/vnd.oci.image.layer.v1.tar";
  }
  return "application/vnd.oci.image.layer.v1.tar";
}

Snapshot scan(const std::filesystem::path& root) {
  Snapshot snapshot;
  SnapshotScanner(root, snapshot).scan();
  return snapshot;
}

LayerBlob write_diff(const std::filesystem::path& root, const Snapshot& before, const Snapshot& after,
                     const std::filesystem::path& out_file, const Options& opts, const CancelToken& cancel) {
  std::vector<LayerItem> items = plan_layer(before, after);

  // Declaration order is teardown order in reverse: the compressor thread stops first, then the
  // writers (whose close callbacks still reach the sink and the file), then the file is removed.
  Utf8ThreadLocale utf8;
  LayerFile file(out_file);
  ChunkPipe pipe;
  TarSink sink(pipe);
  WriteArchive outer = open_compressed_writer(file, opts);
  WriteArchive inner(archive_write_new());
  archive* tar = inner.get();
  archive_write_set_format_pax_restricted(tar);
  if (!utf8.active()) archive_write_set_format_option(tar, "pax", "hdrcharset", "BINARY");
  archive_write_add_filter_none(tar);
  archive_write_set_bytes_per_block(tar, kTarBlockBytes);
  if (archive_write_open2(tar, &sink, nullptr, &TarSink::write, nullptr, nullptr) != ARCHIVE_OK) {
    throw BuildError("cannot start the layer's tar writer: " + archive_message(tar));
  }
  Compressor compressor(outer.get(), pipe);
  std::function<std::string()> compressor_error = [&] {
    return pipe.aborted() && compressor.error() ? *compressor.error() : std::string();
  };

  TarWriter writer(tar, root, opts, cancel, compressor_error);
  for (const auto& item : items) writer.write(item);
  if (archive_write_close(tar) != ARCHIVE_OK || !sink.flush()) {
    std::string why = compressor_error();
    throw BuildError("cannot finish the layer's tar stream: " + (why.empty() ? archive_message(tar) : why));
  }
  pipe.finish();
  if (auto error = compressor.join()) throw BuildError("cannot compress the layer: " + *error);
  if (archive_write_close(outer.get()) != ARCHIVE_OK) {
    throw BuildError("cannot finish the layer file: " + archive_message(outer.get()));
  }
  cancel.throw_if_cancelled();

  LayerBlob blob;
  blob.file = out_file;
  blob.diff_id = "sha256:" + sink.hasher.hex();
  blob.digest = file.digest();
  blob.size = file.bytes();
  blob.media_type = media_type(opts.compression);
  blob.entries = items.size();
  file.commit();
  return blob;
}

LayerBlob write_tree(const std::filesystem::path& root, const std::filesystem::path& out_file, const Options& opts,
                     const CancelToken& cancel) {
  return write_diff(root, Snapshot{}, scan(root), out_file, opts, cancel);
}

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
  // libarchive refuses symlinks on the way as a second line behind resolve_in_root.
  archive_write_disk_set_options(disk.get(), ARCHIVE_EXTRACT_OWNER | ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_TIME |
                                                 ARCHIVE_EXTRACT_XATTR | ARCHIVE_EXTRACT_SECURE_NODOTDOT |
                                                 ARCHIVE_EXTRACT_SECURE_SYMLINKS);

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
