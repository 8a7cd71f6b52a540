// Port of Go's time.Time.Format (src/time/format.go: nextStdChunk/appendFormat) for
// UTC times, plus the image-name cleaning template functions of Packer's builders.
#include "gotime.h"

#include <array>
#include <cstdint>

namespace imgbake::gotime {

namespace {

// Layout element kinds, mirroring Go's std* constants.
enum class Std {
  kNone,
  kLongMonth,              // "January"
  kMonth,                  // "Jan"
  kNumMonth,               // "1"
  kZeroMonth,              // "01"
  kLongWeekDay,            // "Monday"
  kWeekDay,                // "Mon"
  kDay,                    // "2"
  kUnderDay,               // "_2"
  kZeroDay,                // "02"
  kUnderYearDay,           // "__2"
  kZeroYearDay,            // "002"
  kHour,                   // "15"
  kHour12,                 // "3"
  kZeroHour12,             // "03"
  kMinute,                 // "4"
  kZeroMinute,             // "04"
  kSecond,                 // "5"
  kZeroSecond,             // "05"
  kLongYear,               // "2006"
  kYear,                   // "06"
  kPM,                     // "PM"
  kpm,                     // "pm"
  kTZ,                     // "MST"
  kISO8601TZ,              // "Z0700"
  kISO8601SecondsTZ,       // "Z070000"
  kISO8601ShortTZ,         // "Z07"
  kISO8601ColonTZ,         // "Z07:00"
  kISO8601ColonSecondsTZ,  // "Z07:00:00"
  kNumTZ,                  // "-0700"
  kNumSecondsTZ,           // "-070000"
  kNumShortTZ,             // "-07"
  kNumColonTZ,             // "-07:00"
  kNumColonSecondsTZ,      // "-07:00:00"
  kFracSecond0,            // ".0", ".00", ... trailing zeros kept
  kFracSecond9,            // ".9", ".99", ... trailing zeros trimmed
};

struct Chunk {
  std::string_view prefix;  // literal text before the element
  Std std = Std::kNone;
  std::string_view suffix;  // rest of the layout after the element
  int frac_digits = 0;      // kFracSecond*: number of digits requested
  char frac_sep = '.';      // kFracSecond*: '.' or ','
};

constexpr std::array<Std, 6> kStd0x = {Std::kZeroMonth,  Std::kZeroDay,    Std::kZeroHour12,
                                       Std::kZeroMinute, Std::kZeroSecond, Std::kYear};

constexpr std::array<const char*, 7> kLongDayNames = {"Sunday",   "Monday", "Tuesday", "Wednesday",
                                                      "Thursday", "Friday", "Saturday"};
constexpr std::array<const char*, 12> kLongMonthNames = {"January",   "February", "March",    "April",
                                                         "May",       "June",     "July",     "August",
                                                         "September", "October",  "November", "December"};

bool starts_with_lower(std::string_view s) { return !s.empty() && s[0] >= 'a' && s[0] <= 'z'; }

bool is_digit_at(std::string_view s, size_t i) { return i < s.size() && s[i] >= '0' && s[i] <= '9'; }

Chunk make_chunk(std::string_view layout, size_t start, Std std, size_t len) {
  return Chunk{layout.substr(0, start), std, layout.substr(start + len)};
}

// Finds the first layout element in `layout`; same scan order and precedence as Go's nextStdChunk.
Chunk next_std_chunk(std::string_view layout) {
  const size_t n = layout.size();
  auto at = [&](size_t i, std::string_view word) { return layout.substr(i, word.size()) == word; };
  for (size_t i = 0; i < n; ++i) {
    switch (layout[i]) {
      case 'J':  // January, Jan
        if (at(i, "Jan")) {
          if (at(i, "January")) return make_chunk(layout, i, Std::kLongMonth, 7);
          if (!starts_with_lower(layout.substr(i + 3))) return make_chunk(layout, i, Std::kMonth, 3);
        }
        break;
      case 'M':  // Monday, Mon, MST
        if (at(i, "Mon")) {
          if (at(i, "Monday")) return make_chunk(layout, i, Std::kLongWeekDay, 6);
          if (!starts_with_lower(layout.substr(i + 3))) return make_chunk(layout, i, Std::kWeekDay, 3);
        }
        if (at(i, "MST")) return make_chunk(layout, i, Std::kTZ, 3);
        break;
      case '0':  // 01, 02, 03, 04, 05, 06, 002
        if (i + 1 < n && layout[i + 1] >= '1' && layout[i + 1] <= '6')
          return make_chunk(layout, i, kStd0x[static_cast<size_t>(layout[i + 1] - '1')], 2);
        if (at(i, "002")) return make_chunk(layout, i, Std::kZeroYearDay, 3);
        break;
      case '1':  // 15, 1
        if (at(i, "15")) return make_chunk(layout, i, Std::kHour, 2);
        return make_chunk(layout, i, Std::kNumMonth, 1);
      case '2':  // 2006, 2
        if (at(i, "2006")) return make_chunk(layout, i, Std::kLongYear, 4);
        return make_chunk(layout, i, Std::kDay, 1);
      case '_':  // _2, _2006, __2
        if (at(i, "_2")) {
          // "_2006" is a literal '_' followed by the long year.
          if (at(i, "_2006")) return make_chunk(layout, i + 1, Std::kLongYear, 4);
          return make_chunk(layout, i, Std::kUnderDay, 2);
        }
        if (at(i, "__2")) return make_chunk(layout, i, Std::kUnderYearDay, 3);
        break;
      case '3': return make_chunk(layout, i, Std::kHour12, 1);
      case '4': return make_chunk(layout, i, Std::kMinute, 1);
      case '5': return make_chunk(layout, i, Std::kSecond, 1);
      case 'P':  // PM
        if (at(i, "PM")) return make_chunk(layout, i, Std::kPM, 2);
        break;
      case 'p':  // pm
        if (at(i, "pm")) return make_chunk(layout, i, Std::kpm, 2);
        break;
      case '-':  // -070000, -07:00:00, -0700, -07:00, -07
        if (at(i, "-070000")) return make_chunk(layout, i, Std::kNumSecondsTZ, 7);
        if (at(i, "-07:00:00")) return make_chunk(layout, i, Std::kNumColonSecondsTZ, 9);
        if (at(i, "-0700")) return make_chunk(layout, i, Std::kNumTZ, 5);
        if (at(i, "-07:00")) return make_chunk(layout, i, Std::kNumColonTZ, 6);
        if (at(i, "-07")) return make_chunk(layout, i, Std::kNumShortTZ, 3);
        break;
      case 'Z':  // Z070000, Z07:00:00, Z0700, Z07:00, Z07
        if (at(i, "Z070000")) return make_chunk(layout, i, Std::kISO8601SecondsTZ, 7);
        if (at(i, "Z07:00:00")) return make_chunk(layout, i, Std::kISO8601ColonSecondsTZ, 9);
        if (at(i, "Z0700")) return make_chunk(layout, i, Std::kISO8601TZ, 5);
        if (at(i, "Z07:00")) return make_chunk(layout, i, Std::kISO8601ColonTZ, 6);
        if (at(i, "Z07")) return make_chunk(layout, i, Std::kISO8601ShortTZ, 3);
        break;
      case '.':
      case ',':  // .000, ,000, .999, ,999: a run of one repeated digit, not followed by another digit
        if (i + 1 < n && (layout[i + 1] == '0' || layout[i + 1] == '9')) {
          const char ch = layout[i + 1];
          size_t j = i + 1;
          while (j < n && layout[j] == ch) ++j;
          if (!is_digit_at(layout, j)) {
            Chunk c = make_chunk(layout, i, ch == '9' ? Std::kFracSecond9 : Std::kFracSecond0, j - i);
            c.frac_digits = static_cast<int>((j - (i + 1)) & 0xfff);  // Go packs the count into 12 bits
            c.frac_sep = layout[i];
            return c;
          }
        }
        break;
      default: break;
    }
  }
  return Chunk{layout, Std::kNone, {}};
}

// Go's appendInt: decimal form of x, zero-padded to `width` digits (sign not counted).
void append_int(std::string& out, int64_t x, int width) {
  uint64_t u = static_cast<uint64_t>(x);
  if (x < 0) {
    out.push_back('-');
    u = 0 - u;
  }
  char buf[24];
  int len = 0;
  do {
    buf[len++] = static_cast<char>('0' + u % 10);
    u /= 10;
  } while (u != 0);
  for (int pad = width - len; pad > 0; --pad) out.push_back('0');
  while (len > 0) out.push_back(buf[--len]);
}

// Go's appendNano: fractional second for the kFracSecond* elements.
void append_nano(std::string& out, int64_t nanosec, const Chunk& c) {
  const bool trim = c.std == Std::kFracSecond9;
  const int n = c.frac_digits;
  if (trim && (n == 0 || nanosec == 0)) return;
  const size_t start = out.size();
  out.push_back(c.frac_sep);
  append_int(out, nanosec, 9);
  if (n < 9) out.resize(out.size() - static_cast<size_t>(9 - n));
  if (trim) {
    while (out.size() > start && out.back() == '0') out.pop_back();
    if (out.size() > start && out.back() == c.frac_sep) out.pop_back();
  }
}

}  // namespace

std::string format(std::string_view layout, std::chrono::system_clock::time_point t) {
  using namespace std::chrono;
  const auto ns = time_point_cast<nanoseconds>(t);
  const sys_days day_point = floor<days>(ns);
  const year_month_day ymd{day_point};
  const hh_mm_ss<nanoseconds> tod{ns - day_point};

  const int64_t year = static_cast<int>(ymd.year());
  const int month = static_cast<int>(static_cast<unsigned>(ymd.month()));
  const int day = static_cast<int>(static_cast<unsigned>(ymd.day()));
  const int yday = static_cast<int>((day_point - sys_days{ymd.year() / January / 1}).count()) + 1;
  const unsigned wday = weekday{day_point}.c_encoding();  // 0 = Sunday
  const int hour = static_cast<int>(tod.hours().count());
  const int min = static_cast<int>(tod.minutes().count());
  const int sec = static_cast<int>(tod.seconds().count());
  const int64_t nanosec = tod.subseconds().count();
  const int hour12 = hour % 12 == 0 ? 12 : hour % 12;

  std::string out;
  out.reserve(layout.size() + 10);
  while (!layout.empty()) {
    const Chunk c = next_std_chunk(layout);
    out.append(c.prefix);
    if (c.std == Std::kNone) break;
    layout = c.suffix;

    switch (c.std) {
      case Std::kYear: append_int(out, (year < 0 ? -year : year) % 100, 2); break;
      case Std::kLongYear: append_int(out, year, 4); break;
      case Std::kMonth: out.append(std::string_view(kLongMonthNames[month - 1]).substr(0, 3)); break;
      case Std::kLongMonth: out.append(kLongMonthNames[month - 1]); break;
      case Std::kNumMonth: append_int(out, month, 0); break;
      case Std::kZeroMonth: append_int(out, month, 2); break;
      case Std::kWeekDay: out.append(std::string_view(kLongDayNames[wday]).substr(0, 3)); break;
      case Std::kLongWeekDay: out.append(kLongDayNames[wday]); break;
      case Std::kDay: append_int(out, day, 0); break;
      case Std::kUnderDay:
        if (day < 10) out.push_back(' ');
        append_int(out, day, 0);
        break;
      case Std::kZeroDay: append_int(out, day, 2); break;
      case Std::kUnderYearDay:
        if (yday < 100) out.append(yday < 10 ? "  " : " ");
        append_int(out, yday, 0);
        break;
      case Std::kZeroYearDay: append_int(out, yday, 3); break;
      case Std::kHour: append_int(out, hour, 2); break;
      case Std::kHour12: append_int(out, hour12, 0); break;
      case Std::kZeroHour12: append_int(out, hour12, 2); break;
      case Std::kMinute: append_int(out, min, 0); break;
      case Std::kZeroMinute: append_int(out, min, 2); break;
      case Std::kSecond: append_int(out, sec, 0); break;
      case Std::kZeroSecond: append_int(out, sec, 2); break;
      case Std::kPM: out.append(hour >= 12 ? "PM" : "AM"); break;
      case Std::kpm: out.append(hour >= 12 ? "pm" : "am"); break;
      // The time is always UTC: offset 0, so the ISO 8601 "Z" forms print "Z".
      case Std::kISO8601TZ:
      case Std::kISO8601SecondsTZ:
      case Std::kISO8601ShortTZ:
      case Std::kISO8601ColonTZ:
      case Std::kISO8601ColonSecondsTZ: out.push_back('Z'); break;
      case Std::kNumTZ: out.append("+0000"); break;
      case Std::kNumSecondsTZ: out.append("+000000"); break;
      case Std::kNumShortTZ: out.append("+00"); break;
      case Std::kNumColonTZ: out.append("+00:00"); break;
      case Std::kNumColonSecondsTZ: out.append("+00:00:00"); break;
      case Std::kTZ: out.append("UTC"); break;
      case Std::kFracSecond0:
      case Std::kFracSecond9: append_nano(out, nanosec, c); break;
      case Std::kNone: break;
    }
  }
  return out;
}

namespace {

// Length in bytes of a valid UTF-8 sequence starting at s[i], or 0 if the bytes there are not valid
// UTF-8 (Go's utf8.DecodeRuneInString then reports RuneError with width 1).
size_t utf8_width(std::string_view s, size_t i, char32_t& rune) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c0 = b(i);
  size_t width;
  unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (c0 >= 0xC2 && c0 <= 0xDF) {
    width = 2;
  } else if (c0 >= 0xE0 && c0 <= 0xEF) {
    width = 3;
    if (c0 == 0xE0) lo = 0xA0;  // no overlong encodings
    if (c0 == 0xED) hi = 0x9F;  // no surrogates
  } else if (c0 >= 0xF0 && c0 <= 0xF4) {
    width = 4;
    if (c0 == 0xF0) lo = 0x90;  // no overlong encodings
    if (c0 == 0xF4) hi = 0x8F;  // nothing above U+10FFFF
  } else {
    return 0;
  }
  if (i + width > s.size()) return 0;
  if (b(i + 1) < lo || b(i + 1) > hi) return 0;
  for (size_t k = 2; k < width; ++k)
    if (b(i + k) < 0x80 || b(i + k) > 0xBF) return 0;
  char32_t r = c0 & (width == 2 ? 0x1F : width == 3 ? 0x0F : 0x07);
  for (size_t k = 1; k < width; ++k) r = (r << 6) | (b(i + k) & 0x3F);
  rune = r;
  return width;
}

// Runes whose Go unicode.ToLower (simple case mapping, Unicode 13-15) has a different UTF-8 length
// than the rune itself; `lower` is the lowered rune when it is ASCII (U+0130 LATIN CAPITAL LETTER I
// WITH DOT ABOVE -> 'i', U+212A KELVIN SIGN -> 'k'), else 0.
struct LowerLen {
  char32_t rune;
  size_t len;
  char lower;
};
// clang-format off
constexpr std::array<LowerLen, 25> kLowerLenChanges = {{
    {0x0130, 1, 'i'}, {0x023A, 3, 0}, {0x023E, 3, 0}, {0x1E9E, 2, 0}, {0x2126, 2, 0},
    {0x212A, 1, 'k'}, {0x212B, 2, 0}, {0x2C62, 2, 0}, {0x2C64, 2, 0}, {0x2C6D, 2, 0},
    {0x2C6E, 2, 0},   {0x2C6F, 2, 0}, {0x2C70, 2, 0}, {0x2C7E, 2, 0}, {0x2C7F, 2, 0},
    {0xA78D, 2, 0},   {0xA7AA, 2, 0}, {0xA7AB, 2, 0}, {0xA7AC, 2, 0}, {0xA7AD, 2, 0},
    {0xA7AE, 2, 0},   {0xA7B0, 2, 0}, {0xA7B1, 2, 0}, {0xA7B2, 2, 0}, {0xA7C5, 2, 0},
}};
// clang-format on

}  // namespace

