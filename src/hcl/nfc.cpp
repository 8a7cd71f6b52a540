#include "nfc.h"

#include <unicode/unorm2.h>
#include <unicode/ustring.h>

#include <vector>

namespace imgbake::hcl {

std::string to_nfc(std::string s) {
  bool ascii = true;
  for (char c : s) ascii = ascii && (static_cast<unsigned char>(c) < 0x80);
  if (ascii) return s;  // ASCII text is always in NFC
  UErrorCode err = U_ZERO_ERROR;
  const UNormalizer2* nfc = unorm2_getNFCInstance(&err);
  if (U_FAILURE(err)) return s;
  int32_t len16 = 0;
  u_strFromUTF8(nullptr, 0, &len16, s.data(), static_cast<int32_t>(s.size()), &err);
  if (err != U_BUFFER_OVERFLOW_ERROR && U_FAILURE(err)) return s;  // not UTF-8: left as it is
  err = U_ZERO_ERROR;
  std::vector<UChar> in(static_cast<size_t>(len16) + 1);
  u_strFromUTF8(in.data(), len16 + 1, nullptr, s.data(), static_cast<int32_t>(s.size()), &err);
  if (U_FAILURE(err)) return s;
  if (unorm2_quickCheck(nfc, in.data(), len16, &err) == UNORM_YES && U_SUCCESS(err)) return s;
  err = U_ZERO_ERROR;
  std::vector<UChar> out(static_cast<size_t>(len16) * 3 + 16);
  int32_t n = unorm2_normalize(nfc, in.data(), len16, out.data(), static_cast<int32_t>(out.size()), &err);
  if (U_FAILURE(err)) return s;
  int32_t len8 = 0;
  u_strToUTF8(nullptr, 0, &len8, out.data(), n, &err);
  err = U_ZERO_ERROR;
  std::string result(static_cast<size_t>(len8), '\0');
  u_strToUTF8(result.data(), len8, nullptr, out.data(), n, &err);
  return U_FAILURE(err) ? s : result;
}

}  // namespace imgbake::hcl
