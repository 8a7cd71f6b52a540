// HCL's number: a binary floating-point value with a 512-bit mantissa, rounded to nearest
// even, as cty (go-cty) keeps its numbers in Go's big.Float. Arithmetic, parsing and printing
// follow big.Float's rules so that results agree with Packer's to the last digit (HCL's
// specification test suite checks `11 % 5.1` to 160 digits). Integers up to 2^512 are exact.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace imgbake::hcl {

class Number {
 public:
  static constexpr int kPrecision = 512;

  Number() = default;
  Number(int64_t v);  // NOLINT(google-explicit-constructor): numbers convert from integers freely

  // Parses a decimal literal ("12", "-3.5", "1e-3"); nullopt if `text` is not one.
  static std::optional<Number> parse(std::string_view text);
  static Number infinity(bool negative);

  bool is_zero() const { return !inf_ && mant_.empty(); }
  bool is_infinite() const { return inf_; }
  bool negative() const { return neg_; }
  bool is_integer() const;
  // The value as an int64 when it is a whole number in range.
  std::optional<int64_t> to_int64() const;
  double to_double() const;
  // The shortest decimal that reads back as this number ("5", "0.1", "-1.5"), as cty prints
  // numbers when converting them to strings.
  std::string str() const;

  Number operator-() const;
  friend Number operator+(const Number& a, const Number& b);
  friend Number operator-(const Number& a, const Number& b);
  friend Number operator*(const Number& a, const Number& b);
  // Division by zero gives an infinity (callers that must refuse it check first).
  friend Number operator/(const Number& a, const Number& b);
  // cty's modulo: a - b * trunc(a / b).
  friend Number operator%(const Number& a, const Number& b);
  // The whole part, towards zero.
  Number trunc() const;

  friend int compare(const Number& a, const Number& b);
  friend bool operator==(const Number& a, const Number& b) { return compare(a, b) == 0; }
  friend bool operator<(const Number& a, const Number& b) { return compare(a, b) < 0; }

  // The magnitude is mant_ * 2^exp_, mant_ a little-endian array of 32-bit words with no
  // trailing zero words (empty = zero) and at most kPrecision significant bits.
  using Words = std::vector<uint32_t>;

 private:
  bool neg_ = false;
  bool inf_ = false;
  Words mant_;
  int64_t exp_ = 0;

  static Number make(bool neg, Words mant, int64_t exp, bool sticky = false);
};

}  // namespace imgbake::hcl
