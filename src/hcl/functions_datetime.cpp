// cty's date functions: formatdate (function/stdlib/datetime.go).
#include <cctype>
#include <ctime>
#include <regex>

#include "functions_internal.h"

namespace imgbake::hcl {

namespace {

// cty's formatdate: YYYY YY MMMM MMM MM M DD D EEEE EEE hh h HH H AA aa mm m ss s ZZZZZ ZZZZ
// ZZZ Z and 'quoted literals'.
std::string format_date(const std::string& spec, const std::string& rfc3339) {
  std::tm tm{};
  int off = 0;
  {
    static const std::regex re(R"((\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d+)?(Z|[+-]\d{2}:\d{2}))");
    std::smatch m;
    if (!std::regex_match(rfc3339, m, re)) throw FunctionError("not a valid RFC3339 timestamp: \"" + rfc3339 + "\"", 1);
    tm.tm_year = std::stoi(m[1]) - 1900;
    tm.tm_mon = std::stoi(m[2]) - 1;
    tm.tm_mday = std::stoi(m[3]);
    tm.tm_hour = std::stoi(m[4]);
    tm.tm_min = std::stoi(m[5]);
    tm.tm_sec = std::stoi(m[6]);
    std::string z = m[8];
    if (z != "Z") off = (z[0] == '-' ? -1 : 1) * (std::stoi(z.substr(1, 2)) * 60 + std::stoi(z.substr(4, 2)));
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

}  // namespace

void add_datetime_functions(std::map<std::string, Function>& fs) {
  Function formatdate;
  formatdate.params = {{"format", Type::string()}, {"time", Type::string()}};
  formatdate.result_type = Type::string();
  formatdate.impl = [](const std::vector<Value>& a) {
    return Value::string(format_date(a[0].as_string(), a[1].as_string()));
  };
  fs["formatdate"] = formatdate;
}

}  // namespace imgbake::hcl
