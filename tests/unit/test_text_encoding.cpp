// Percent-encoding and UTF-8 (util/text_encoding.h), shared by the registry client, AWS SigV4,
// file URLs, the Masker and the JSON and XML readers.
#include <gtest/gtest.h>

#include "imgbake/text_encoding.h"

using imgbake::util::append_utf8;
using imgbake::util::percent_decode;
using imgbake::util::percent_encode;

TEST(TextEncoding, PercentEncodingKeepsOnlyTheUnreservedCharacters) {
  EXPECT_EQ(percent_encode("AZaz09-_.~"), "AZaz09-_.~");
  EXPECT_EQ(percent_encode("a b/c?d=e&f+g%"), "a%20b%2Fc%3Fd%3De%26f%2Bg%25");
  EXPECT_EQ(percent_encode("\xc3\xa9"), "%C3%A9");  // é, byte by byte, upper-case hex
  EXPECT_EQ(percent_encode(std::string("\0x", 2)), "%00x");
}

TEST(TextEncoding, PercentDecodingKeepsWhatIsNotAnEscape) {
  EXPECT_EQ(percent_decode("a%20b%2fc"), "a b/c");
  EXPECT_EQ(percent_decode("100%"), "100%");
  EXPECT_EQ(percent_decode("%4"), "%4");
  EXPECT_EQ(percent_decode("%zz%41"), "%zzA");
  EXPECT_EQ(percent_decode(percent_encode("any / thing: é")), "any / thing: é");
}

TEST(TextEncoding, Utf8OfEachLength) {
  std::string out;
  append_utf8(out, 0x41);
  append_utf8(out, 0xE9);
  append_utf8(out, 0x20AC);
  append_utf8(out, 0x1F600);
  EXPECT_EQ(out, "A\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
}
