// Expected strings are worked out by hand from Go's time.Format rules (src/time/format.go) and,
// where noted, checked against Packer 1.6.6 output.
#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "template/gotime.h"

namespace {

using imgbake::gotime::clean_ami_name;
using imgbake::gotime::clean_resource_name;
using imgbake::gotime::format;
using std::chrono::system_clock;

system_clock::time_point make_time(int y, unsigned mo, unsigned d, int h, int mi, int s, long long ns) {
  using namespace std::chrono;
  const sys_days date = year{y} / month{mo} / day{d};
  return system_clock::time_point{duration_cast<system_clock::duration>(date.time_since_epoch() + hours{h} +
                                                                        minutes{mi} + seconds{s} + nanoseconds{ns})};
}

// Sunday 2026-11-22T02:33:06.120Z, day 326 of the year.
const system_clock::time_point kT = make_time(2026, 11, 22, 2, 33, 6, 120'000'000);
// Friday 2024-01-05T13:07:09.000000005Z, day 5 of the year.
const system_clock::time_point kEarly = make_time(2024, 1, 5, 13, 7, 9, 5);

TEST(GoTimeFormat, EmptyLayout) { EXPECT_EQ(format("", kT), ""); }

TEST(GoTimeFormat, StandardLayouts) {
  EXPECT_EQ(format("2006-01-02T15:04:05Z07:00", kT), "2026-11-22T02:33:06Z");                 // RFC3339
  EXPECT_EQ(format("2006-01-02T15:04:05.999999999Z07:00", kT), "2026-11-22T02:33:06.12Z");    // RFC3339Nano
  EXPECT_EQ(format("Mon Jan _2 15:04:05 2006", kT), "Sun Nov 22 02:33:06 2026");              // ANSIC
  EXPECT_EQ(format("Mon Jan _2 15:04:05 MST 2006", kT), "Sun Nov 22 02:33:06 UTC 2026");      // UnixDate
  EXPECT_EQ(format("Mon Jan 02 15:04:05 -0700 2006", kT), "Sun Nov 22 02:33:06 +0000 2026");  // RubyDate
  EXPECT_EQ(format("02 Jan 06 15:04 MST", kT), "22 Nov 26 02:33 UTC");                        // RFC822
  EXPECT_EQ(format("Monday, 02-Jan-06 15:04:05 MST", kT), "Sunday, 22-Nov-26 02:33:06 UTC");  // RFC850
  EXPECT_EQ(format("Mon, 02 Jan 2006 15:04:05 MST", kT), "Sun, 22 Nov 2026 02:33:06 UTC");    // RFC1123
  EXPECT_EQ(format("Mon, 02 Jan 2006 15:04:05 -0700", kT), "Sun, 22 Nov 2026 02:33:06 +0000");
  EXPECT_EQ(format("3:04PM", kT), "2:33AM");                                          // Kitchen
  EXPECT_EQ(format("01/02 03:04:05PM '06 -0700", kT), "11/22 02:33:06AM '26 +0000");  // Layout
  EXPECT_EQ(format("Jan _2 15:04:05.000", kT), "Nov 22 02:33:06.120");                // StampMilli
  EXPECT_EQ(format("2006-01-02 15:04:05", kT), "2026-11-22 02:33:06");                // DateTime
}

TEST(GoTimeFormat, ExampleFromPackerRun) {
  // The same layout through Packer 1.6.6's isotime printed "2026-11-22 Sun Nov 02:36:56.658 UTC".
  EXPECT_EQ(format("2006-01-02 Mon Jan 15:04:05.000 MST", kT), "2026-11-22 Sun Nov 02:33:06.120 UTC");
  EXPECT_EQ(format("Jan _2 03:04PM", kT), "Nov 22 02:33AM");
}

TEST(GoTimeFormat, DateElements) {
  EXPECT_EQ(format("2006", kT), "2026");
  EXPECT_EQ(format("06", kT), "26");
  EXPECT_EQ(format("01", kT), "11");
  EXPECT_EQ(format("1", kT), "11");
  EXPECT_EQ(format("Jan", kT), "Nov");
  EXPECT_EQ(format("January", kT), "November");
  EXPECT_EQ(format("02", kT), "22");
  EXPECT_EQ(format("2", kT), "22");
  EXPECT_EQ(format("_2", kT), "22");
  EXPECT_EQ(format("002", kT), "326");
  EXPECT_EQ(format("__2", kT), "326");
  EXPECT_EQ(format("Mon", kT), "Sun");
  EXPECT_EQ(format("Monday", kT), "Sunday");

  EXPECT_EQ(format("06", kEarly), "24");
  EXPECT_EQ(format("01", kEarly), "01");
  EXPECT_EQ(format("1", kEarly), "1");
  EXPECT_EQ(format("02", kEarly), "05");
  EXPECT_EQ(format("2", kEarly), "5");
  EXPECT_EQ(format("_2", kEarly), " 5");
  EXPECT_EQ(format("002", kEarly), "005");
  EXPECT_EQ(format("__2", kEarly), "  5");
  EXPECT_EQ(format("Monday Mon January Jan", kEarly), "Friday Fri January Jan");
}

TEST(GoTimeFormat, DayOfYearPadding) {
  const auto feb = make_time(2024, 2, 29, 0, 0, 0, 0);  // leap day: 31 + 29
  EXPECT_EQ(format("__2|002", feb), " 60|060");
  const auto dec = make_time(2024, 12, 31, 0, 0, 0, 0);
  EXPECT_EQ(format("__2|002", dec), "366|366");
  const auto dec2 = make_time(2025, 12, 31, 0, 0, 0, 0);
  EXPECT_EQ(format("__2|002", dec2), "365|365");
}

TEST(GoTimeFormat, ClockElements) {
  EXPECT_EQ(format("15", kT), "02");
  EXPECT_EQ(format("03", kT), "02");
  EXPECT_EQ(format("3", kT), "2");
  EXPECT_EQ(format("04", kT), "33");
  EXPECT_EQ(format("4", kT), "33");
  EXPECT_EQ(format("05", kT), "06");
  EXPECT_EQ(format("5", kT), "6");
  EXPECT_EQ(format("PM pm", kT), "AM am");

  EXPECT_EQ(format("15 03 3 04 4 05 5 PM pm", kEarly), "13 01 1 07 7 09 9 PM pm");
}

TEST(GoTimeFormat, NoonAndMidnightAreTwelve) {
  const auto midnight = make_time(2026, 1, 1, 0, 5, 0, 0);
  EXPECT_EQ(format("3:04PM 03 15", midnight), "12:05AM 12 00");
  const auto noon = make_time(2026, 1, 1, 12, 0, 0, 0);
  EXPECT_EQ(format("3:04PM 03 15", noon), "12:00PM 12 12");
  const auto late = make_time(2026, 1, 1, 23, 59, 59, 0);
  EXPECT_EQ(format("3:04:05pm 15", late), "11:59:59pm 23");
}

TEST(GoTimeFormat, ZonesAreUtc) {
  EXPECT_EQ(format("MST", kT), "UTC");
  EXPECT_EQ(format("Z07:00", kT), "Z");
  EXPECT_EQ(format("Z0700", kT), "Z");
  EXPECT_EQ(format("Z07", kT), "Z");
  EXPECT_EQ(format("Z07:00:00", kT), "Z");
  EXPECT_EQ(format("Z070000", kT), "Z");
  EXPECT_EQ(format("-07:00", kT), "+00:00");
  EXPECT_EQ(format("-0700", kT), "+0000");
  EXPECT_EQ(format("-07", kT), "+00");
  EXPECT_EQ(format("-07:00:00", kT), "+00:00:00");
  EXPECT_EQ(format("-070000", kT), "+000000");
}

TEST(GoTimeFormat, FractionalSeconds) {
  EXPECT_EQ(format(".000", kT), ".120");
  EXPECT_EQ(format(".000000", kT), ".120000");
  EXPECT_EQ(format(".000000000", kT), ".120000000");
  EXPECT_EQ(format(".0", kT), ".1");
  EXPECT_EQ(format(".999", kT), ".12");
  EXPECT_EQ(format(".999999", kT), ".12");
  EXPECT_EQ(format(".999999999", kT), ".12");
  EXPECT_EQ(format(".9", kT), ".1");
  EXPECT_EQ(format(".99a", kT), ".12a");
  EXPECT_EQ(format("05.000", kT), "06.120");

  // Comma separator (Go 1.17+).
  EXPECT_EQ(format(",000", kT), ",120");
  EXPECT_EQ(format(",999", kT), ",12");
  EXPECT_EQ(format("15:04:05,000", kT), "02:33:06,120");

  // kEarly has 5ns: the trimmed forms drop everything, dot included, when the digits are all zero.
  EXPECT_EQ(format(".999999999", kEarly), ".000000005");
  EXPECT_EQ(format(".99999999", kEarly), "");
  EXPECT_EQ(format(".999", kEarly), "");
  EXPECT_EQ(format("05.999Z", kEarly), "09Z");
  EXPECT_EQ(format(",999", kEarly), "");
  EXPECT_EQ(format(".000", kEarly), ".000");
  EXPECT_EQ(format(".000000000", kEarly), ".000000005");

  const auto whole = make_time(2026, 1, 1, 0, 0, 0, 0);
  EXPECT_EQ(format(".999999999", whole), "");
  EXPECT_EQ(format(".000000", whole), ".000000");

  // More than nine digits requested: still nine digits.
  EXPECT_EQ(format(".0000000000", kT), ".120000000");
  EXPECT_EQ(format(".9999999999", kEarly), ".000000005");
}

TEST(GoTimeFormat, FractionRunMustNotBeFollowedByDigit) {
  // ".0001": not a fraction ('1' follows the zeros); scanning resumes and finds "01" (month).
  EXPECT_EQ(format(".0001", kT), ".0011");
  // ".990": '.', '9', '9' are literal and a lone trailing '0' is literal too.
  EXPECT_EQ(format(".990", kT), ".990");
  // A dot not followed by 0 or 9 is literal.
  EXPECT_EQ(format(".5", kT), ".6");
  EXPECT_EQ(format(".x", kT), ".x");
}

TEST(GoTimeFormat, TokenizerPrecedence) {
  EXPECT_EQ(format("Month", kT), "Month");      // "Mon" followed by a lower-case letter is literal
  EXPECT_EQ(format("Mondays", kT), "Sundays");  // "Monday" is checked before that rule
  EXPECT_EQ(format("Janet", kT), "Janet");
  EXPECT_EQ(format("JanX", kT), "NovX");
  EXPECT_EQ(format("Januaryx", kT), "Novemberx");
  EXPECT_EQ(format("MSTx", kT), "UTCx");
  EXPECT_EQ(format("Jan2006", kT), "Nov2026");
  EXPECT_EQ(format("20061", kT), "202611");  // "2006" then "1"
  EXPECT_EQ(format("200", kT), "2200");      // "2" (day) then literal "00"
  EXPECT_EQ(format("10", kT), "110");        // "1" (month) then a literal '0'
  EXPECT_EQ(format("150405", kT), "023306");
  EXPECT_EQ(format("0002", kT), "0326");  // literal '0' then "002"
  EXPECT_EQ(format("07 08 09 00", kT), "07 08 09 00");
  EXPECT_EQ(format("_2006", kT), "_2026");    // literal '_' then the year (Packer 1.6.6 agrees)
  EXPECT_EQ(format("__2006", kT), "326026");  // "__2", literal '0', "06"
  EXPECT_EQ(format("_x", kT), "_x");
  EXPECT_EQ(format("Pm pM", kT), "Pm pM");
  EXPECT_EQ(format("-08:00 -0", kT), "-08:00 -0");
  EXPECT_EQ(format("Z08 Z", kT), "Z08 Z");
  EXPECT_EQ(format("-07:00:0", kT), "+00:00:0");  // "-07:00" then literal ":0"
  EXPECT_EQ(format("Z07:0", kT), "Z:0");          // "Z07" then literal ":0"
}

TEST(GoTimeFormat, LiteralTextIsCopied) {
  EXPECT_EQ(format("T", kT), "T");
  EXPECT_EQ(format("build-2006 at 15h", kT), "build-2026 at 02h");
  EXPECT_EQ(format("{{}} \"quoted\"", kT), "{{}} \"quoted\"");
  EXPECT_EQ(format("caf\xc3\xa9 2006", kT), "caf\xc3\xa9 2026");
}

TEST(GoTimeFormat, BeforeTheEpoch) {
  // 1969-12-31T23:59:59.5Z was a Wednesday, day 365.
  const auto t = make_time(1969, 12, 31, 23, 59, 59, 500'000'000);
  EXPECT_EQ(format("2006-01-02T15:04:05.000Z07:00 Mon 002", t), "1969-12-31T23:59:59.500Z Wed 365");
  const auto leap = make_time(1900, 3, 1, 6, 0, 0, 0);  // 1900 is not a leap year: 31 + 28 + 1
  EXPECT_EQ(format("Monday 002 06", leap), "Thursday 060 00");
}

TEST(CleanResourceName, GooglecomputeBehaviour) {
  // Cases from Packer's builder/googlecompute/template_funcs_test.go.
  EXPECT_EQ(clean_resource_name("abcde-012345xyz"), "abcde-012345xyz");
  EXPECT_EQ(clean_resource_name("ABCDE-012345xyz"), "abcde-012345xyz");
  EXPECT_EQ(clean_resource_name("abcde-012345v1.0.0"), "abcde-012345v1-0-0");
  // Checked with Packer 1.6.6 (googlecompute image_name validation error echoes the value).
  EXPECT_EQ(clean_resource_name("Hello World v1.0_X"), "hello-world-v1-0-x");
  EXPECT_EQ(clean_resource_name("Hello World"), "hello-world");
  // Packer docs example: "mybuild-{{isotime | clean_resource_name}}".
  EXPECT_EQ(clean_resource_name("mybuild-2017-10-18T02:06:30Z"), "mybuild-2017-10-18t02-06-30z");
  EXPECT_EQ(clean_resource_name(""), "");
  EXPECT_EQ(clean_resource_name("a_b c/d@e'f(g)[h]"), "a-b-c-d-e-f-g--h-");
}

TEST(CleanResourceName, NoTruncation) {
  const std::string long_name(100, 'X');
  EXPECT_EQ(clean_resource_name(long_name), std::string(100, 'x'));
}

TEST(CleanResourceName, NonAsciiFollowsGoToLower) {
  // Checked with Packer 1.6.6: 70 x 'A' + " \u00c9\u212a\u0130\u1e9e\u2c6f\u023a" gave
  // 70 x 'a' + "---ki-------": space; É (2 bytes) -> é (2); KELVIN SIGN -> k; İ -> i;
  // ẞ (3) -> ß (2); Ɐ (3) -> ɐ (2); Ⱥ (2) -> ⱥ (3).
  const std::string in = std::string(70, 'A') + " \xc3\x89\xe2\x84\xaa\xc4\xb0\xe1\xba\x9e\xe2\xb1\xaf\xc8\xba";
  EXPECT_EQ(clean_resource_name(in), std::string(70, 'a') + "---ki-------");
  EXPECT_EQ(clean_resource_name("caf\xc3\xa9"), "caf--");
  EXPECT_EQ(clean_resource_name("\xf0\x9f\x98\x80x"), "----x");  // 4-byte emoji
  // Invalid UTF-8 bytes become U+FFFD (3 bytes) in strings.ToLower.
  EXPECT_EQ(clean_resource_name("a\xff"
                                "b"),
            "a---b");
  EXPECT_EQ(clean_resource_name("\xe2\x84"), "------");         // truncated sequence: two invalid bytes
  EXPECT_EQ(clean_resource_name("\xed\xa0\x80"), "---------");  // encoded surrogate is invalid
}

TEST(CleanAmiName, AmazonBehaviour) {
  // Case from Packer's builder/amazon/common/template_funcs_test.go.
  EXPECT_EQ(clean_ami_name("AMZamz09()./-_:&^ $%[]#'@"), "AMZamz09()./-_--- --[]-'@");
  EXPECT_EQ(clean_ami_name("foo bar!*"), "foo bar--");
  // Checked with Packer 1.6.6 (amazon-ebs clean_resource_name, echoed by the kms_key_id error).
  EXPECT_EQ(clean_ami_name("Foo bar!*[x]'@_/.\xc3\xa9"), "Foo bar--[x]'@_/.--");
  EXPECT_EQ(clean_ami_name("My AMI 2026-11-22T02:33:06Z"), "My AMI 2026-11-22T02-33-06Z");
  EXPECT_EQ(clean_ami_name(""), "");
  const std::string long_name(200, 'A');
  EXPECT_EQ(clean_ami_name(long_name), long_name);
}

}  // namespace
