#include "imgbake/fetch.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <pwd.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <exception>
#include <filesystem>
#include <memory>
#include <string_view>
#include <variant>

#include "imgbake/error.h"
#include "imgbake/http.h"
#include "imgbake/text_encoding.h"
#include "imgbake/unique_fd.h"
#include "imgbake/util.h"

namespace imgbake {

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// A download that another process holds the lock of is waited for this long at most: long enough
// for a DVD image over a slow line, short enough that a wedged build does not block forever.
constexpr auto kLockWait = 3h;
constexpr auto kLockPoll = 100ms;
// SUMS files are small text files; anything bigger is not one.
constexpr size_t kMaxSumsFileSize = 16u << 20;

// The checksum types of Packer 1.6.6 (go-getter), with their hex lengths and BSD tags.
struct DigestAlgo {
  const char* name;
  size_t hex_length;
  const EVP_MD* (*md)();
  const char* bsd_tag;
};
const DigestAlgo kAlgos[] = {
    {"md5", 32, EVP_md5, "MD5"},
    {"sha1", 40, EVP_sha1, "SHA1"},
    {"sha256", 64, EVP_sha256, "SHA256"},
    {"sha512", 128, EVP_sha512, "SHA512"},
};

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

const DigestAlgo* algo_by_name(std::string_view name) {
  for (const auto& a : kAlgos)
    if (name == a.name) return &a;
  return nullptr;
}

const DigestAlgo* algo_by_hex_length(size_t n) {
  for (const auto& a : kAlgos)
    if (n == a.hex_length) return &a;
  return nullptr;
}

const DigestAlgo* algo_by_bsd_tag(std::string_view tag) {
  for (const auto& a : kAlgos)
    if (lower(tag) == lower(a.bsd_tag)) return &a;
  return nullptr;
}

bool is_hex(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isxdigit(c) != 0; });
}

// ---------------------------------------------------------------------------
// Checksum specifications

struct ChecksumSpec {
  enum class Kind { kNone, kHex, kSumsFile };
  Kind kind = Kind::kNone;
  const DigestAlgo* algo = nullptr;  // kHex
  std::string hex;                   // kHex, lower case
  std::string sums_location;         // kSumsFile: a URL or a path
};

const char* const kChecksumForms =
    "use \"sha256:HEX\" (or md5:, sha1:, sha512:), a bare HEX, \"file:URL\" of a SUMS file, or \"none\"";

// A well-formed checksum's parts, or a message for the user.
std::variant<ChecksumSpec, std::string> parse_checksum(const std::string& text) {
  ChecksumSpec spec;
  if (text.empty()) return std::string("the checksum is empty: ") + kChecksumForms;
  if (lower(text) == "none") return spec;
  size_t colon = text.find(':');
  if (colon == std::string::npos) {
    if (!is_hex(text)) return "checksum '" + text + "' is neither hex digits nor TYPE:HEX; " + kChecksumForms;
    spec.algo = algo_by_hex_length(text.size());
    if (!spec.algo)
      return "checksum '" + text + "' has " + std::to_string(text.size()) +
             " hex digits; a bare checksum must have 32 (md5), 40 (sha1), 64 (sha256) or 128 (sha512) — "
             "check that it was copied whole, or prefix it with its type (sha256:HEX)";
    spec.kind = ChecksumSpec::Kind::kHex;
    spec.hex = lower(text);
    return spec;
  }
  std::string type = lower(text.substr(0, colon));
  std::string value = text.substr(colon + 1);
  if (type == "file") {
    // "file:///abs/SUMS" is a file:// URL as a whole; "file:X" names X (URL or path).
    spec.sums_location = value.starts_with("//") ? text : value;
    if (util::trim(value).empty()) return "checksum '" + text + "' names no SUMS file: use file:URL or file:PATH";
    spec.kind = ChecksumSpec::Kind::kSumsFile;
    return spec;
  }
  spec.algo = algo_by_name(type);
  if (!spec.algo)
    return "checksum type '" + type + "' is not supported" +
           util::did_you_mean(type, {"md5", "sha1", "sha256", "sha512", "file", "none"}) +
           "; use md5, sha1, sha256 or sha512 (or file:URL of a SUMS file, or none)";
  if (!is_hex(value))
    return "checksum '" + text + "': after '" + type + ":' there must be hex digits only, found '" + value + "'";
  if (value.size() != spec.algo->hex_length)
    return "checksum '" + text + "': a " + type + " checksum has " + std::to_string(spec.algo->hex_length) +
           " hex digits, this one has " + std::to_string(value.size()) + "; check that it was copied whole";
  spec.kind = ChecksumSpec::Kind::kHex;
  spec.hex = lower(value);
  return spec;
}

