#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <optional>

#include "imgbake/cancel.h"
#include "imgbake/store.h"
#include "imgbake/temp_path_guard.h"
#include "imgbake/unique_fd.h"
#include "imgbake/util.h"

namespace imgbake::store {

namespace fs = std::filesystem;

BlobStore::BlobStore(fs::path root) : root_(std::move(root)) {}

fs::path BlobStore::temp_dir() const { return root_ / "tmp"; }

fs::path BlobStore::path(const std::string& digest) const {
  if (!digest.starts_with("sha256:") || digest.size() != 71 ||
      digest.find_first_not_of("0123456789abcdef", 7) != std::string::npos)
    throw StoreError("not a sha256 digest: '" + digest + "'");
  return root_ / "blobs" / "sha256" / digest.substr(7);
}

bool BlobStore::exists(const std::string& digest) const {
  std::error_code ec;
  return fs::exists(path(digest), ec);
}

namespace {

void fsync_dir(const fs::path& dir) {
  util::UniqueFd d(open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (d) fsync(d.get());
}

}  // namespace

Descriptor BlobStore::put_bytes(std::string_view data, std::string media_type) {
  Descriptor d{std::move(media_type), "sha256:" + util::sha256_hex(data), data.size(), {}};
  fs::path p = path(d.digest);
  std::error_code ec;
  if (fs::exists(p, ec)) return d;
  fs::create_directories(p.parent_path());
  // Written in tmp/ and renamed into blobs/sha256, so that the blob directory only ever
  // holds complete blobs (an interrupted write leaves its temp file in tmp/).
  fs::create_directories(temp_dir());
  fs::path tmp = temp_dir() / ("small-" + d.digest.substr(7) + "-" + util::uuid_v4());
  util::write_file_atomic(tmp, data, 0444);
  if (rename(tmp.c_str(), p.c_str()) != 0) {
    int e = errno;
    unlink(tmp.c_str());
    throw StoreError("cannot move a blob into place: " + std::string(std::strerror(e)));
  }
  fsync_dir(p.parent_path());
  return d;
}

Descriptor BlobStore::put_file(const fs::path& src, std::string media_type) {
  util::UniqueFd in(open(src.c_str(), O_RDONLY | O_CLOEXEC));
  if (!in) throw StoreError("cannot read " + src.string() + ": " + std::strerror(errno));
  fs::create_directories(temp_dir());
  std::string tmpl = (temp_dir() / "blob-XXXXXX").string();
  util::UniqueFd out(mkostemp(tmpl.data(), O_CLOEXEC));
  if (!out) throw StoreError("cannot create a temporary blob in " + temp_dir().string());
  util::TempPathGuard guard(tmpl);  // also removed by a second Ctrl-C (which exits at once)

  util::Hasher hasher;
  uint64_t size = 0;
  std::vector<char> buf(1 << 20);
  // A reflink shares the source's extents (btrfs, xfs): then only read once, to hash.
  bool cloned = ioctl(out.get(), FICLONE, in.get()) == 0;
  int hash_fd = cloned ? out.get() : in.get();
  if (cloned) lseek(out.get(), 0, SEEK_SET);
  while (true) {
    ssize_t n = ::read(hash_fd, buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      throw StoreError("cannot read " + src.string() + ": " + std::strerror(errno));
    }
    if (n == 0) break;
    hasher.update(buf.data(), static_cast<size_t>(n));
    size += static_cast<uint64_t>(n);
    if (!cloned) {
      size_t off = 0;
      while (off < static_cast<size_t>(n)) {
        ssize_t w = ::write(out.get(), buf.data() + off, static_cast<size_t>(n) - off);
        if (w < 0) {
          if (errno == EINTR) continue;
          throw StoreError("cannot write a blob into " + root_.string() + ": " + std::strerror(errno));
        }
        off += static_cast<size_t>(w);
      }
    }
  }
  if (fsync(out.get()) != 0) throw StoreError("cannot fsync a blob: " + std::string(std::strerror(errno)));
  fchmod(out.get(), 0444);
  Descriptor d{std::move(media_type), "sha256:" + hasher.hex(), size, {}};
  fs::path dest = path(d.digest);
  fs::create_directories(dest.parent_path());
  std::error_code ec;
  if (fs::exists(dest, ec)) return d;  // same content already stored; the temp goes away
  if (rename(tmpl.c_str(), dest.c_str()) != 0)
    throw StoreError("cannot move a blob into place: " + std::string(std::strerror(errno)));
  guard.dismiss();
  fsync_dir(dest.parent_path());
  return d;
}

Descriptor BlobStore::adopt(const fs::path& temp_file, const std::string& digest, uint64_t size,
                            std::string media_type) {
  Descriptor d{std::move(media_type), digest, size, {}};
  fs::path dest = path(digest);  // validates the digest's form
  {
    util::UniqueFd f(open(temp_file.c_str(), O_RDONLY | O_CLOEXEC));
    if (!f) throw StoreError("cannot read " + temp_file.string() + ": " + std::strerror(errno));
    struct stat sb {};
    if (fstat(f.get(), &sb) != 0 || static_cast<uint64_t>(sb.st_size) != size)
      throw StoreError(temp_file.string() + " is not the " + std::to_string(size) + " bytes its writer reported");
    if (fsync(f.get()) != 0) throw StoreError("cannot fsync a blob: " + std::string(std::strerror(errno)));
    fchmod(f.get(), 0444);
  }
  fs::create_directories(dest.parent_path());
  std::error_code ec;
  if (fs::exists(dest, ec)) {
    fs::remove(temp_file, ec);
    return d;
  }
  if (rename(temp_file.c_str(), dest.c_str()) != 0)
    throw StoreError("cannot move a blob into place: " + std::string(std::strerror(errno)));
  fsync_dir(dest.parent_path());
  return d;
}

namespace {

const char* kind_of(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a regular file";
}

// A blob opened for reading: never through a symbolic link, never waiting (a FIFO or a device in
// its place is refused, not read), and read no further than the size it had when opened, so
// that nothing put in a blob's place can make a reader hang or read forever.
struct OpenBlob {
  util::UniqueFd fd;
  uint64_t size = 0;
};

OpenBlob open_blob(const fs::path& p, const std::string& digest) {
  OpenBlob b;
  b.fd.reset(open(p.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  if (!b.fd) {
    int e = errno;
    if (e == ENOENT) throw StoreError("blob " + digest + " is missing (" + p.string() + ")");
    if (e == ELOOP)
      throw StoreError("blob " + digest + " is a symbolic link (" + p.string() + "); a blob must be a regular file");
    throw StoreError("cannot read blob " + digest + " (" + p.string() + "): " + std::strerror(e));
  }
  struct stat sb {};
  if (fstat(b.fd.get(), &sb) != 0)
    throw StoreError("cannot read blob " + digest + " (" + p.string() + "): " + std::strerror(errno));
  if (!S_ISREG(sb.st_mode))
    throw StoreError("blob " + digest + " is " + kind_of(sb.st_mode) + " (" + p.string() +
                     "); a blob must be a regular file");
  b.size = static_cast<uint64_t>(sb.st_size);
  return b;
}

// Reads up to `b.size` bytes of the blob in chunks, handing each to `take`; stops on a signal.
template <typename Take>
void read_blob(OpenBlob& b, const fs::path& p, const std::string& digest, Take take) {
  std::vector<char> buf(std::min<uint64_t>(b.size, 1 << 20) + 1);
  uint64_t left = b.size;
  while (left > 0) {
    global_cancel().throw_if_cancelled();
    ssize_t n = ::read(b.fd.get(), buf.data(), std::min<uint64_t>(left, buf.size()));
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      throw StoreError("cannot read blob " + digest + " (" + p.string() + "): " + std::strerror(errno));
    }
    if (n == 0) break;  // shrank while read: the digest tells
    take(buf.data(), static_cast<size_t>(n));
    left -= static_cast<uint64_t>(n);
  }
}

}  // namespace

std::string BlobStore::read(const std::string& digest) const {
  fs::path p = path(digest);
  OpenBlob b = open_blob(p, digest);
  std::string out;
  out.reserve(b.size);
  read_blob(b, p, digest, [&](const char* data, size_t n) { out.append(data, n); });
  return out;
}

void BlobStore::check_regular(const std::string& digest) const { open_blob(path(digest), digest); }

std::string BlobStore::check(const std::string& digest) const {
  util::Hasher hasher;
  try {
    fs::path p = path(digest);
    OpenBlob b = open_blob(p, digest);
    read_blob(b, p, digest, [&](const char* data, size_t n) { hasher.update(data, n); });
  } catch (const StoreError& e) {
    return e.what();
  }
  std::string actual = "sha256:" + hasher.hex();
  if (actual != digest) return "blob " + digest + " is corrupt: its content hashes to " + actual;
  return "";
}

std::vector<std::string> BlobStore::list() const {
  std::vector<std::string> out;
  std::error_code ec;
  fs::path dir = root_ / "blobs" / "sha256";
  if (!fs::exists(dir, ec)) return out;
  for (const auto& e : fs::directory_iterator(dir)) {
    std::string n = e.path().filename().string();
    if (n.size() == 64 && n.find_first_not_of("0123456789abcdef") == std::string::npos) out.push_back("sha256:" + n);
  }
  return out;
}

std::vector<fs::path> BlobStore::leftovers() const {
  std::vector<fs::path> out;
  std::error_code ec;
  for (const fs::path& dir : {root_ / "blobs" / "sha256", temp_dir()}) {
    if (!fs::exists(dir, ec)) continue;
    for (const auto& e : fs::directory_iterator(dir)) {
      std::string n = e.path().filename().string();
      bool blob = n.size() == 64 && n.find_first_not_of("0123456789abcdef") == std::string::npos;
      if (!blob || dir == temp_dir()) out.push_back(e.path());
    }
  }
  return out;
}

void BlobStore::remove(const std::string& digest) {
  std::error_code ec;
  fs::remove(path(digest), ec);
}

struct BlobWriter::Impl {
  BlobStore& blobs;
  std::optional<util::TempPathGuard> temp;  // removed unless renamed into place
  util::UniqueFd fd;                        // after temp: closed before the removal
  util::Hasher hasher;
  uint64_t size = 0;
  bool done = false;  // renamed into place or removed

