// OCI layers: reproducible tar writing (two libarchive writers on two threads so that reading
// files and compressing overlap, like `tar | gzip`), hashed both ways in one pass.
#include "imgbake/layer.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "diff.h"
#include "imgbake/error.h"
#include "imgbake/temp_path_guard.h"
#include "imgbake/unique_fd.h"
#include "imgbake/util.h"
#include "layer_tar.h"
#include "sparse.h"

namespace imgbake::layer {

namespace fs = std::filesystem;

using detail::archive_message;
using detail::ArchiveEntry;
using detail::DataExtent;
using detail::errno_text;
using detail::ItemKind;
using detail::kReadBytes;
using detail::LayerItem;
using detail::plan_layer;
using detail::sparse_data_extents;
using detail::Utf8ThreadLocale;
using detail::WriteArchive;

namespace {

constexpr size_t kChunkBytes = size_t{1} << 20;  // tar bytes handed to the compressor at once
constexpr size_t kQueuedChunks = 8;              // bounds the memory between the two threads
constexpr int kTarBlockBytes = 10240;            // the tar record size; the stream is padded to it, like GNU tar
constexpr const char* kCapabilityXattr = "security.capability";

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
    fd_.reset(mkostemp(pattern.data(), O_CLOEXEC));
    if (!fd_) {
      throw BuildError("cannot create a layer file in " + dir.string() + ": " + errno_text(errno) +
                       " (does the directory exist and is it writable?)");
    }
    temp_.emplace(pattern);
    fchmod(fd_.get(), 0644);
  }
  LayerFile(const LayerFile&) = delete;
  LayerFile& operator=(const LayerFile&) = delete;

  static la_ssize_t write(archive* a, void* self, const void* data, size_t n) {
    auto* file = static_cast<LayerFile*>(self);
    const char* p = static_cast<const char*>(data);
    size_t left = n;
    while (left > 0) {
      ssize_t w = ::write(file->fd_.get(), p, left);
      if (w < 0) {
        if (errno == EINTR) continue;
        archive_set_error(a, errno, "cannot write %s: %s", file->temp_->path().c_str(), std::strerror(errno));
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
    if (fd_.close() != 0) throw BuildError("cannot write " + temp_->path().string() + ": " + errno_text(errno));
    if (rename(temp_->path().c_str(), target_.c_str()) != 0) {
      throw BuildError("cannot move the layer into place at " + target_.string() + ": " + errno_text(errno));
    }
    temp_->dismiss();
  }
  std::string digest() { return "sha256:" + hasher_.hex(); }
  uint64_t bytes() const { return bytes_; }

 private:
  fs::path target_;
  std::optional<util::TempPathGuard> temp_;  // removed unless committed
  util::UniqueFd fd_;                        // declared after temp_: closed before the removal
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
    util::UniqueFd file(open(host.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOATIME));
    if (!file && errno == EPERM) file.reset(open(host.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
    if (!file) throw BuildError("cannot read " + host.string() + " for the layer: " + errno_text(errno));
    const int fd = file.get();
    struct stat now {};
    if (fstat(fd, &now) != 0 || now.st_ino != st.ino || static_cast<uint64_t>(now.st_size) != st.size) {
      throw BuildError(host.string() + " changed while its layer was being written; nothing may run in the root " +
                       "directory meanwhile");
    }
    archive_entry_set_size(entry_.get(), static_cast<la_int64_t>(st.size));
    // A file with holes keeps them (GNU sparse 1.0 in PAX records): its holes are neither read
    // nor stored. libarchive would store a truncated name in GNU.sparse.name for a name that
    // needs a PAX path record, so such a file is stored densely.
    std::optional<std::vector<DataExtent>> extents;
    if (fits_ustar_name(path)) {
      extents = sparse_data_extents(fd, st.size, static_cast<uint64_t>(now.st_blocks) * 512, host.string());
    }
    if (extents) {
      for (const auto& e : *extents) {
        archive_entry_sparse_add_entry(entry_.get(), static_cast<la_int64_t>(e.offset),
                                       static_cast<la_int64_t>(e.length));
      }
      if (extents->empty()) archive_entry_sparse_add_entry(entry_.get(), static_cast<la_int64_t>(st.size), 0);
    }
    char cap[256];
    ssize_t cap_len = fgetxattr(fd, kCapabilityXattr, cap, sizeof cap);
    if (cap_len > 0) archive_entry_xattr_add_entry(entry_.get(), kCapabilityXattr, cap, static_cast<size_t>(cap_len));
    write_header(path);
    if (!extents) {
      copy_data(fd, host, path, 0, st.size);
      return;
    }
    uint64_t at = 0;
    for (const auto& e : *extents) {
      skip_hole(path, e.offset - at);
      copy_data(fd, host, path, e.offset, e.length);
      at = e.offset + e.length;
    }
    skip_hole(path, st.size - at);
  }

  // The file's bytes [offset, offset+length) into the entry.
  void copy_data(int fd, const fs::path& host, const std::string& path, uint64_t offset, uint64_t length) {
    while (length > 0) {
      ssize_t n = pread(fd, buffer_.data(), std::min<uint64_t>(length, buffer_.size()), static_cast<off_t>(offset));
      if (n < 0) {
        if (errno == EINTR) continue;
        throw BuildError("cannot read " + host.string() + " for the layer: " + errno_text(errno));
      }
      if (n == 0) {
        throw BuildError(host.string() + " shrank while its layer was being written; nothing may run in the root " +
                         "directory meanwhile");
      }
      if (archive_write_data(tar_, buffer_.data(), static_cast<size_t>(n)) < 0) fail(path);
      offset += static_cast<uint64_t>(n);
      length -= static_cast<uint64_t>(n);
      cancel_.throw_if_cancelled();
    }
  }
  // libarchive's sparse writer takes the whole content and drops the bytes of the holes; they
  // come from a zero buffer, never from the file.
  void skip_hole(const std::string& path, uint64_t length) {
    if (zeros_.empty()) zeros_.assign(kReadBytes, 0);
    while (length > 0) {
      size_t n = static_cast<size_t>(std::min<uint64_t>(length, zeros_.size()));
      if (archive_write_data(tar_, zeros_.data(), n) < 0) fail(path);
      length -= n;
      cancel_.throw_if_cancelled();
    }
  }

  // Whether ustar's name fields hold the name as it is (ASCII, and at most 100 bytes or split at
  // a '/' into at most 155 + 100), so that no PAX path record is needed.
  static bool fits_ustar_name(std::string_view name) {
    if (std::any_of(name.begin(), name.end(), [](char c) { return static_cast<unsigned char>(c) >= 128; })) {
      return false;
    }
    if (name.size() <= 100) return true;
    size_t slash = name.find('/', name.size() - 101);
    if (slash == 0) slash = name.find('/', 1);
    return slash != std::string_view::npos && slash + 1 < name.size() && slash <= 155;
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
  std::vector<char> zeros_;  // the holes of sparse files, as libarchive wants them
  std::unordered_map<std::pair<dev_t, ino_t>, std::string, DevIno> first_link_;
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

}  // namespace imgbake::layer