// ---------------------------------------------------------------------------
// Sources: what a URL points at

struct Source {
  bool remote = false;
  std::string url;        // as given
  fs::path local_path;    // !remote: absolute path of the file
  std::string file_name;  // looked up in SUMS files
};

std::variant<Source, std::string> classify(const std::string& url) {
  Source src;
  src.url = url;
  std::string scheme;
  if (size_t p = url.find("://"); p != std::string::npos) scheme = lower(url.substr(0, p));
  if (scheme == "http" || scheme == "https") {
    src.remote = true;
    std::string_view rest = std::string_view(url).substr(scheme.size() + 3);
    size_t path_start = rest.find('/');
    std::string_view path = path_start == std::string_view::npos ? "" : rest.substr(path_start);
    path = path.substr(0, path.find_first_of("?#"));
    src.file_name = util::percent_decode(path.substr(path.rfind('/') + 1));
    return src;
  }
  std::string path;
  if (scheme == "file") {
    path = util::percent_decode(std::string_view(url).substr(7));
    if (path.starts_with("localhost/")) path = path.substr(9);
  } else if (!scheme.empty()) {
    return "URL '" + url + "' has the scheme '" + scheme +
           "', which imgbake cannot fetch; use http://, https://, file:// or a local path";
  } else {
    path = url;
  }
  if (path.empty()) return "URL '" + url + "' names no file";
  src.local_path = fs::absolute(fs::path(path)).lexically_normal();
  src.file_name = src.local_path.filename().string();
  return src;
}

// ---------------------------------------------------------------------------
// Hashing

// Like util::file_digest_hex, but stops when cancelled: a DVD image takes seconds to hash.
std::string hash_file(const fs::path& path, const DigestAlgo& algo, const CancelToken& cancel) {
  util::UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) throw BuildError("cannot read " + path.string() + ": " + std::strerror(errno));
  util::Hasher hasher(algo.name);
  std::vector<char> buf(1 << 20);
  while (true) {
    if (cancel.cancelled()) throw Cancelled();
    ssize_t n = ::read(fd.get(), buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      throw BuildError("cannot read " + path.string() + ": " + std::strerror(errno));
    }
    if (n == 0) break;
    hasher.update(buf.data(), static_cast<size_t>(n));
  }
  return hasher.hex();
}

std::string mismatch_message(const std::string& url, const DigestAlgo& algo, const std::string& expected,
                             const std::string& got) {
  return "checksum mismatch for " + url + ": expected " + algo.name + ":" + expected + " got " + algo.name + ":" + got;
}

// ---------------------------------------------------------------------------
// HTTP(S) through the transport (http.h)

// One GET; the body goes to `sink`, which throws BuildError to stop. Throws Cancelled, or
// BuildError with a reason that does not repeat the URL.
void http_get(const std::string& url, const std::function<void(const char*, size_t)>& sink,
              const FetchProgress* progress, const CancelToken& cancel) {
  http::Session session;
  http::Request req;
  req.url = url;
  req.sink = sink;
  req.cancel = &cancel;
  if (progress && *progress)
    req.progress = [progress](uint64_t done, uint64_t total) {
      if (done > 0) (*progress)(done, total);
    };
  http::Response resp = session.send(req);
  long status = resp.status;
  if (status >= 200 && status < 300) return;
  std::string hint = status == 404                    ? " (no such file on the server; check the URL)"
                     : status == 401 || status == 403 ? " (access denied)"
                     : status >= 500                  ? " (a server error; try again later or use another mirror)"
                                                      : "";
  throw BuildError("the server answered HTTP " + std::to_string(status) + hint);
}

