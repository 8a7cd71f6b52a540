// The little UTF-8 the parser needs: encoding \u escapes and Unicode white space.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace imgbake::hcl {

std::string utf8_encode(uint32_t cp);
// The code point at s[i] and its length; U+FFFD with length 1 for a byte that starts no valid
// UTF-8 sequence.
uint32_t utf8_decode(std::string_view s, size_t i, size_t& len);
// Unicode's ID_Start (start) or ID_Continue character classes, as HCL's identifiers use them.
bool utf8_is_identifier(uint32_t cp, bool start);

// Whether the character at s[i] is white space (Go's unicode.IsSpace); `len` gets its length.
bool utf8_is_space(const std::string& s, size_t i, size_t& len);

}  // namespace imgbake::hcl
