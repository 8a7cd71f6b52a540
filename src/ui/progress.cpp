// Blob progress: terminal lines redrawn in place, and rate-limited JSON event lines.
#include "imgbake/progress.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <memory>
#include <utility>

#include <nlohmann/json.hpp>

#include "imgbake/util.h"

namespace imgbake {

namespace {

constexpr int kDefaultColumns = 80;
constexpr int kMaxBarWidth = 30;
constexpr size_t kShortDigestHex = 12;  // as docker shows layer ids

// "sha256:3f1a9c0b2d4e" of "sha256:3f1a9c0b2d4e…".
std::string short_digest(const std::string& digest) {
  size_t colon = digest.find(':');
  if (colon == std::string::npos) return digest.substr(0, kShortDigestHex);
  return digest.substr(0, colon + 1 + kShortDigestHex);
}

// "512 B", "12.3 KiB", "512.0 MiB", "2.0 GiB".
std::string human_bytes(double bytes) {
  static const char* const kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int unit = 0;
  while (bytes >= 1024 && unit < 4) {
    bytes /= 1024;
    ++unit;
  }
  char text[32];
  if (unit == 0)
    std::snprintf(text, sizeof text, "%.0f %s", bytes, kUnits[unit]);
  else
    std::snprintf(text, sizeof text, "%.1f %s", bytes, kUnits[unit]);
  return text;
}

}  // namespace

BlobProgressRenderer::BlobProgressRenderer(FILE* out, Options options) : out_(out), options_(std::move(options)) {}

bool BlobProgressRenderer::is_terminal(FILE* f) { return f && isatty(fileno(f)); }

BlobProgressRenderer::Clock::time_point BlobProgressRenderer::now() const {
  return options_.clock ? options_.clock() : Clock::now();
}

int BlobProgressRenderer::columns() const {
  if (options_.columns > 0) return options_.columns;
  winsize size{};
  if (ioctl(fileno(out_), TIOCGWINSZ, &size) == 0 && size.ws_col > 0) return size.ws_col;
  return kDefaultColumns;
}

std::string BlobProgressRenderer::format_line(const std::string& digest, uint64_t done, uint64_t total, double seconds,
                                              int columns) {
  std::string numbers = "  " + human_bytes(static_cast<double>(done)) + " / " + human_bytes(static_cast<double>(total));
  if (seconds > 0) numbers += "  " + human_bytes(static_cast<double>(done) / seconds) + "/s";
  if (done >= total) numbers += "  done";
  std::string name = short_digest(digest);
  // The bar takes what is left of the line, up to kMaxBarWidth; on a narrow terminal it goes first.
  int room = columns - 1 - static_cast<int>(name.size() + numbers.size()) - 3;
  int width = std::min(room, kMaxBarWidth);
  std::string line = name;
  if (width >= 5) {
    double fraction = total ? std::min(1.0, static_cast<double>(done) / static_cast<double>(total)) : 1.0;
    int filled = static_cast<int>(fraction * width);
    std::string bar(static_cast<size_t>(width), ' ');
    std::fill_n(bar.begin(), filled, '=');
    if (filled < width && filled > 0) bar[static_cast<size_t>(filled)] = '>';
    line += " [" + bar + "]";
  }
  line += numbers;
  // A line longer than the terminal wraps and the cursor moves would miss it.
  if (columns > 1 && line.size() > static_cast<size_t>(columns - 1)) line.resize(static_cast<size_t>(columns - 1));
  return line;
}

void BlobProgressRenderer::update(const std::string& digest, uint64_t done, uint64_t total) {
  if (!options_.terminal || !out_) return;
  std::lock_guard lock(mutex_);
  auto t = now();
  auto it = std::find_if(lines_.begin(), lines_.end(), [&](const Line& l) { return l.digest == digest; });
  bool is_new = it == lines_.end();
  if (is_new) {
    lines_.push_back(Line{digest, t});
    it = std::prev(lines_.end());
  }
  double seconds = std::chrono::duration<double>(t - it->started).count();
  std::string text = format_line(digest, done, total, seconds, columns());
  std::string out;
  if (is_new) {
    // The cursor sits at the start of the line below the last blob's line.
    out = text + "\n";
  } else {
    // Up to the blob's line, redraw it (clearing what is left of the old text), back down.
    size_t up = static_cast<size_t>(std::distance(it, lines_.end()));
    out = "\x1b[" + std::to_string(up) + "A\r" + text + "\x1b[K\x1b[" + std::to_string(up) + "B\r";
  }
  std::fwrite(out.data(), 1, out.size(), out_);
  std::fflush(out_);
}

BlobProgressCallback BlobProgressRenderer::callback() {
  return [this](const std::string& digest, uint64_t done, uint64_t total) { update(digest, done, total); };
}

BlobProgressCallback json_progress_events(std::function<void(const std::string& line)> write_line,
                                          std::chrono::milliseconds interval) {
  using Clock = std::chrono::steady_clock;
  struct State {
    std::function<void(const std::string&)> write_line;
    std::chrono::milliseconds interval;
    std::mutex mutex;
    std::map<std::string, Clock::time_point> last_line;  // blobs still moving
  };
  auto state = std::make_shared<State>();
  state->write_line = std::move(write_line);
  state->interval = interval;
  return [state](const std::string& digest, uint64_t done, uint64_t total) {
    bool complete = done >= total;
    {
      std::lock_guard lock(state->mutex);
      auto now = Clock::now();
      auto it = state->last_line.find(digest);
      if (complete) {
        if (it != state->last_line.end()) state->last_line.erase(it);
      } else if (it == state->last_line.end()) {
        state->last_line.emplace(digest, now);
      } else if (now - it->second < state->interval) {
        return;
      } else {
        it->second = now;
      }
    }
    // The shape of every JSON event (ui.h): "event" and "time" among keys in alphabetical order.
    nlohmann::json event = {{"time", util::format_rfc3339(std::chrono::system_clock::now(), true)},
                            {"event", "progress"},
                            {"digest", digest},
                            {"done", done},
                            {"total", total}};
    state->write_line(event.dump());
  };
}

}  // namespace imgbake
