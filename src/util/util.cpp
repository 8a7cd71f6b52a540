#include "imgbake/util.h"

#include <fcntl.h>
#include <fnmatch.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cstdio>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <ctime>
#include <fstream>
#include <memory>
#include <sstream>
#include <stdexcept>

#include "imgbake/temp_path_guard.h"
#include "imgbake/unique_fd.h"

namespace imgbake::util {

namespace {
// Optimal-string-alignment distance: like Levenshtein, but swapping two neighbouring
// letters ("tpye" for "type") costs one edit, as typos usually do.
size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.size()][b.size()];
}
}  // namespace

std::optional<std::string> closest_match(std::string_view word, const std::vector<std::string>& candidates) {
  std::optional<std::string> best;
  size_t best_d = std::string::npos;
  for (const auto& c : candidates) {
    size_t d = edit_distance(word, c);
    if (d < best_d) {
      best_d = d;
      best = c;
    }
  }
  // A third of the word's length (at least 1, at most 3 edits) catches typos
  // and plural/singular slips without suggesting unrelated names.
  // Words of one or two letters are too short for a guess to mean anything.
  if (word.size() < 3) return std::nullopt;
  size_t limit = std::clamp<size_t>(word.size() / 3, 1, 3);
  if (best && best_d <= limit) return best;
  // "iso_url" vs "iso_urls"-style prefix relationships.
  for (const auto& c : candidates)
    if (word.size() >= 4 && (c.starts_with(word) || word.starts_with(c)) &&
        std::max(c.size(), word.size()) - std::min(c.size(), word.size()) <= 2)
      return c;
  return std::nullopt;
}

std::string did_you_mean(std::string_view word, const std::vector<std::string>& candidates) {
  auto m = closest_match(word, candidates);
  return m ? " (did you mean '" + *m + "'?)" : "";
}

std::optional<std::chrono::milliseconds> parse_duration(std::string_view text) {
  std::string t = trim(text);
  if (t.empty()) return std::nullopt;
  // Anything beyond ~292 years does not fit in milliseconds of int64 arithmetic below.
  constexpr long double kMaxMs = 9.2e15L;
  // A bare number is seconds (Packer's "timeout": 30 works through weak decoding).
  bool bare = std::all_of(t.begin(), t.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); });
  if (bare) {
    if (t.size() > 12) return std::nullopt;
    return std::chrono::milliseconds(std::stoll(t) * 1000);
  }
  long double total_ms = 0;
  size_t i = 0;
  bool neg = false;
  if (t[0] == '-' || t[0] == '+') {
    neg = t[0] == '-';
    ++i;
  }
  if (i >= t.size()) return std::nullopt;
  if (t.substr(i) == "0") return std::chrono::milliseconds(0);
  while (i < t.size()) {
    // Number: digits, at most one '.', at least one digit (Go's time.ParseDuration).
    long double num = 0, scale = 1;
    bool dot = false, digits = false;
    for (; i < t.size(); ++i) {
      char c = t[i];
      if (std::isdigit(static_cast<unsigned char>(c))) {
        digits = true;
        if (dot) {
          scale /= 10;
          num += (c - '0') * scale;
        } else {
          num = num * 10 + (c - '0');
          if (num > kMaxMs) return std::nullopt;
        }
      } else if (c == '.' && !dot) {
        dot = true;
      } else {
        break;
      }
    }
    if (!digits) return std::nullopt;
    // Unit: everything up to the next digit or '.', so multi-byte "µs" is read whole.
    size_t ustart = i;
    while (i < t.size() && !std::isdigit(static_cast<unsigned char>(t[i])) && t[i] != '.') ++i;
    std::string unit = t.substr(ustart, i - ustart);
    long double mult = 0;
    if (unit == "ns")
      mult = 1e-6L;
    else if (unit == "us" || unit == "\u00b5s" || unit == "\u03bcs")
      mult = 1e-3L;
    else if (unit == "ms")
      mult = 1;
    else if (unit == "s")
      mult = 1000;
    else if (unit == "m")
      mult = 60000;
    else if (unit == "h")
      mult = 3600000;
    else
      return std::nullopt;
    total_ms += num * mult;
    if (total_ms > kMaxMs) return std::nullopt;
  }
  auto ms = std::chrono::milliseconds(std::llround(total_ms));
  return neg ? -ms : ms;
}

