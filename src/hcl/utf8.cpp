#include "utf8.h"

#include <unicode/uchar.h>

namespace imgbake::hcl {

std::string utf8_encode(uint32_t cp) {
  std::string out;
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return out;
}

uint32_t utf8_decode(std::string_view s, size_t i, size_t& len) {
  len = 1;
  auto c = static_cast<unsigned char>(s[i]);
  if (c < 0x80) return c;
  size_t n = 0;
  uint32_t cp = 0;
  if ((c & 0xE0) == 0xC0)
    n = 2, cp = c & 0x1FU;
  else if ((c & 0xF0) == 0xE0)
    n = 3, cp = c & 0x0FU;
  else if ((c & 0xF8) == 0xF0)
    n = 4, cp = c & 0x07U;
  else
    return 0xFFFD;
  if (i + n > s.size()) return 0xFFFD;
  for (size_t k = 1; k < n; ++k) {
    auto b = static_cast<unsigned char>(s[i + k]);
    if ((b & 0xC0) != 0x80) return 0xFFFD;
    cp = (cp << 6) | (b & 0x3FU);
  }
  static const uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < kMin[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0xFFFD;  // overlong, surrogates
  len = n;
  return cp;
}

bool utf8_is_identifier(uint32_t cp, bool start) {
  if (cp == 0xFFFD) return false;
  return u_hasBinaryProperty(static_cast<UChar32>(cp), start ? UCHAR_ID_START : UCHAR_ID_CONTINUE) != 0;
}

bool utf8_is_space(const std::string& s, size_t i, size_t& len) {
  if (i >= s.size()) return false;
  auto c = static_cast<unsigned char>(s[i]);
  len = 1;
  if (c == ' ' || (c >= '\t' && c <= '\r')) return true;
  if (c < 0x80) return false;
  // Decode one character and compare with Unicode's White_Space set (as Go's unicode.IsSpace).
  uint32_t cp = 0;
  size_t n = 0;
  if ((c & 0xE0) == 0xC0)
    cp = c & 0x1F, n = 2;
  else if ((c & 0xF0) == 0xE0)
    cp = c & 0x0F, n = 3;
  else if ((c & 0xF8) == 0xF0)
    cp = c & 0x07, n = 4;
  else
    return false;
  if (i + n > s.size()) return false;
  for (size_t k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
  len = n;
  return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 ||
         cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

}  // namespace imgbake::hcl
