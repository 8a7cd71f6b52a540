#include "bignat.h"

#include <algorithm>

namespace imgbake::hcl::bignat {

void trim(Nat& a) {
  while (!a.empty() && a.back() == 0) a.pop_back();
}

int64_t bit_length(const Nat& a) {
  if (a.empty()) return 0;
  uint32_t top = a.back();
  int bits = 0;
  while (top) {
    ++bits;
    top >>= 1;
  }
  return static_cast<int64_t>(a.size() - 1) * 32 + bits;
}

bool bit(const Nat& a, int64_t i) {
  if (i < 0) return false;
  auto w = static_cast<size_t>(i / 32);
  return w < a.size() && ((a[w] >> (i % 32)) & 1U) != 0;
}

bool any_below(const Nat& a, int64_t n) {
  for (int64_t w = 0; w * 32 < n && w < static_cast<int64_t>(a.size()); ++w) {
    uint32_t word = a[static_cast<size_t>(w)];
    if (n - w * 32 < 32) word &= (1U << (n - w * 32)) - 1;
    if (word) return true;
  }
  return false;
}

int64_t trailing_zero_bits(const Nat& a) {
  int64_t n = 0;
  for (uint32_t w : a) {
    if (w == 0) {
      n += 32;
      continue;
    }
    while ((w & 1U) == 0) {
      ++n;
      w >>= 1;
    }
    return n;
  }
  return 0;
}

int cmp(const Nat& a, const Nat& b) {
  if (a.size() != b.size()) return a.size() < b.size() ? -1 : 1;
  for (size_t i = a.size(); i-- > 0;)
    if (a[i] != b[i]) return a[i] < b[i] ? -1 : 1;
  return 0;
}

Nat add(const Nat& a, const Nat& b) {
  Nat r(std::max(a.size(), b.size()) + 1, 0);
  uint64_t carry = 0;
  for (size_t i = 0; i < r.size(); ++i) {
    uint64_t s = carry;
    if (i < a.size()) s += a[i];
    if (i < b.size()) s += b[i];
    r[i] = static_cast<uint32_t>(s);
    carry = s >> 32;
  }
  trim(r);
  return r;
}

Nat sub(const Nat& a, const Nat& b) {
  Nat r(a.size(), 0);
  int64_t borrow = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    int64_t d = static_cast<int64_t>(a[i]) - borrow - (i < b.size() ? static_cast<int64_t>(b[i]) : 0);
    borrow = d < 0 ? 1 : 0;
    if (d < 0) d += int64_t{1} << 32;
    r[i] = static_cast<uint32_t>(d);
  }
  trim(r);
  return r;
}

Nat mul(const Nat& a, const Nat& b) {
  if (a.empty() || b.empty()) return {};
  Nat r(a.size() + b.size(), 0);
  for (size_t i = 0; i < a.size(); ++i) {
    uint64_t carry = 0;
    for (size_t j = 0; j < b.size(); ++j) {
      uint64_t t = static_cast<uint64_t>(a[i]) * b[j] + r[i + j] + carry;
      r[i + j] = static_cast<uint32_t>(t);
      carry = t >> 32;
    }
    r[i + b.size()] = static_cast<uint32_t>(carry);
  }
  trim(r);
  return r;
}

Nat shl(const Nat& a, int64_t n) {
  if (a.empty() || n == 0) return a;
  auto words = static_cast<size_t>(n / 32);
  int bits = static_cast<int>(n % 32);
  Nat r(a.size() + words + 1, 0);
  for (size_t i = 0; i < a.size(); ++i) {
    r[i + words] |= a[i] << bits;
    if (bits) r[i + words + 1] |= a[i] >> (32 - bits);
  }
  trim(r);
  return r;
}

Nat shr(const Nat& a, int64_t n) {
  auto words = static_cast<size_t>(n / 32);
  if (words >= a.size()) return {};
  int bits = static_cast<int>(n % 32);
  Nat r(a.size() - words, 0);
  for (size_t i = 0; i < r.size(); ++i) {
    r[i] = a[i + words] >> bits;
    if (bits && i + words + 1 < a.size()) r[i] |= a[i + words + 1] << (32 - bits);
  }
  trim(r);
  return r;
}

namespace {
// Divides in place by a small number; returns the remainder.
uint32_t divmod_small(Nat& a, uint32_t d) {
  uint64_t rem = 0;
  for (size_t i = a.size(); i-- > 0;) {
    uint64_t cur = (rem << 32) | a[i];
    a[i] = static_cast<uint32_t>(cur / d);
    rem = cur % d;
  }
  trim(a);
  return static_cast<uint32_t>(rem);
}
}  // namespace

void divmod(const Nat& a, const Nat& b, Nat& q, Nat& r) {
  if (b.size() == 1) {
    q = a;
    r = from_u64(divmod_small(q, b[0]));
    return;
  }
  // Shift-and-subtract: mantissas here are a few hundred bits, so this is fast enough.
  q.assign(a.size(), 0);
  r.clear();
  for (int64_t i = bit_length(a); i-- > 0;) {
    r = shl(r, 1);
    if (bit(a, i)) {
      if (r.empty()) r.push_back(0);
      r[0] |= 1U;
    }
    if (cmp(r, b) >= 0) {
      r = sub(r, b);
      q[static_cast<size_t>(i / 32)] |= 1U << (i % 32);
    }
  }
  trim(q);
}

Nat from_u64(uint64_t v) {
  Nat r{static_cast<uint32_t>(v), static_cast<uint32_t>(v >> 32)};
  trim(r);
  return r;
}

Nat pow(uint32_t base, uint64_t n) {
  Nat result = from_u64(1);
  Nat b = from_u64(base);
  while (n) {
    if (n & 1U) result = mul(result, b);
    n >>= 1U;
    if (n) b = mul(b, b);
  }
  return result;
}

std::string to_decimal(const Nat& a) {
  if (a.empty()) return "0";
  Nat t = a;
  std::string out;
  while (!t.empty()) {
    uint32_t chunk = divmod_small(t, 1000000000U);
    for (int i = 0; i < 9; ++i) {
      out.push_back(static_cast<char>('0' + chunk % 10));
      chunk /= 10;
      if (t.empty() && chunk == 0) break;
    }
  }
  while (out.size() > 1 && out.back() == '0') out.pop_back();
  std::reverse(out.begin(), out.end());
  return out;
}

Nat from_decimal(std::string_view digits) {
  Nat r;
  for (char c : digits) {
    uint64_t carry = static_cast<uint64_t>(c - '0');
    for (auto& w : r) {
      uint64_t t = static_cast<uint64_t>(w) * 10 + carry;
      w = static_cast<uint32_t>(t);
      carry = t >> 32;
    }
    if (carry) r.push_back(static_cast<uint32_t>(carry));
  }
  trim(r);
  return r;
}

}  // namespace imgbake::hcl::bignat