// Packer has no core clean_resource_name: each builder registers its own. This is the
// googlecompute builder's (Packer 1.5-1.6 builder/googlecompute/template_funcs.go,
// templateCleanImageName):
//
//   if validImageName.MatchString(s) { return s }   // ^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$
//   b := []byte(strings.ToLower(s))
//   every byte not in [a-z0-9] becomes '-'
//
// There is no truncation (an older googlecompute clean_image_name cut at 63 bytes; the 1.5/1.6
// clean_resource_name does not, as its docs say) and the pass-through of already valid names is
// the identity anyway. strings.ToLower is Unicode-aware and
// works before the byte-wise replacement, so a non-ASCII rune becomes as many '-' as its lower case
// has UTF-8 bytes (KELVIN SIGN and U+0130 even lower to ASCII 'k' and 'i'), and each invalid UTF-8
// byte becomes U+FFFD, i.e. "---".
std::string clean_resource_name(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      const char lc = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : static_cast<char>(c);
      out.push_back(((lc >= 'a' && lc <= 'z') || (lc >= '0' && lc <= '9')) ? lc : '-');
      ++i;
      continue;
    }
    char32_t rune = 0;
    const size_t width = utf8_width(s, i, rune);
    if (width == 0) {  // invalid byte: ToLower writes U+FFFD (3 bytes)
      out.append(3, '-');
      ++i;
      continue;
    }
    size_t lower_len = width;
    char lower_ascii = 0;
    for (const auto& e : kLowerLenChanges) {
      if (e.rune == rune) {
        lower_len = e.len;
        lower_ascii = e.lower;
        break;
      }
    }
    if (lower_ascii != 0) {
      out.push_back(lower_ascii);
    } else {
      out.append(lower_len, '-');
    }
    i += width;
  }
  return out;
}

// Packer's amazon builder templateCleanAMIName (builder/amazon/common/template_funcs.go), registered
// as clean_ami_name up to Packer 1.4 and as clean_resource_name for the amazon builders since 1.5
// (Packer 1.6 no longer defines clean_ami_name; `packer fix` rewrites it). Byte-wise: every byte
// that is not [A-Za-z0-9] or one of ( ) [ ] space . / - ' @ _ becomes '-'; no case change, no
// truncation, multi-byte UTF-8 characters become one '-' per byte.
std::string clean_ami_name(std::string_view s) {
  static constexpr std::string_view kAllowed = "()[] ./-'@_";
  std::string out(s);
  for (char& c : out) {
    const bool alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    if (!alnum && kAllowed.find(c) == std::string_view::npos) c = '-';
  }
  return out;
}

}  // namespace imgbake::gotime
