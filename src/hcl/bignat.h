// Unsigned big integers as little-endian 32-bit words: just what Number needs (exact sums,
// products, quotients, shifts and decimal digits of mantissas up to a few thousand bits).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace imgbake::hcl::bignat {

using Nat = std::vector<uint32_t>;  // no trailing zero words; empty = 0

void trim(Nat& a);
int64_t bit_length(const Nat& a);
bool bit(const Nat& a, int64_t i);
// Whether any of the bits below bit `n` is set.
bool any_below(const Nat& a, int64_t n);
int64_t trailing_zero_bits(const Nat& a);
int cmp(const Nat& a, const Nat& b);
Nat add(const Nat& a, const Nat& b);
Nat sub(const Nat& a, const Nat& b);  // requires a >= b
Nat mul(const Nat& a, const Nat& b);
Nat shl(const Nat& a, int64_t n);
Nat shr(const Nat& a, int64_t n);
// Quotient and remainder; b must not be zero.
void divmod(const Nat& a, const Nat& b, Nat& q, Nat& r);
Nat from_u64(uint64_t v);
Nat pow(uint32_t base, uint64_t n);
// Decimal digits ("0" for zero) and back (digits only).
std::string to_decimal(const Nat& a);
Nat from_decimal(std::string_view digits);

}  // namespace imgbake::hcl::bignat