  explicit Impl(BlobStore& b) : blobs(b) {}
  void discard() {
    fd.reset();
    temp.reset();
    done = true;
  }
};

BlobWriter::BlobWriter(BlobStore& blobs) : impl_(std::make_unique<Impl>(blobs)) {
  fs::create_directories(blobs.temp_dir());
  std::string tmpl = (blobs.temp_dir() / "pull-XXXXXX").string();
  impl_->fd.reset(mkostemp(tmpl.data(), O_CLOEXEC));
  if (!impl_->fd)
    throw StoreError("cannot create a temporary blob in " + blobs.temp_dir().string() + ": " + std::strerror(errno));
  impl_->temp.emplace(tmpl);
}

BlobWriter::~BlobWriter() {
  if (!impl_->done) impl_->discard();
}

uint64_t BlobWriter::bytes_written() const { return impl_->size; }

void BlobWriter::write(const char* data, size_t n) {
  if (impl_->done) throw StoreError("BlobWriter::write after commit");
  impl_->hasher.update(data, n);
  size_t off = 0;
  while (off < n) {
    ssize_t w = ::write(impl_->fd.get(), data + off, n - off);
    if (w < 0) {
      if (errno == EINTR) continue;
      throw StoreError("cannot write a blob into " + impl_->blobs.root().string() + ": " + std::strerror(errno));
    }
    off += static_cast<size_t>(w);
  }
  impl_->size += n;
}

Descriptor BlobWriter::commit(const std::string& expected_digest, uint64_t expected_size, std::string media_type) {
  if (impl_->done) throw StoreError("BlobWriter::commit called twice");
  fs::path dest = impl_->blobs.path(expected_digest);  // throws on a malformed digest
  std::string actual = "sha256:" + impl_->hasher.hex();
  if (actual != expected_digest || impl_->size != expected_size) {
    impl_->discard();
    throw StoreError("blob " + expected_digest + " (" + std::to_string(expected_size) + " bytes) arrived as " +
                     std::to_string(impl_->size) + " bytes hashing to " + actual +
                     "; it was not stored (a damaged transfer or a registry serving the wrong content: try again)");
  }
  if (fsync(impl_->fd.get()) != 0) {
    int e = errno;
    impl_->discard();
    throw StoreError("cannot fsync a blob: " + std::string(std::strerror(e)));
  }
  fchmod(impl_->fd.get(), 0444);
  impl_->fd.reset();
  Descriptor d{std::move(media_type), expected_digest, expected_size, {}};
  fs::create_directories(dest.parent_path());
  std::error_code ec;
  if (fs::exists(dest, ec)) {  // same content already stored; the temp goes away
    impl_->discard();
    return d;
  }
  if (rename(impl_->temp->path().c_str(), dest.c_str()) != 0) {
    int e = errno;
    impl_->discard();
    throw StoreError("cannot move a blob into place: " + std::string(std::strerror(e)));
  }
  impl_->temp->dismiss();
  impl_->done = true;
  fsync_dir(dest.parent_path());
  return d;
}

}  // namespace imgbake::store