std::string format_bytes(uint64_t n) {
  if (n < 1024) return std::to_string(n) + " B";
  static const char* units[] = {"KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(n);
  int u = -1;
  while (v >= 1024 && u < 3) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f %s", v, units[u]);
  return buf;
}

std::string format_duration(std::chrono::nanoseconds d) {
  // Round to milliseconds first, so that 59.9996 s prints as 1m00s, not 60.000s.
  double s = static_cast<double>(std::chrono::round<std::chrono::milliseconds>(d).count()) / 1000.0;
  char buf[64];
  if (s < 60) {
    std::snprintf(buf, sizeof buf, "%.3fs", s);
  } else {
    auto whole = static_cast<long long>(s);
    if (whole >= 3600)
      std::snprintf(buf, sizeof buf, "%lldh%02lldm%02llds", whole / 3600, (whole / 60) % 60, whole % 60);
    else
      std::snprintf(buf, sizeof buf, "%lldm%02llds", whole / 60, whole % 60);
  }
  return buf;
}

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path.string() + ": " + std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_file_atomic(const std::filesystem::path& path, std::string_view content, int mode) {
  auto dir = path.parent_path().empty() ? std::filesystem::path(".") : path.parent_path();
  std::string tmpl = (dir / ("." + path.filename().string() + ".tmp-XXXXXX")).string();
  UniqueFd fd(mkostemp(tmpl.data(), O_CLOEXEC));
  if (!fd) throw std::runtime_error("cannot create a temporary file in " + dir.string() + ": " + std::strerror(errno));
  TempPathGuard temp(tmpl);  // removed unless renamed into place
  auto fail = [&](const char* what) {
    int e = errno;
    throw std::runtime_error(std::string("cannot ") + what + " " + path.string() + ": " + std::strerror(e));
  };
  size_t off = 0;
  while (off < content.size()) {
    ssize_t n = ::write(fd.get(), content.data() + off, content.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("write");
    }
    off += static_cast<size_t>(n);
  }
  if (fchmod(fd.get(), static_cast<mode_t>(mode)) != 0) fail("chmod");
  if (fsync(fd.get()) != 0) fail("fsync");
  if (fd.close() != 0) fail("close");
  if (rename(tmpl.c_str(), path.c_str()) != 0) fail("rename into");
  temp.dismiss();
  // Make the rename itself durable.
  UniqueFd dfd(open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dfd) fsync(dfd.get());
}

namespace {
const EVP_MD* digest_by_name(std::string_view algo) {
  if (algo == "md5") return EVP_md5();
  if (algo == "sha1") return EVP_sha1();
  if (algo == "sha224") return EVP_sha224();
  if (algo == "sha256") return EVP_sha256();
  if (algo == "sha384") return EVP_sha384();
  if (algo == "sha512") return EVP_sha512();
  return nullptr;
}

}  // namespace

std::string to_hex(const unsigned char* bytes, size_t n) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  out.reserve(n * 2);
  for (size_t i = 0; i < n; ++i) {
    out += digits[bytes[i] >> 4];
    out += digits[bytes[i] & 0xF];
  }
  return out;
}

Hasher::Hasher(std::string_view algo) : ctx_(nullptr) {
  const EVP_MD* md = digest_by_name(algo);
  if (!md) throw std::runtime_error("unsupported digest '" + std::string(algo) + "'");
  auto* ctx = EVP_MD_CTX_new();
  if (!ctx || EVP_DigestInit_ex(ctx, md, nullptr) != 1) {
    EVP_MD_CTX_free(ctx);
    throw std::runtime_error("OpenSSL cannot compute " + std::string(algo) + " digests");
  }
  ctx_ = ctx;
}
Hasher::~Hasher() { EVP_MD_CTX_free(static_cast<EVP_MD_CTX*>(ctx_)); }
void Hasher::update(const void* data, size_t n) { EVP_DigestUpdate(static_cast<EVP_MD_CTX*>(ctx_), data, n); }
std::string Hasher::hex() {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned len = 0;
  EVP_DigestFinal_ex(static_cast<EVP_MD_CTX*>(ctx_), out, &len);
  return to_hex(out, len);
}

bool is_supported_digest(std::string_view algo) { return digest_by_name(algo) != nullptr; }

std::string sha256_hex(std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned n = 0;
  EVP_Digest(data.data(), data.size(), md, &n, EVP_sha256(), nullptr);
  return to_hex(md, n);
}

std::string file_digest_hex(const std::filesystem::path& path, std::string_view algo) {
  Hasher hasher(algo);
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) throw std::runtime_error("cannot read " + path.string() + ": " + std::strerror(errno));
  std::vector<char> buf(1 << 20);
  while (true) {
    ssize_t n = ::read(fd.get(), buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      throw std::runtime_error("cannot read " + path.string() + ": " + std::strerror(errno));
    }
    if (n == 0) break;
    hasher.update(buf.data(), static_cast<size_t>(n));
  }
  return hasher.hex();
}