std::string read_sums_file(const std::string& location, const CancelToken& cancel) {
  auto classified = classify(location);
  if (auto* error = std::get_if<std::string>(&classified)) throw BuildError(*error);
  const Source& src = std::get<Source>(classified);
  if (!src.remote) {
    std::error_code ec;
    if (!fs::is_regular_file(src.local_path, ec)) throw BuildError(src.local_path.string() + " does not exist");
    if (fs::file_size(src.local_path, ec) > kMaxSumsFileSize)
      throw BuildError(src.local_path.string() + " is too big to be a SUMS file");
    try {
      return util::read_file(src.local_path);
    } catch (const std::runtime_error& e) {
      throw BuildError(e.what());
    }
  }
  std::string content;
  auto sink = [&](const char* data, size_t n) {
    if (content.size() + n > kMaxSumsFileSize) throw BuildError("the file is too big to be a SUMS file");
    content.append(data, n);
  };
  http_get(src.url, sink, nullptr, cancel);
  return content;
}

struct SumsEntry {
  const DigestAlgo* algo;
  std::string hex;
};

// The checksum for `file_name` in a SUMS file in GNU coreutils form ("HEX  name", "HEX *name") or BSD
// form ("SHA256 (name) = HEX"); names may carry a "./" prefix. Lines of other shapes are skipped.
std::optional<SumsEntry> find_in_sums(std::string_view content, const std::string& file_name) {
  auto same_file = [&](std::string name) {
    if (name.starts_with("./")) name = name.substr(2);
    return name == file_name;
  };
  for (const std::string& raw : util::split(content, '\n')) {
    std::string line = util::trim(raw);
    if (line.empty() || line[0] == '#') continue;
    if (size_t open = line.find(" ("), close = line.rfind(") = ");
        open != std::string::npos && close != std::string::npos && close > open) {
      const DigestAlgo* algo = algo_by_bsd_tag(line.substr(0, open));
      std::string hex = util::trim(line.substr(close + 4));
      if (algo && is_hex(hex) && hex.size() == algo->hex_length && same_file(line.substr(open + 2, close - open - 2)))
        return SumsEntry{algo, lower(hex)};
      continue;
    }
    size_t space = line.find_first_of(" \t");
    if (space == std::string::npos) continue;
    std::string hex = line.substr(0, space);
    const DigestAlgo* algo = algo_by_hex_length(hex.size());
    if (!algo || !is_hex(hex)) continue;
    std::string name = util::trim(line.substr(space));
    if (name.starts_with('*')) name = name.substr(1);  // binary mode
    if (same_file(name)) return SumsEntry{algo, lower(hex)};
  }
  return std::nullopt;
}

// Not a problem of one URL: the other URLs need the same file.
class SumsFileUnreadable : public BuildError {
 public:
  using BuildError::BuildError;
};

// ---------------------------------------------------------------------------
// The cache

