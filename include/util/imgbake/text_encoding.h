// Small text encodings several modules speak: RFC 3986 percent-encoding (registry query strings,
// AWS Signature V4's canonical forms, file URLs, the Masker's URL-encoded form of a secret) and
// UTF-8 from a code point (the JSON and XML readers' character references).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace imgbake::util {

// Every byte but RFC 3986's unreserved characters (A-Z a-z 0-9 - _ . ~) as %XX, upper-case hex:
// the form AWS SigV4 requires and every server decodes.
std::string percent_encode(std::string_view s);
// %XX decoded; anything else, and a '%' not followed by two hex digits, kept as it is.
std::string percent_decode(std::string_view s);
// Appends the code point as UTF-8 (1 to 4 bytes; the caller has checked it is a scalar value).
void append_utf8(std::string& out, uint32_t cp);

}  // namespace imgbake::util