std::string uuid_v4() {
  unsigned char b[16];
  if (RAND_bytes(b, sizeof b) != 1) throw std::runtime_error("no randomness available for a UUID");
  b[6] = (b[6] & 0x0F) | 0x40;
  b[8] = (b[8] & 0x3F) | 0x80;
  std::string h = to_hex(b, 16);
  return h.substr(0, 8) + "-" + h.substr(8, 4) + "-" + h.substr(12, 4) + "-" + h.substr(16, 4) + "-" + h.substr(20);
}

std::string join(const std::vector<std::string>& parts, std::string_view sep) {
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) {
    if (i) out += sep;
    out += parts[i];
  }
  return out;
}

std::vector<std::string> split(std::string_view s, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    size_t p = s.find(sep, start);
    if (p == std::string_view::npos) {
      out.emplace_back(s.substr(start));
      return out;
    }
    out.emplace_back(s.substr(start, p - start));
    start = p + 1;
  }
}

std::string trim(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return std::string(s.substr(b, e - b));
}

std::string strip_ansi(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\x1b' && i + 1 < s.size() && s[i + 1] == '[') {
      i += 2;
      while (i < s.size() && (std::isdigit(static_cast<unsigned char>(s[i])) != 0 || s[i] == ';')) ++i;
      continue;
    }
    out += s[i];
  }
  return out;
}

bool glob_match(std::string_view pattern, std::string_view text) {
  return fnmatch(std::string(pattern).c_str(), std::string(text).c_str(), 0) == 0;
}

std::string current_user() {
  if (const char* u = std::getenv("USER"); u && *u) return u;
  if (struct passwd* pw = getpwuid(getuid())) return pw->pw_name;
  return std::to_string(getuid());
}

std::string hostname() {
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) != 0) return "localhost";
  return buf;
}

std::string format_rfc3339(std::chrono::system_clock::time_point t, bool milliseconds) {
  auto ms = std::chrono::floor<std::chrono::milliseconds>(t.time_since_epoch()).count();
  std::time_t secs = static_cast<std::time_t>(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[40];
  size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  std::string out(buf, n);
  if (milliseconds) {
    char frac[8];
    std::snprintf(frac, sizeof frac, ".%03d", static_cast<int>(ms - static_cast<int64_t>(secs) * 1000));
    out += frac;
  }
  return out + "Z";
}

std::optional<int64_t> parse_rfc3339_seconds(std::string_view text) {
  // YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM)
  auto digits = [&](size_t at, size_t n) -> std::optional<int> {
    if (at + n > text.size()) return std::nullopt;
    int v = 0;
    for (size_t i = at; i < at + n; ++i) {
      if (text[i] < '0' || text[i] > '9') return std::nullopt;
      v = v * 10 + (text[i] - '0');
    }
    return v;
  };
  auto year = digits(0, 4), month = digits(5, 2), day = digits(8, 2);
  auto hour = digits(11, 2), minute = digits(14, 2), second = digits(17, 2);
  if (!year || !month || !day || !hour || !minute || !second || text.size() < 20 || text[4] != '-' || text[7] != '-' ||
      (text[10] != 'T' && text[10] != 't' && text[10] != ' ') || text[13] != ':' || text[16] != ':')
    return std::nullopt;
  std::chrono::year_month_day ymd{std::chrono::year{*year}, std::chrono::month{static_cast<unsigned>(*month)},
                                  std::chrono::day{static_cast<unsigned>(*day)}};
  if (!ymd.ok() || *hour > 23 || *minute > 59 || *second > 60) return std::nullopt;
  size_t at = 19;
  if (text[at] == '.') {
    ++at;
    size_t start = at;
    while (at < text.size() && text[at] >= '0' && text[at] <= '9') ++at;
    if (at == start) return std::nullopt;
  }
  int64_t offset = 0;
  if (at < text.size() && (text[at] == 'Z' || text[at] == 'z') && at + 1 == text.size()) {
    offset = 0;
  } else if (at < text.size() && (text[at] == '+' || text[at] == '-') && at + 6 == text.size() && text[at + 3] == ':') {
    auto oh = digits(at + 1, 2), om = digits(at + 4, 2);
    if (!oh || !om || *oh > 23 || *om > 59) return std::nullopt;
    offset = (*oh * 3600 + *om * 60) * (text[at] == '+' ? 1 : -1);
  } else {
    return std::nullopt;
  }
  int64_t days = std::chrono::sys_days(ymd).time_since_epoch().count();
  return days * 86400 + *hour * 3600 + *minute * 60 + *second - offset;
}

}  // namespace imgbake::util
