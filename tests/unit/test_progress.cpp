// Blob progress for people and programs: the terminal renderer against a fake terminal (a memory
// stream whose bytes a tiny screen model replays: \r, \n, cursor up/down, clear to end of line),
// and the JSON event lines with their rate limit.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "imgbake/progress.h"
#include "imgbake/util.h"

namespace {

using imgbake::BlobProgressRenderer;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

const std::string kDigestA = "sha256:3f1a9c0b2d4e5f60718293a4b5c6d7e8f90123456789abcdef0123456789abcd";
const std::string kDigestB = "sha256:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
constexpr uint64_t kMiB = 1 << 20;

// What a terminal shows after these bytes: rows of text. Understands what the renderer may send
// (\r, \n, ESC[nA, ESC[nB, ESC[K) and fails the test on any other escape sequence.
std::vector<std::string> Screen(const std::string& bytes) {
  std::vector<std::string> rows(1);
  size_t row = 0, col = 0;
  for (size_t i = 0; i < bytes.size(); ++i) {
    char c = bytes[i];
    if (c == '\r') {
      col = 0;
    } else if (c == '\n') {
      ++row;
      col = 0;
      if (rows.size() <= row) rows.resize(row + 1);
    } else if (c == '\x1b') {
      EXPECT_LT(i + 1, bytes.size());
      EXPECT_EQ(bytes[i + 1], '[') << "not a CSI sequence at byte " << i;
      size_t j = i + 2;
      size_t n = 0;
      bool has_n = false;
      while (j < bytes.size() && std::isdigit(static_cast<unsigned char>(bytes[j]))) {
        n = n * 10 + static_cast<size_t>(bytes[j] - '0');
        has_n = true;
        ++j;
      }
      if (!has_n) n = 1;
      char op = j < bytes.size() ? bytes[j] : '?';
      if (op == 'A') {
        row = n > row ? 0 : row - n;
      } else if (op == 'B') {
        row += n;
        if (rows.size() <= row) rows.resize(row + 1);
      } else if (op == 'K') {
        if (rows[row].size() > col) rows[row].resize(col);
      } else {
        ADD_FAILURE() << "unexpected escape sequence ESC[" << op;
      }
      i = j;
    } else {
      if (rows[row].size() < col + 1) rows[row].resize(col + 1, ' ');
      rows[row][col++] = c;
    }
  }
  while (!rows.empty() && rows.back().empty()) rows.pop_back();
  return rows;
}

// A FILE* that collects what is written to it.
class MemoryTerminal {
 public:
  MemoryTerminal() : file_(open_memstream(&data_, &size_)) {}
  ~MemoryTerminal() {
    std::fclose(file_);
    std::free(data_);
  }
  FILE* file() { return file_; }
  std::string bytes() {
    std::fflush(file_);
    return std::string(data_, size_);
  }

