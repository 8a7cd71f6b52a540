// Small helpers: durations, "did you mean", globs, digests, atomic writes.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <stdlib.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <optional>
#include <regex>
#include <stdexcept>
#include <string>
#include <vector>

#include "imgbake/util.h"

namespace {

namespace fs = std::filesystem;
using imgbake::util::closest_match;
using imgbake::util::parse_duration;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using namespace std::chrono_literals;
using Ms = std::optional<std::chrono::milliseconds>;

// ---------------------------------------------------------------- parse_duration

TEST(ParseDuration, GoDurations) {
  EXPECT_EQ(parse_duration("1h2m3.5s"), Ms(3723500ms));
  EXPECT_EQ(parse_duration("500ms"), Ms(500ms));
  EXPECT_EQ(parse_duration("10s"), Ms(10s));
  EXPECT_EQ(parse_duration("1m30s"), Ms(90s));
  EXPECT_EQ(parse_duration("1.5h"), Ms(90min));
  EXPECT_EQ(parse_duration("2h45m"), Ms(165min));
  EXPECT_EQ(parse_duration(".5s"), Ms(500ms));
  EXPECT_EQ(parse_duration("0s"), Ms(0ms));
  EXPECT_EQ(parse_duration("0"), Ms(0ms));
  EXPECT_EQ(parse_duration("3000us"), Ms(3ms));
  EXPECT_EQ(parse_duration("2000000ns"), Ms(2ms));
  EXPECT_EQ(parse_duration("-1s"), Ms(-1000ms));
  EXPECT_EQ(parse_duration("+2s"), Ms(2000ms));
}

TEST(ParseDuration, MicroSignUnit) {
  // Go accepts both U+00B5 (micro sign) and U+03BC (Greek mu) for microseconds.
  EXPECT_EQ(parse_duration("3000\xC2\xB5s"), Ms(3ms));
  EXPECT_EQ(parse_duration("3000\xCE\xBCs"), Ms(3ms));
}

TEST(ParseDuration, BareNumberIsSeconds) {
  EXPECT_EQ(parse_duration("10"), Ms(10s));
  EXPECT_EQ(parse_duration("300"), Ms(300s));
}

TEST(ParseDuration, Malformed) {
  for (const char* bad :
       {"", " ", "5x", "s", "ms", "1d", "1 s", "1h 2m", "h1", "-", "+", "1.5", "1e3s", "abc", "1s2", "--1s"}) {
    EXPECT_EQ(parse_duration(bad), std::nullopt) << "'" << bad << "'";
  }
}

TEST(ParseDuration, MalformedNumbersAreRejected) {
  // Go's time.ParseDuration rejects these ("missing unit" / "invalid duration").
  EXPECT_EQ(parse_duration("1..5s"), std::nullopt);
  EXPECT_EQ(parse_duration("1.2.3s"), std::nullopt);
}

TEST(ParseDuration, HugeNumbersAreAnErrorNotAnException) {
  // Documented: nullopt when malformed. Go reports "invalid duration" for these.
  for (const char* huge : {"99999999999999999999", "99999999999999999999h", "1e400h"}) {
    Ms d;
    EXPECT_NO_THROW(d = parse_duration(huge)) << huge;
    EXPECT_EQ(d, std::nullopt) << huge;
  }
}

// ---------------------------------------------------------------- format_duration

TEST(ParseRfc3339, SecondsSinceEpochWithOffsetsAndFractions) {
  using imgbake::util::parse_rfc3339_seconds;
  EXPECT_EQ(parse_rfc3339_seconds("1970-01-01T00:00:00Z"), 0);
  EXPECT_EQ(parse_rfc3339_seconds("2023-11-14T22:13:20Z"), 1700000000);
  EXPECT_EQ(parse_rfc3339_seconds("2023-11-14T22:13:20.999999999Z"), 1700000000);  // the fraction is dropped
  EXPECT_EQ(parse_rfc3339_seconds("2023-11-14T23:13:20+01:00"), 1700000000);
  EXPECT_EQ(parse_rfc3339_seconds("2023-11-14T21:43:20-00:30"), 1700000000);
  EXPECT_EQ(parse_rfc3339_seconds("1969-12-31T23:59:59Z"), -1);
  // Round trip with the formatter.
  auto t = std::chrono::system_clock::time_point(std::chrono::seconds(1796477298));
  EXPECT_EQ(parse_rfc3339_seconds(imgbake::util::format_rfc3339(t)), 1796477298);
  for (const char* bad :
       {"", "2023-11-14", "2023-11-14T22:13:20", "2023-13-14T22:13:20Z", "2023-02-30T00:00:00Z",
        "2023-11-14T22:13:20+0100", "2023-11-14T22:13:20Zjunk", "2023-11-14T22:13:20.Z", "2023-11-14T24:00:00Z"})
    EXPECT_EQ(parse_rfc3339_seconds(bad), std::nullopt) << bad;
}

TEST(FormatRfc3339, UtcSecondsAndTruncatedMilliseconds) {
  using namespace std::chrono;
  system_clock::time_point t{seconds(1764927000) + milliseconds(987)};
  EXPECT_EQ(imgbake::util::format_rfc3339(t), "2025-12-05T09:30:00Z");
  EXPECT_EQ(imgbake::util::format_rfc3339(t, true), "2025-12-05T09:30:00.987Z");
  EXPECT_EQ(imgbake::util::format_rfc3339(system_clock::time_point{}, true), "1970-01-01T00:00:00.000Z");
  // Before the epoch, the second is floored (Go does the same).
  EXPECT_EQ(imgbake::util::format_rfc3339(system_clock::time_point{milliseconds(-1)}, true),
            "1969-12-31T23:59:59.999Z");
}

TEST(FormatDuration, Forms) {
  EXPECT_EQ(imgbake::util::format_duration(0ns), "0.000s");
  EXPECT_EQ(imgbake::util::format_duration(1234ms), "1.234s");
  EXPECT_EQ(imgbake::util::format_duration(59s), "59.000s");
  EXPECT_EQ(imgbake::util::format_duration(60s), "1m00s");
  EXPECT_EQ(imgbake::util::format_duration(123s), "2m03s");
  EXPECT_EQ(imgbake::util::format_duration(3723s), "1h02m03s");
}

TEST(FormatDuration, JustBelowAMinuteDoesNotPrintSixtySeconds) {
  // 59.9996 s rounds to 60.000 s in the seconds form; that should read as a minute.
  EXPECT_EQ(imgbake::util::format_duration(59999600us), "1m00s");
  EXPECT_EQ(imgbake::util::format_duration(59999400us), "59.999s");
}

// ---------------------------------------------------------------- closest_match

TEST(ClosestMatch, Typos) {
  const std::vector<std::string> roots = {"variables",       "sensitive-variables", "builders",          "provisioners",
                                          "post-processors", "description",         "min_packer_version"};
  EXPECT_EQ(closest_match("provisoners", roots), "provisioners");
  EXPECT_EQ(closest_match("bulders", roots), "builders");
  EXPECT_EQ(closest_match("builder", roots), "builders");
  EXPECT_EQ(closest_match("post_processors", roots), "post-processors");
  EXPECT_EQ(closest_match("descripton", roots), "description");
  EXPECT_EQ(closest_match("builders", roots), "builders");
}

TEST(ClosestMatch, PluralAndSingular) {
  EXPECT_EQ(closest_match("iso_url", {"iso_urls", "iso_checksum"}), "iso_urls");
  EXPECT_EQ(closest_match("ssh_usrname", {"ssh_username", "ssh_password"}), "ssh_username");
}

TEST(ClosestMatch, SwappedLettersInShortWords) {
  // Two adjacent letters typed the wrong way round is the most common typo of all.
  EXPECT_EQ(closest_match("tpye", {"type", "name", "only"}), "type");
  EXPECT_EQ(closest_match("nmae", {"type", "name", "only"}), "name");
  EXPECT_EQ(closest_match("imgae", {"image", "version", "labels"}), "image");
}

TEST(ClosestMatch, NothingClose) {
  EXPECT_EQ(closest_match("xyzzy", {"builders", "variables"}), std::nullopt);
  EXPECT_EQ(closest_match("hostname", {"builders", "variables", "provisioners"}), std::nullopt);
  EXPECT_EQ(closest_match("anything", {}), std::nullopt);
}

TEST(DidYouMean, Format) {
  EXPECT_EQ(imgbake::util::did_you_mean("bulders", {"builders"}), " (did you mean 'builders'?)");
  EXPECT_EQ(imgbake::util::did_you_mean("zzzzzz", {"builders"}), "");
}

// ---------------------------------------------------------------- glob_match

TEST(GlobMatch, Fnmatch) {
  EXPECT_TRUE(imgbake::util::glob_match("*", "anything"));
  EXPECT_TRUE(imgbake::util::glob_match("*", ""));
  EXPECT_TRUE(imgbake::util::glob_match("qemu-*", "qemu-ubuntu"));
  EXPECT_TRUE(imgbake::util::glob_match("qemu-*", "qemu-"));
  EXPECT_FALSE(imgbake::util::glob_match("qemu-*", "docker"));
  EXPECT_FALSE(imgbake::util::glob_match("qemu-*", "my-qemu-x"));
  EXPECT_TRUE(imgbake::util::glob_match("*-arm64", "ubuntu-arm64"));
  EXPECT_TRUE(imgbake::util::glob_match("?x", "ax"));
  EXPECT_FALSE(imgbake::util::glob_match("?x", "x"));
  EXPECT_TRUE(imgbake::util::glob_match("[ab]c", "bc"));
  EXPECT_FALSE(imgbake::util::glob_match("[ab]c", "cc"));
  EXPECT_TRUE(imgbake::util::glob_match("exact", "exact"));
  EXPECT_FALSE(imgbake::util::glob_match("exact", "exactly"));
  EXPECT_FALSE(imgbake::util::glob_match("Exact", "exact"));
}

// ---------------------------------------------------------------- digests

TEST(Sha256, KnownVectors) {
  EXPECT_EQ(imgbake::util::sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(imgbake::util::sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(imgbake::util::sha256_hex("The quick brown fox jumps over the lazy dog"),
            "d7a8fbb307d7809469ca9abcb0082e4f8d5651e46d3cdb762d02d0bf37c9e592");
  EXPECT_EQ(imgbake::util::sha256_hex(std::string("a\0b", 3)), imgbake::util::sha256_hex(std::string("a\0b", 3)));
  EXPECT_NE(imgbake::util::sha256_hex(std::string("a\0b", 3)), imgbake::util::sha256_hex("a"));
}

class TempDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "imgbake-ut-util-XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::vector<std::string> Listing() const {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(dir_)) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }
  fs::path dir_;
};

TEST_F(TempDirTest, FileDigests) {
  imgbake::util::write_file_atomic(dir_ / "abc.txt", "abc");
  EXPECT_EQ(imgbake::util::file_digest_hex(dir_ / "abc.txt"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(imgbake::util::file_digest_hex(dir_ / "abc.txt", "md5"), "900150983cd24fb0d6963f7d28e17f72");
  EXPECT_EQ(imgbake::util::file_digest_hex(dir_ / "abc.txt", "sha1"), "a9993e364706816aba3e25717850c26c9cd0d89d");
  EXPECT_THROW(imgbake::util::file_digest_hex(dir_ / "abc.txt", "crc32"), std::runtime_error);
  EXPECT_THROW(imgbake::util::file_digest_hex(dir_ / "missing.txt"), std::runtime_error);
  for (const char* a : {"md5", "sha1", "sha224", "sha256", "sha384", "sha512"})
    EXPECT_TRUE(imgbake::util::is_supported_digest(a)) << a;
  EXPECT_FALSE(imgbake::util::is_supported_digest("crc32"));
  EXPECT_FALSE(imgbake::util::is_supported_digest("SHA256"));
}

// ---------------------------------------------------------------- files

TEST_F(TempDirTest, WriteFileAtomicLeavesNoTempFileBehind) {
  const fs::path target = dir_ / "out.txt";
  imgbake::util::write_file_atomic(target, "hello\n");
  EXPECT_EQ(imgbake::util::read_file(target), "hello\n");
  EXPECT_THAT(Listing(), ElementsAre("out.txt"));

  imgbake::util::write_file_atomic(target, "replaced");
  EXPECT_EQ(imgbake::util::read_file(target), "replaced");
  EXPECT_THAT(Listing(), ElementsAre("out.txt"));

  imgbake::util::write_file_atomic(target, "");
  EXPECT_EQ(imgbake::util::read_file(target), "");
  EXPECT_THAT(Listing(), ElementsAre("out.txt"));
}

TEST_F(TempDirTest, WriteFileAtomicMode) {
  const fs::path target = dir_ / "key";
  imgbake::util::write_file_atomic(target, "secret", 0600);
  struct stat st {};
  ASSERT_EQ(stat(target.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  imgbake::util::write_file_atomic(dir_ / "pub", "x");
  ASSERT_EQ(stat((dir_ / "pub").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0644u);
}

TEST_F(TempDirTest, WriteFileAtomicBinaryContent) {
  const std::string data("a\0b\xff\n", 5);
  imgbake::util::write_file_atomic(dir_ / "bin", data);
  EXPECT_EQ(imgbake::util::read_file(dir_ / "bin"), data);
}

TEST_F(TempDirTest, WriteFileAtomicFailureLeavesNoTempFile) {
  // The target is a directory: the rename fails and the temporary file must go.
  fs::create_directory(dir_ / "target");
  EXPECT_THROW(imgbake::util::write_file_atomic(dir_ / "target", "x"), std::runtime_error);
  EXPECT_THAT(Listing(), ElementsAre("target"));
  // The directory does not exist at all.
  EXPECT_THROW(imgbake::util::write_file_atomic(dir_ / "nodir" / "f", "x"), std::runtime_error);
  EXPECT_THAT(Listing(), ElementsAre("target"));
}

TEST_F(TempDirTest, ReadFileErrorNamesThePath) {
  try {
    imgbake::util::read_file(dir_ / "missing.txt");
    ADD_FAILURE() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_THAT(e.what(), HasSubstr("missing.txt"));
  }
}

// ---------------------------------------------------------------- strings

TEST(Strings, SplitJoinTrim) {
  EXPECT_THAT(imgbake::util::split("a,,b", ','), ElementsAre("a", "", "b"));
  EXPECT_THAT(imgbake::util::split("", ','), ElementsAre(""));
  EXPECT_THAT(imgbake::util::split("a,", ','), ElementsAre("a", ""));
  EXPECT_EQ(imgbake::util::join({"a", "b", "c"}, ", "), "a, b, c");
  EXPECT_EQ(imgbake::util::join({}, ", "), "");
  EXPECT_EQ(imgbake::util::join({"x"}, ","), "x");
  EXPECT_EQ(imgbake::util::trim(" \t x y \r\n"), "x y");
  EXPECT_EQ(imgbake::util::trim("   "), "");
  EXPECT_EQ(imgbake::util::trim(""), "");
}

TEST(Uuid, Version4Format) {
  const std::regex v4("^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$");
  const std::string a = imgbake::util::uuid_v4();
  const std::string b = imgbake::util::uuid_v4();
  EXPECT_TRUE(std::regex_match(a, v4)) << a;
  EXPECT_TRUE(std::regex_match(b, v4)) << b;
  EXPECT_NE(a, b);
}

TEST(Host, UserAndHostname) {
  EXPECT_FALSE(imgbake::util::current_user().empty());
  EXPECT_FALSE(imgbake::util::hostname().empty());
}

}  // namespace
