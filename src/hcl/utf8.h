// The little UTF-8 the parser needs: encoding \u escapes and Unicode white space.
#pragma once

#include <cstdint>
#include <string>

namespace imgbake::hcl {

std::string utf8_encode(uint32_t cp);
// Whether the character at s[i] is white space (Go's unicode.IsSpace); `len` gets its length.
bool utf8_is_space(const std::string& s, size_t i, size_t& len);

}  // namespace imgbake::hcl