 private:
  char* data_ = nullptr;
  size_t size_ = 0;
  FILE* file_;
};

struct FakeClock {
  Clock::time_point now = Clock::time_point() + 1h;
  std::function<Clock::time_point()> function() {
    return [this] { return now; };
  }
};

TEST(BlobProgressRenderer, DrawsNothingWhenNotATerminal) {
  MemoryTerminal out;
  BlobProgressRenderer renderer(out.file(), {.terminal = false, .columns = 100, .clock = {}});
  renderer.update(kDigestA, 10, 100);
  renderer.update(kDigestA, 100, 100);
  EXPECT_EQ(out.bytes(), "");
  EXPECT_FALSE(BlobProgressRenderer::is_terminal(out.file()));
}

TEST(BlobProgressRenderer, ShowsOneLinePerBlobRedrawnInPlace) {
  MemoryTerminal out;
  FakeClock clock;
  BlobProgressRenderer renderer(out.file(), {.terminal = true, .columns = 100, .clock = clock.function()});
  auto progress = renderer.callback();
  progress(kDigestA, 0, 200 * kMiB);
  progress(kDigestB, 0, 10 * kMiB);
  clock.now += 2s;
  progress(kDigestA, 100 * kMiB, 200 * kMiB);
  progress(kDigestB, 10 * kMiB, 10 * kMiB);

  std::vector<std::string> screen = Screen(out.bytes());
  ASSERT_EQ(screen.size(), 2u) << out.bytes();
  EXPECT_EQ(screen[0], "sha256:3f1a9c0b2d4e [===============>              ]  100.0 MiB / 200.0 MiB  50.0 MiB/s");
  EXPECT_EQ(screen[1], "sha256:001122334455 [==============================]  10.0 MiB / 10.0 MiB  5.0 MiB/s  done");

  clock.now += 2s;
  progress(kDigestA, 200 * kMiB, 200 * kMiB);
  screen = Screen(out.bytes());
  ASSERT_EQ(screen.size(), 2u);
  EXPECT_EQ(screen[0], "sha256:3f1a9c0b2d4e [==============================]  200.0 MiB / 200.0 MiB  50.0 MiB/s  done");
  EXPECT_EQ(screen[1].substr(0, 19), "sha256:001122334455") << "the other line stays";
}

TEST(BlobProgressRenderer, ALineNeverWrapsOnANarrowTerminal) {
  MemoryTerminal out;
  FakeClock clock;
  BlobProgressRenderer renderer(out.file(), {.terminal = true, .columns = 40, .clock = clock.function()});
  renderer.update(kDigestA, 1, 3ull << 30);
  clock.now += 1s;
  renderer.update(kDigestA, 1ull << 30, 3ull << 30);
  std::vector<std::string> screen = Screen(out.bytes());
  ASSERT_EQ(screen.size(), 1u);
  EXPECT_LE(screen[0].size(), 39u) << screen[0];
  EXPECT_EQ(screen[0].substr(0, 19), "sha256:3f1a9c0b2d4e");
}

TEST(BlobProgressRenderer, FormatsSizesAndRates) {
  EXPECT_EQ(BlobProgressRenderer::format_line(kDigestA, 512, 2048, 0, 200),
            "sha256:3f1a9c0b2d4e [=======>                      ]  512 B / 2.0 KiB");
  EXPECT_EQ(BlobProgressRenderer::format_line("sha256:ab", 3ull << 29, 2ull << 30, 4.0, 200),
            "sha256:ab [======================>       ]  1.5 GiB / 2.0 GiB  384.0 MiB/s");
  EXPECT_EQ(BlobProgressRenderer::format_line(kDigestB, 0, 0, 0, 200),
            "sha256:001122334455 [==============================]  0 B / 0 B  done");
}

TEST(JsonProgressEvents, WritesOneObjectPerLine) {
  std::vector<std::string> lines;
  auto progress = imgbake::json_progress_events([&](const std::string& l) { lines.push_back(l); }, 0ms);
  progress(kDigestA, 5, 10);
  progress(kDigestA, 10, 10);
  ASSERT_EQ(lines.size(), 2u);
  // The shape of every JSON event: "event" and "time" among keys in alphabetical order.
  auto first = nlohmann::json::parse(lines[0]);
  EXPECT_EQ(lines[0].rfind(R"({"digest":")" + kDigestA + R"(","done":5,"event":"progress","time":")", 0), 0u)
      << lines[0];
  EXPECT_NE(lines[0].find(R"(","total":10})"), std::string::npos) << lines[0];
  EXPECT_TRUE(imgbake::util::parse_rfc3339_seconds(first["time"].get<std::string>()).has_value());
  auto last = nlohmann::json::parse(lines[1]);
  EXPECT_EQ(last["done"], 10);
  EXPECT_EQ(last["total"], 10);
}

TEST(JsonProgressEvents, AreRateLimitedPerBlobButTheLastOneAlwaysComes) {
  std::vector<nlohmann::json> events;
  auto progress =
      imgbake::json_progress_events([&](const std::string& l) { events.push_back(nlohmann::json::parse(l)); }, 1h);
  for (uint64_t done = 0; done < 1000; done += 10) progress(kDigestA, done, 1000);
  progress(kDigestB, 1, 50);  // another blob is not held back by the first
  progress(kDigestA, 1000, 1000);
  progress(kDigestB, 50, 50);
  ASSERT_EQ(events.size(), 4u);
  EXPECT_EQ(events[0]["digest"], kDigestA);
  EXPECT_EQ(events[0]["done"], 0);
  EXPECT_EQ(events[1]["digest"], kDigestB);
  EXPECT_EQ(events[2]["digest"], kDigestA);
  EXPECT_EQ(events[2]["done"], 1000);
  EXPECT_EQ(events[3]["done"], 50);
  for (const auto& e : events) EXPECT_EQ(e["event"], "progress");
}

}  // namespace
