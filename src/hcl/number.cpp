#include "imgbake/hcl_number.h"

#include <cmath>
#include <limits>

#include "bignat.h"

namespace imgbake::hcl {

namespace bn = bignat;

Number Number::make(bool neg, Words mant, int64_t exp, bool sticky) {
  Number n;
  bn::trim(mant);
  if (mant.empty()) return n;
  int64_t len = bn::bit_length(mant);
  if (len > kPrecision) {
    // Round to nearest, ties to even, as big.Float's ToNearestEven.
    int64_t s = len - kPrecision;
    bool guard = bn::bit(mant, s - 1);
    bool rest = sticky || bn::any_below(mant, s - 1);
    mant = bn::shr(mant, s);
    exp += s;
    if (guard && (rest || bn::bit(mant, 0))) {
      mant = bn::add(mant, bn::from_u64(1));
      if (bn::bit_length(mant) > kPrecision) {
        mant = bn::shr(mant, 1);
        ++exp;
      }
    }
  }
  int64_t tz = bn::trailing_zero_bits(mant);
  n.mant_ = bn::shr(mant, tz);
  n.exp_ = exp + tz;
  n.neg_ = neg;
  return n;
}

Number::Number(int64_t v) {
  uint64_t mag = v < 0 ? 0 - static_cast<uint64_t>(v) : static_cast<uint64_t>(v);
  *this = make(v < 0, bn::from_u64(mag), 0);
}

Number Number::infinity(bool negative) {
  Number n;
  n.inf_ = true;
  n.neg_ = negative;
  return n;
}

std::optional<Number> Number::parse(std::string_view text) {
  size_t i = 0;
  bool neg = false;
  if (i < text.size() && (text[i] == '-' || text[i] == '+')) neg = text[i++] == '-';
  std::string digits;
  int64_t frac_digits = 0;
  bool seen_point = false;
  bool any = false;
  for (; i < text.size(); ++i) {
    char c = text[i];
    if (c >= '0' && c <= '9') {
      digits.push_back(c);
      any = true;
      if (seen_point) ++frac_digits;
    } else if (c == '.' && !seen_point) {
      seen_point = true;
    } else {
      break;
    }
  }
  if (!any) return std::nullopt;
  int64_t exp10 = 0;
  if (i < text.size() && (text[i] == 'e' || text[i] == 'E')) {
    ++i;
    bool eneg = false;
    if (i < text.size() && (text[i] == '-' || text[i] == '+')) eneg = text[i++] == '-';
    if (i == text.size()) return std::nullopt;
    for (; i < text.size(); ++i) {
      if (text[i] < '0' || text[i] > '9') return std::nullopt;
      if (exp10 > 100000000) return std::nullopt;  // far beyond any use; big.Float overflows too
      exp10 = exp10 * 10 + (text[i] - '0');
    }
    if (eneg) exp10 = -exp10;
  }
  if (i != text.size()) return std::nullopt;
  // big.ParseFloat: the exact mantissa times 2^e times 5^e (e = exponent - fraction digits),
  // rounded once: multiplied or divided by 5^|e| (itself kept to precision + 64 bits).
  Words m = bn::from_decimal(digits);
  int64_t e = exp10 - frac_digits;
  if (m.empty() || e == 0) return make(neg, m, 0);
  Words p5 = bn::pow(5, static_cast<uint64_t>(e < 0 ? -e : e));
  int64_t p5_exp = 0;
  if (int64_t extra = bn::bit_length(p5) - (kPrecision + 64); extra > 0) {
    p5 = bn::shr(p5, extra);  // only for exponents beyond ±248: close to, not exactly, Go's rounding
    p5_exp = extra;
  }
  if (e > 0) return make(neg, bn::mul(m, p5), e + p5_exp);
  Number a = make(neg, m, 0);
  a.mant_ = m;  // the exact mantissa: Go divides before rounding
  a.exp_ = 0;
  Number b;
  b.mant_ = p5;
  b.exp_ = p5_exp;
  Number q = a / b;
  q.exp_ += e;
  return q;
}

bool Number::is_integer() const { return !inf_ && (mant_.empty() || exp_ >= 0); }

std::optional<int64_t> Number::to_int64() const {
  if (!is_integer()) return std::nullopt;
  if (mant_.empty()) return 0;
  if (bn::bit_length(mant_) + exp_ > 63) return std::nullopt;
  auto mag = static_cast<int64_t>(mant_[0]);
  if (mant_.size() > 1) mag |= static_cast<int64_t>(mant_[1]) << 32;
  mag <<= exp_;
  return neg_ ? -mag : mag;
}

double Number::to_double() const {
  if (inf_) return neg_ ? -std::numeric_limits<double>::infinity() : std::numeric_limits<double>::infinity();
  double d = 0;
  for (size_t i = mant_.size(); i-- > 0;) d = d * 4294967296.0 + mant_[i];
  d = std::ldexp(d, static_cast<int>(exp_));
  return neg_ ? -d : d;
}

Number Number::operator-() const {
  Number n = *this;
  if (!is_zero()) n.neg_ = !neg_;
  return n;
}

int compare(const Number& a, const Number& b) {
  auto sign = [](const Number& n) { return n.is_zero() ? 0 : (n.neg_ ? -1 : 1); };
  int sa = sign(a);
  int sb = sign(b);
  if (sa != sb) return sa < sb ? -1 : 1;
  if (sa == 0) return 0;
  int mag = 0;
  if (a.inf_ || b.inf_) {
    mag = a.inf_ == b.inf_ ? 0 : (a.inf_ ? 1 : -1);
  } else {
    int64_t ta = bn::bit_length(a.mant_) + a.exp_;
    int64_t tb = bn::bit_length(b.mant_) + b.exp_;
    if (ta != tb) {
      mag = ta < tb ? -1 : 1;
    } else {
      int64_t e = std::min(a.exp_, b.exp_);
      mag = bn::cmp(bn::shl(a.mant_, a.exp_ - e), bn::shl(b.mant_, b.exp_ - e));
    }
  }
  return sa < 0 ? -mag : mag;
}

Number operator+(const Number& a, const Number& b) {
  if (a.inf_ || b.inf_) return a.inf_ ? a : b;  // inf - inf is not produced by HCL's operators
  if (a.is_zero()) return b;
  if (b.is_zero()) return a;
  int64_t e = std::min(a.exp_, b.exp_);
  Number::Words ma = bn::shl(a.mant_, a.exp_ - e);
  Number::Words mb = bn::shl(b.mant_, b.exp_ - e);
  if (a.neg_ == b.neg_) return Number::make(a.neg_, bn::add(ma, mb), e);
  int c = bn::cmp(ma, mb);
  if (c == 0) return Number{};
  return c > 0 ? Number::make(a.neg_, bn::sub(ma, mb), e) : Number::make(b.neg_, bn::sub(mb, ma), e);
}

Number operator-(const Number& a, const Number& b) { return a + (-b); }

Number operator*(const Number& a, const Number& b) {
  bool neg = a.neg_ != b.neg_;
  if (a.inf_ || b.inf_) return Number::infinity(neg);
  return Number::make(neg, bn::mul(a.mant_, b.mant_), a.exp_ + b.exp_);
}

Number operator/(const Number& a, const Number& b) {
  bool neg = a.neg_ != b.neg_;
  if (a.inf_ || b.is_zero()) return Number::infinity(neg);
  if (b.inf_ || a.is_zero()) return Number{};
  // Enough quotient bits for the rounding bit, and the remainder as the sticky bit.
  int64_t shift = std::max<int64_t>(0, Number::kPrecision + 2 + bn::bit_length(b.mant_) - bn::bit_length(a.mant_));
  Number::Words q;
  Number::Words r;
  bn::divmod(bn::shl(a.mant_, shift), b.mant_, q, r);
  return Number::make(neg, q, a.exp_ - shift - b.exp_, !r.empty());
}

Number Number::trunc() const {
  if (inf_ || is_integer()) return *this;
  return make(neg_, bn::shr(mant_, -exp_), 0);
}

Number operator%(const Number& a, const Number& b) {
  if (a.inf_ || b.inf_) return a * b;
  if (b.is_zero()) return a;
  return a - b * (a / b).trunc();
}

namespace {

// A decimal: digits (no trailing zeros) and the position of the decimal point.
struct Decimal {
  std::string digits;
  int64_t point = 0;
};

Decimal exact_decimal(const bn::Nat& mant, int64_t exp) {
  Decimal d;
  if (exp >= 0) {
    d.digits = bn::to_decimal(bn::shl(mant, exp));
    d.point = static_cast<int64_t>(d.digits.size());
  } else {
    d.digits = bn::to_decimal(bn::mul(mant, bn::pow(5, static_cast<uint64_t>(-exp))));
    d.point = static_cast<int64_t>(d.digits.size()) + exp;
  }
  while (!d.digits.empty() && d.digits.back() == '0') d.digits.pop_back();
  if (d.digits.empty()) d.point = 0;
  return d;
}

char digit_at(const Decimal& d, size_t i) { return i < d.digits.size() ? d.digits[i] : '0'; }

void round_down(Decimal& d, size_t n) {
  d.digits.resize(n);
  while (!d.digits.empty() && d.digits.back() == '0') d.digits.pop_back();
}

void round_up(Decimal& d, size_t n) {
  size_t i = n;
  while (i > 0 && d.digits[i - 1] == '9') --i;
  if (i == 0) {
    // assign(1, '1'), not = "1": GCC 12 at -O2 reports a bogus -Wrestrict overlap for the literal
    // copy here (GCC bug 105329), which -Werror turns into a failed release build.
    d.digits.assign(1, '1');
    ++d.point;
    return;
  }
  d.digits.resize(i);
  ++d.digits[i - 1];
}

void round_nearest(Decimal& d, size_t n) {
  bool up = false;
  if (d.digits[n] == '5' && n + 1 == d.digits.size())
    up = n > 0 && ((d.digits[n - 1] - '0') & 1) != 0;
  else
    up = d.digits[n] >= '5';
  up ? round_up(d, n) : round_down(d, n);
}

}  // namespace

std::string Number::str() const {
  if (inf_) return neg_ ? "-Inf" : "+Inf";
  if (mant_.empty()) return "0";
  Decimal d = exact_decimal(mant_, exp_);
  // big.Float's shortest form: the fewest digits that still round to this number at
  // kPrecision bits (Go's roundShortest, with lower/upper = this ± half an ulp).
  int64_t s = bn::bit_length(mant_) - (kPrecision + 1);
  bn::Nat m = s < 0 ? bn::shl(mant_, -s) : bn::shr(mant_, s);
  int64_t e = exp_ + s;
  Decimal lower = exact_decimal(bn::sub(m, bn::from_u64(1)), e);
  Decimal upper = exact_decimal(bn::add(m, bn::from_u64(1)), e);
  bool inclusive = !bn::bit(m, 1);
  // Digit by digit, as math/big compares them (by index, whatever the decimal points).
  for (size_t i = 0; i < d.digits.size(); ++i) {
    char l = digit_at(lower, i);
    char mch = d.digits[i];
    char u = digit_at(upper, i);
    bool okdown = l != mch || (inclusive && i + 1 == lower.digits.size());
    bool okup = mch != u && (inclusive || mch + 1 < u || i + 1 < upper.digits.size());
    if (okdown && okup) {
      round_nearest(d, i + 1);
      break;
    }
    if (okdown) {
      round_down(d, i + 1);
      break;
    }
    if (okup) {
      round_up(d, i + 1);
      break;
    }
  }
  std::string out = neg_ ? "-" : "";
  if (d.point > 0) {
    for (int64_t i = 0; i < d.point; ++i) out.push_back(digit_at(d, static_cast<size_t>(i)));
  } else {
    out += "0";
  }
  int64_t frac = static_cast<int64_t>(d.digits.size()) - d.point;
  if (frac > 0) {
    out += '.';
    for (int64_t i = 0; i < frac; ++i) {
      int64_t k = d.point + i;
      out.push_back(k < 0 ? '0' : digit_at(d, static_cast<size_t>(k)));
    }
  }
  return out;
}

}  // namespace imgbake::hcl
