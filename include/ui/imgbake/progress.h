// Progress of blob transfers (registry pushes and pulls) for people and for programs: a
// terminal view with one line per blob, redrawn in place, and JSON event lines for
// --output json. Both consume the calls of registry::ClientOptions::progress.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace imgbake {

// (digest, bytes moved so far, size of the blob): the shape of registry::ClientOptions::progress.
using BlobProgressCallback = std::function<void(const std::string& digest, uint64_t done, uint64_t total)>;

// One line per blob on a terminal ("sha256:3f1a9c0b2d4e [=====>     ]  512.0 MiB / 2.0 GiB
// 180.3 MiB/s"), each redrawn in place with ANSI cursor moves as its numbers change. Lines are
// added below the cursor, so nothing else may write to `out` while blobs move. Not a terminal:
// draws nothing (logs and CI output stay clean).
class BlobProgressRenderer {
 public:
  using Clock = std::chrono::steady_clock;
  struct Options {
    bool terminal = false;                     // usually is_terminal(out)
    int columns = 0;                           // lines are cut to fit; 0: the terminal's width (80 when unknown)
    std::function<Clock::time_point()> clock;  // for tests; default Clock::now
  };

  BlobProgressRenderer(FILE* out, Options options);
  static bool is_terminal(FILE* f);

  // Draws or redraws the blob's line. Thread-safe.
  void update(const std::string& digest, uint64_t done, uint64_t total);
  // A callback for ClientOptions::progress that forwards to update(); `this` must outlive it.
  BlobProgressCallback callback();

  // The text of one line, without colours or cursor moves.
  static std::string format_line(const std::string& digest, uint64_t done, uint64_t total, double seconds, int columns);

 private:
  struct Line {
    std::string digest;
    Clock::time_point started;
  };
  Clock::time_point now() const;
  int columns() const;

  FILE* out_;
  Options options_;
  std::mutex mutex_;
  std::vector<Line> lines_;  // in the order they appear on the terminal
};

// A callback for ClientOptions::progress that writes one JSON object per line through
// `write_line` (without the newline):
//   {"type":"progress","digest":"sha256:…","done":1048576,"total":2147483648}
// At most one line per blob per `interval`, and always the last one (done == total). Thread-safe.
BlobProgressCallback json_progress_events(std::function<void(const std::string& line)> write_line,
                                          std::chrono::milliseconds interval = std::chrono::milliseconds(100));

}  // namespace imgbake
