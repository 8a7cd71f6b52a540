// HCL numbers behave as cty's (Go's big.Float with a 512-bit mantissa).
#include <gtest/gtest.h>

#include "imgbake/hcl_number.h"

namespace imgbake::hcl {
namespace {

Number n(const char* s) {
  auto v = Number::parse(s);
  EXPECT_TRUE(v.has_value()) << s;
  return v.value_or(Number{});
}

TEST(HclNumber, ParsesDecimalLiteralsAndPrintsTheShortestForm) {
  EXPECT_EQ(n("5").str(), "5");
  EXPECT_EQ(n("3.2").str(), "3.2");
  EXPECT_EQ(n("0.1").str(), "0.1");
  EXPECT_EQ(n("-1.5").str(), "-1.5");
  EXPECT_EQ(n("1e3").str(), "1000");
  EXPECT_EQ(n("2.5E-3").str(), "0.0025");
  EXPECT_EQ(n("007").str(), "7");
  EXPECT_EQ(n("0").str(), "0");
  EXPECT_EQ(n("123456789012345678901234567890").str(), "123456789012345678901234567890");
  EXPECT_FALSE(Number::parse("").has_value());
  EXPECT_FALSE(Number::parse("1.2.3").has_value());
  EXPECT_FALSE(Number::parse("12abc").has_value());
  EXPECT_FALSE(Number::parse("1e").has_value());
}

TEST(HclNumber, KeepsFarMoreDigitsThanADouble) {
  // 63 significant digits survive a round trip (a double keeps 17).
  const char* pi = "3.14159265358979323846264338327950288419716939937510582097494459";
  EXPECT_EQ(n(pi).str(), pi);
  EXPECT_EQ((n(pi) + n("1")).str(), "4.14159265358979323846264338327950288419716939937510582097494459");
  EXPECT_EQ((n("9007199254740993") + n("0")).str(), "9007199254740993");  // 2^53 + 1
}

TEST(HclNumber, ArithmeticRoundsAsBigFloatDoes) {
  EXPECT_EQ((n("2") + n("3.5")).str(), "5.5");
  EXPECT_EQ((n("2") - n("3.5")).str(), "-1.5");
  EXPECT_EQ((n("2") * n("4.5")).str(), "9");
  EXPECT_EQ((n("1") / n("10")).str(), "0.1");
  EXPECT_EQ((n("1") / n("3")).str().substr(0, 12), "0.3333333333");
  EXPECT_EQ((n("11") % n("5")).str(), "1");
  EXPECT_EQ((n("-7") % n("3")).str(), "-1");  // the sign of the dividend, as cty's
  // 5.1 is not exact in binary: the remainder shows it, digit for digit as cty (Packer) prints it.
  EXPECT_EQ((n("11") % n("5.1")).str(),
            "0.8000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
            "0000000000000000000000000000000000000000000000000000000000000000024");
  EXPECT_TRUE((n("1") / n("0")).is_infinite());
  EXPECT_EQ((n("1") / n("0")).str(), "+Inf");
}

TEST(HclNumber, ComparesAndConvertsToIntegers) {
  EXPECT_TRUE(n("1.5") < n("2"));
  EXPECT_TRUE(n("-2") < n("-1.5"));
  EXPECT_EQ(n("10").to_int64(), 10);
  EXPECT_EQ(n("-4").to_int64(), -4);
  EXPECT_FALSE(n("2.5").to_int64().has_value());
  EXPECT_FALSE(n("1e30").to_int64().has_value());
  EXPECT_EQ(Number(int64_t{-42}).str(), "-42");
  EXPECT_EQ(n("2.75").trunc().str(), "2");
  EXPECT_EQ(n("-2.75").trunc().str(), "-2");
}

}  // namespace
}  // namespace imgbake::hcl