// An exclusive flock on NAME.lock for one cache entry, so that two builds fetching the same ISO
// download it once. The holder removes the lock file on release; a waiter that then finds its
// descriptor no longer names the file on disk locks the new one instead.
class EntryLock {
 public:
  EntryLock(fs::path path, const fs::path& entry, const CancelToken& cancel) : path_(std::move(path)) {
    auto deadline = Clock::now() + kLockWait;
    while (true) {
      util::UniqueFd fd(open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
      if (!fd)
        throw BuildError("cannot create the lock file " + path_.string() + ": " + std::strerror(errno) +
                         "; check that the download cache directory is writable");
      while (flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
        if (errno != EWOULDBLOCK && errno != EINTR)
          throw BuildError("cannot lock " + path_.string() + ": " + std::strerror(errno));
        if (Clock::now() >= deadline) {
          throw BuildError("waited 3h for another imgbake process to finish downloading " + entry.string() +
                           " (it holds " + path_.string() + "); let it finish or stop it, then try again");
        }
        cancel.sleep_for(kLockPoll);  // flock has no descriptor to poll; checking often is cheap
      }
      struct stat held = {}, on_disk = {};
      if (fstat(fd.get(), &held) == 0 && stat(path_.c_str(), &on_disk) == 0 && held.st_dev == on_disk.st_dev &&
          held.st_ino == on_disk.st_ino) {
        fd_ = std::move(fd);
        return;
      }
    }
  }
  ~EntryLock() { unlink(path_.c_str()); }  // before fd_ closes: a waiter then locks a new file
  EntryLock(const EntryLock&) = delete;
  EntryLock& operator=(const EntryLock&) = delete;

 private:
  fs::path path_;
  util::UniqueFd fd_;
};

// A download in progress: removed unless committed, also by a second interrupt (register_temp_path).
class PartFile {
 public:
  explicit PartFile(fs::path path) : path_(std::move(path)) {
    fd_.reset(open(path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
    if (!fd_)
      throw BuildError("cannot create " + path_.string() + ": " + std::strerror(errno) +
                       "; check that the download cache directory is writable and has space");
    register_temp_path(path_.string());
  }
  ~PartFile() {
    fd_.reset();
    if (!committed_) unlink(path_.c_str());
    unregister_temp_path(path_.string());
  }
  PartFile(const PartFile&) = delete;
  PartFile& operator=(const PartFile&) = delete;

  // "" or what went wrong.
  std::string write(const char* data, size_t n) {
    while (n > 0) {
      ssize_t w = ::write(fd_.get(), data, n);
      if (w < 0) {
        if (errno == EINTR) continue;
        return "cannot write " + path_.string() + ": " + std::strerror(errno);
      }
      data += w;
      n -= static_cast<size_t>(w);
    }
    return "";
  }

  // Durable under `final_path` (fsync, rename, fsync of the directory).
  void commit(const fs::path& final_path) {
    if (fsync(fd_.get()) != 0 || fd_.close() != 0) {
      fd_.reset();
      throw BuildError("cannot write " + path_.string() + ": " + std::strerror(errno));
    }
    if (rename(path_.c_str(), final_path.c_str()) != 0)
      throw BuildError("cannot rename " + path_.string() + " to " + final_path.string() + ": " + std::strerror(errno));
    committed_ = true;
    util::UniqueFd dir(open(final_path.parent_path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (dir) fsync(dir.get());
  }

 private:
  fs::path path_;
  util::UniqueFd fd_;
  bool committed_ = false;
};

std::string random_suffix() {
  unsigned char bytes[6];
  if (RAND_bytes(bytes, sizeof bytes) != 1) throw BuildError("no randomness available for a temporary file name");
  return util::to_hex(bytes, sizeof bytes);
}

// `algo` is null for "none".
FetchResult fetch_remote(const Source& src, const DigestAlgo* algo, const std::string& hex, const FetchRequest& req,
                         const FetchProgress& progress, const CancelToken& cancel) {
  FetchResult result;
  result.url = src.url;
  result.checksum_type = algo ? algo->name : "none";
  result.checksum = algo ? hex : "";

  fs::path cache_dir = req.cache_dir;
  std::error_code ec;
  fs::create_directories(cache_dir, ec);
  if (ec)
    throw BuildError("cannot create the download cache directory " + cache_dir.string() + ": " + ec.message() +
                     "; set IMGBAKE_CACHE_DIR to a writable directory");
  std::string extension = req.target_extension;
  if (extension.starts_with('.')) extension = extension.substr(1);
  // Content-addressed when the checksum is known (two mirrors share one entry); by URL otherwise.
  std::string name = (algo ? hex : util::sha256_hex(src.url)) + (extension.empty() ? "" : "." + extension);
  fs::path entry = cache_dir / name;
  result.path = entry.string();

  EntryLock lock(cache_dir / (name + ".lock"), entry, cancel);
  if (fs::exists(entry, ec)) {
    if (!algo || hash_file(entry, *algo, cancel) == hex) {
      result.from_cache = true;
      return result;
    }
    // Corrupt (a disk error, or someone edited it): fetch it again.
    fs::remove(entry, ec);
  }

  PartFile part(cache_dir / (name + ".part-" + std::to_string(getpid()) + "-" + random_suffix()));
  std::optional<util::Hasher> hasher;
  if (algo) hasher.emplace(algo->name);
  uint64_t received = 0;
  auto sink = [&](const char* data, size_t n) {
    if (hasher) hasher->update(data, n);
    received += n;
    if (std::string error = part.write(data, n); !error.empty()) throw BuildError(error);
  };
  http_get(src.url, sink, &progress, cancel);
  if (progress) progress(received, received);
  if (hasher) {
    std::string got = hasher->hex();
    if (got != hex) throw BuildError(mismatch_message(src.url, *algo, hex, got));
  }
  part.commit(entry);
  return result;
}

FetchResult fetch_local(const Source& src, const DigestAlgo* algo, const std::string& hex, const CancelToken& cancel) {
  std::error_code ec;
  auto status = fs::status(src.local_path, ec);
  std::string from = src.url == src.local_path.string() ? "" : " (from " + src.url + ")";
  if (!fs::exists(status)) throw BuildError("file " + src.local_path.string() + from + " does not exist");
  if (fs::is_directory(status))
    throw BuildError(src.local_path.string() + from + " is a directory; the URL must name a file");
  FetchResult result;
  result.path = src.local_path.string();
  result.url = src.url;
  result.checksum_type = algo ? algo->name : "none";
  if (algo) {
    std::string got = hash_file(src.local_path, *algo, cancel);
    if (got != hex) throw BuildError(mismatch_message(src.url, *algo, hex, got));
    result.checksum = hex;
  }
  return result;
}

}  // namespace

std::optional<std::string> checksum_syntax_error(const std::string& checksum) {
  auto parsed = parse_checksum(checksum);
  if (auto* error = std::get_if<std::string>(&parsed)) return *error;
  return std::nullopt;
}

std::string default_download_cache_dir() {
  auto env = [](const char* name) -> std::string {
    const char* v = std::getenv(name);
    return v ? v : "";
  };
  fs::path base;
  if (std::string d = env("IMGBAKE_CACHE_DIR"); !d.empty()) {
    base = d;
  } else if (std::string x = env("XDG_CACHE_HOME"); !x.empty()) {
    base = fs::path(x) / "imgbake";
  } else {
    std::string home = env("HOME");
    if (home.empty())
      if (struct passwd* pw = getpwuid(getuid()); pw && pw->pw_dir) home = pw->pw_dir;
    base = fs::path(home.empty() ? "/root" : home) / ".cache" / "imgbake";
  }
  return (base / "downloads").string();
}

FetchResult fetch(const FetchRequest& req, const FetchProgress& progress, const CancelToken& cancel) {
  auto parsed = parse_checksum(req.checksum);
  if (auto* error = std::get_if<std::string>(&parsed)) throw BuildError(*error);
  const ChecksumSpec& spec = std::get<ChecksumSpec>(parsed);
  if (req.urls.empty()) throw BuildError("no URL to fetch: set iso_url or iso_urls");

  // Read once, looked up per URL (mirrors may name the file differently).
  std::optional<std::string> sums;
  std::vector<std::string> failures;
  for (const std::string& url : req.urls) {
    cancel.throw_if_cancelled();
    try {
      auto classified = classify(url);
      if (auto* error = std::get_if<std::string>(&classified)) throw BuildError(*error);
      const Source& src = std::get<Source>(classified);
      const DigestAlgo* algo = spec.algo;
      std::string hex = spec.hex;
      if (spec.kind == ChecksumSpec::Kind::kSumsFile) {
        if (!sums) {
          try {
            sums = read_sums_file(spec.sums_location, cancel);
          } catch (const BuildError& e) {
            throw SumsFileUnreadable("cannot read the checksum file " + spec.sums_location + ": " + e.what());
          }
        }
        if (src.file_name.empty())
          throw BuildError(url + " has no file name to look up in the checksum file " + spec.sums_location);
        auto found = find_in_sums(*sums, src.file_name);
        if (!found)
          throw BuildError("the checksum file " + spec.sums_location + " has no entry for '" + src.file_name +
                           "' (the file name of " + url + "; also looked for './" + src.file_name +
                           "'); check that the URL and the checksum file belong together");
        algo = found->algo;
        hex = found->hex;
      }
      if (src.remote) {
        try {
          return fetch_remote(src, algo, hex, req, progress, cancel);
        } catch (const BuildError& e) {
          std::string reason = e.what();
          // Messages from fetch_remote's own checks already name the URL; curl's reasons do not.
          if (reason.find(url) == std::string::npos) reason = "cannot download " + url + ": " + reason;
          throw BuildError(reason);
        }
      }
      return fetch_local(src, algo, hex, cancel);
    } catch (const SumsFileUnreadable&) {
      throw;  // every URL would need it: give up at once
    } catch (const BuildError& e) {
      if (req.urls.size() == 1) throw;
      failures.emplace_back(e.what());
    }
  }
  std::string message = "none of the " + std::to_string(req.urls.size()) + " URLs could be fetched:";
  for (const auto& f : failures) message += "\n  - " + f;
  throw BuildError(message);
}

}  // namespace imgbake
