#include "utf8.h"

#include <unicode/uchar.h>
#include <unicode/utf8.h>

namespace imgbake::hcl {

std::string utf8_encode(uint32_t cp) {
  std::string out(U8_LENGTH(static_cast<UChar32>(cp)), '\0');
  size_t i = 0;
  U8_APPEND_UNSAFE(out.data(), i, static_cast<UChar32>(cp));
  return out;
}

uint32_t utf8_decode(std::string_view s, size_t i, size_t& len) {
  int32_t at = static_cast<int32_t>(i);
  UChar32 cp = 0;
  U8_NEXT(s.data(), at, static_cast<int32_t>(s.size()), cp);
  if (cp < 0) {
    len = 1;
    return 0xFFFD;
  }
  len = static_cast<size_t>(at) - i;
  return static_cast<uint32_t>(cp);
}

bool utf8_is_identifier(uint32_t cp, bool start) {
  if (cp == 0xFFFD) return false;
  return u_hasBinaryProperty(static_cast<UChar32>(cp), start ? UCHAR_ID_START : UCHAR_ID_CONTINUE) != 0;
}

bool utf8_is_space(const std::string& s, size_t i, size_t& len) {
  if (i >= s.size()) return false;
  uint32_t cp = utf8_decode(s, i, len);
  // Unicode's White_Space, as Go's unicode.IsSpace.
  return u_hasBinaryProperty(static_cast<UChar32>(cp), UCHAR_WHITE_SPACE) != 0;
}

}  // namespace imgbake::hcl
