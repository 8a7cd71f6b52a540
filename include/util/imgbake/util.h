// Small helpers shared across the code base.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace imgbake::util {

// The candidate closest to `word` by edit distance, if it is close enough to be
// a likely typo ("did you mean ...?").
std::optional<std::string> closest_match(std::string_view word, const std::vector<std::string>& candidates);
// " (did you mean 'x'?)" or "".
std::string did_you_mean(std::string_view word, const std::vector<std::string>& candidates);

// Go-style durations as Packer accepts them: "1h2m3.5s", "500ms", "10s", and a bare
// number of seconds. Returns nullopt when malformed.
std::optional<std::chrono::milliseconds> parse_duration(std::string_view text);
std::string format_duration(std::chrono::nanoseconds d);  // "1.234s", "2m03s"
std::string format_bytes(uint64_t n);                     // "512 B", "3.4 MiB"
// RFC 3339 in UTC: "2026-12-05T09:30:00Z", or with milliseconds (truncated, as Go's ".000"
// layouts do) "2026-12-05T09:30:00.123Z".
std::string format_rfc3339(std::chrono::system_clock::time_point t, bool milliseconds = false);
// Seconds since 1970 of an RFC 3339 time ("2026-12-05T09:30:00Z", "…:00.123456789+01:00");
// the fraction is dropped. nullopt when malformed.
std::optional<int64_t> parse_rfc3339_seconds(std::string_view text);

std::string read_file(const std::filesystem::path& path);  // throws std::runtime_error naming the path
// Writes via a temp file in the same directory, fsync, rename: readers never see a half file.
void write_file_atomic(const std::filesystem::path& path, std::string_view content, int mode = 0644);

std::string sha256_hex(std::string_view data);
std::string to_hex(const unsigned char* bytes, size_t n);  // lower case
// A streaming digest (OpenSSL EVP): update() as data arrives, hex() once at the end.
// algo: md5, sha1, sha224, sha256, sha384, sha512.
class Hasher {
 public:
  explicit Hasher(std::string_view algo = "sha256");
  ~Hasher();
  Hasher(const Hasher&) = delete;
  Hasher& operator=(const Hasher&) = delete;
  void update(const void* data, size_t n);
  std::string hex();

 private:
  void* ctx_;  // EVP_MD_CTX
};
// Hashes a file while streaming it (constant memory). algo: md5, sha1, sha224, sha256, sha384, sha512.
std::string file_digest_hex(const std::filesystem::path& path, std::string_view algo = "sha256");
bool is_supported_digest(std::string_view algo);

std::string uuid_v4();
std::string join(const std::vector<std::string>& parts, std::string_view sep);
std::vector<std::string> split(std::string_view s, char sep);
std::string trim(std::string_view s);
// Removes ANSI colour sequences (ESC [ digits/';' letter), as tools print them on a terminal or
// when told to colour (puppet, ansible).
std::string strip_ansi(std::string_view s);
bool glob_match(std::string_view pattern, std::string_view text);  // fnmatch(3)
std::string current_user();
std::string hostname();

}  // namespace imgbake::util
