// cty's date functions: formatdate and timeadd (function/stdlib/datetime.go).
#include <cctype>
#include <cstdio>
#include <ctime>
#include <map>
#include <optional>
#include <regex>

#include "functions_internal.h"

namespace imgbake::hcl {

namespace {

// An RFC 3339 timestamp's fields as written (in its own offset), the offset in minutes and
// the fraction of a second in nanoseconds.
struct Timestamp {
  std::tm tm{};
  int offset = 0;
  int64_t frac_ns = 0;
};

std::optional<Timestamp> parse_rfc3339(const std::string& s) {
  static const std::regex re(R"((\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d+)?(Z|[+-]\d{2}:\d{2}))");
  std::smatch m;
  if (!std::regex_match(s, m, re)) return std::nullopt;
  Timestamp ts;
  ts.tm.tm_year = std::stoi(m[1]) - 1900;
  ts.tm.tm_mon = std::stoi(m[2]) - 1;
  ts.tm.tm_mday = std::stoi(m[3]);
  ts.tm.tm_hour = std::stoi(m[4]);
  ts.tm.tm_min = std::stoi(m[5]);
  ts.tm.tm_sec = std::stoi(m[6]);
  std::string z = m[8];
  if (z != "Z") ts.offset = (z[0] == '-' ? -1 : 1) * (std::stoi(z.substr(1, 2)) * 60 + std::stoi(z.substr(4, 2)));
  if (m[7].matched) {
    std::string f = std::string(m[7]).substr(1, 9);
    f.resize(9, '0');
    ts.frac_ns = std::stoll(f);
  }
  return ts;
}

// cty's formatdate: YYYY YY MMMM MMM MM M DD D EEEE EEE hh h HH H AA aa mm m ss s ZZZZZ ZZZZ
// ZZZ Z and 'quoted literals'.
std::string format_date(const std::string& spec, const std::string& rfc3339) {
  std::optional<Timestamp> ts = parse_rfc3339(rfc3339);
  if (!ts) throw FunctionError("not a valid RFC3339 timestamp: \"" + rfc3339 + "\"", 1);
  std::tm tm = ts->tm;
  int off = ts->offset;
  {
    std::tm copy = tm;
    time_t t = timegm(&copy);
    gmtime_r(&t, &copy);
    tm.tm_wday = copy.tm_wday;
  }
  static const char* months[] = {"January", "February", "March",     "April",   "May",      "June",
                                 "July",    "August",   "September", "October", "November", "December"};
  static const char* days[] = {"Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"};
  auto two = [](int n) { return (n < 10 ? "0" : "") + std::to_string(n); };
  auto zone = [&](bool colon) {
    int a = off < 0 ? -off : off;
    return std::string(off < 0 ? "-" : "+") + two(a / 60) + (colon ? ":" : "") + two(a % 60);
  };
  std::string out;
  for (size_t i = 0; i < spec.size();) {
    char c = spec[i];
    if (c == '\'') {
      size_t close = spec.find('\'', i + 1);
      if (close == std::string::npos) throw FunctionError("unterminated literal '", 0);
      out += close == i + 1 ? "'" : spec.substr(i + 1, close - i - 1);
      i = close + 1;
      continue;
    }
    size_t n = 1;
    while (i + n < spec.size() && spec[i + n] == c) ++n;
    std::string tok = spec.substr(i, n);
    int h12 = tm.tm_hour % 12 == 0 ? 12 : tm.tm_hour % 12;
    if (tok == "YYYY")
      out += std::to_string(tm.tm_year + 1900);
    else if (tok == "YY")
      out += two((tm.tm_year + 1900) % 100);
    else if (tok == "MMMM")
      out += months[tm.tm_mon];
    else if (tok == "MMM")
      out += std::string(months[tm.tm_mon]).substr(0, 3);
    else if (tok == "MM")
      out += two(tm.tm_mon + 1);
    else if (tok == "M")
      out += std::to_string(tm.tm_mon + 1);
    else if (tok == "DD")
      out += two(tm.tm_mday);
    else if (tok == "D")
      out += std::to_string(tm.tm_mday);
    else if (tok == "EEEE")
      out += days[tm.tm_wday];
    else if (tok == "EEE")
      out += std::string(days[tm.tm_wday]).substr(0, 3);
    else if (tok == "hh")
      out += two(tm.tm_hour);
    else if (tok == "h")
      out += std::to_string(tm.tm_hour);
    else if (tok == "HH")
      out += two(h12);
    else if (tok == "H")
      out += std::to_string(h12);
    else if (tok == "AA")
      out += tm.tm_hour < 12 ? "AM" : "PM";
    else if (tok == "aa")
      out += tm.tm_hour < 12 ? "am" : "pm";
    else if (tok == "mm")
      out += two(tm.tm_min);
    else if (tok == "m")
      out += std::to_string(tm.tm_min);
    else if (tok == "ss")
      out += two(tm.tm_sec);
    else if (tok == "s")
      out += std::to_string(tm.tm_sec);
    else if (tok == "ZZZZZ")
      out += zone(true);
    else if (tok == "ZZZZ")
      out += zone(false);
    else if (tok == "ZZZ")
      out += off == 0 ? "UTC" : zone(false);
    else if (tok == "Z")
      out += off == 0 ? "Z" : zone(true);
    else if (std::isalpha(static_cast<unsigned char>(c)))
      throw FunctionError("invalid date format verb \"" + tok + "\": quote literal text with '", 0);
    else
      out += tok;
    i += n;
  }
  return out;
}

// Go's time.ParseDuration, in nanoseconds.
int64_t parse_go_duration(const std::string& text) {
  auto invalid = [&] { return FunctionError("time: invalid duration \"" + text + "\""); };
  std::string_view s = text;
  bool neg = false;
  if (!s.empty() && (s[0] == '-' || s[0] == '+')) {
    neg = s[0] == '-';
    s.remove_prefix(1);
  }
  if (s == "0") return 0;
  if (s.empty()) throw invalid();
  long double total = 0;
  while (!s.empty()) {
    size_t i = 0;
    while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i;
    size_t int_end = i;
    size_t frac_end = i;
    if (i < s.size() && s[i] == '.') {
      frac_end = ++i;
      while (frac_end < s.size() && std::isdigit(static_cast<unsigned char>(s[frac_end]))) ++frac_end;
    }
    if (int_end == 0 && frac_end <= int_end + 1) throw invalid();
    long double v = std::stold("0" + std::string(s.substr(0, frac_end)));
    size_t u = frac_end;
    while (u < s.size() && s[u] != '.' && !std::isdigit(static_cast<unsigned char>(s[u]))) ++u;
    std::string unit(s.substr(frac_end, u - frac_end));
    if (unit.empty()) throw FunctionError("time: missing unit in duration \"" + text + "\"");
    static const std::map<std::string, long double> units = {{"ns", 1},        {"us", 1e3},  {"\u00b5s", 1e3},
                                                             {"\u03bcs", 1e3}, {"ms", 1e6},  {"s", 1e9},
                                                             {"m", 60e9},      {"h", 3600e9}};
    auto it = units.find(unit);
    if (it == units.end()) throw FunctionError("time: unknown unit \"" + unit + "\" in duration \"" + text + "\"");
    total += v * it->second;
    s.remove_prefix(u);
  }
  if (total > 9.223372036854775807e18L) throw invalid();
  auto ns = static_cast<int64_t>(total);
  return neg ? -ns : ns;
}

// A timestamp plus a duration, formatted as Go's time.RFC3339 (in the timestamp's offset,
// whole seconds).
std::string time_add(const std::string& rfc3339, const std::string& duration) {
  std::optional<Timestamp> ts = parse_rfc3339(rfc3339);
  if (!ts) throw FunctionError("not a valid RFC3339 timestamp: cannot use \"" + rfc3339 + "\" as year");
  std::tm tm = ts->tm;
  int off = ts->offset;
  int64_t frac_ns = ts->frac_ns;
  int64_t ns = parse_go_duration(duration);
  // Seconds since the epoch in the timestamp's own offset, then the duration.
  int64_t local = static_cast<int64_t>(timegm(&tm));
  int64_t total_ns = frac_ns + ns;
  int64_t secs = local + total_ns / 1000000000;
  if (total_ns % 1000000000 < 0) --secs;
  auto t = static_cast<time_t>(secs);
  std::tm out{};
  gmtime_r(&t, &out);
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &out);
  std::string r = buf;
  if (off == 0) return r + "Z";
  int a = off < 0 ? -off : off;
  char zone[16];
  std::snprintf(zone, sizeof zone, "%c%02d:%02d", off < 0 ? '-' : '+', a / 60, a % 60);
  return r + zone;
}

}  // namespace

void add_datetime_functions(std::map<std::string, Function>& fs) {
  Function formatdate;
  formatdate.params = {{"format", Type::string()}, {"time", Type::string()}};
  formatdate.result_type = Type::string();
  formatdate.impl = [](const std::vector<Value>& a) {
    return Value::string(format_date(a[0].as_string(), a[1].as_string()));
  };
  fs["formatdate"] = formatdate;

  Function timeadd;
  timeadd.params = {{"timestamp", Type::string()}, {"duration", Type::string()}};
  timeadd.result_type = Type::string();
  timeadd.impl = [](const std::vector<Value>& a) {
    return Value::string(time_add(a[0].as_string(), a[1].as_string()));
  };
  fs["timeadd"] = timeadd;
}

}  // namespace imgbake::hcl
