#include "imgbake/ui.h"

#include <poll.h>
#include <unistd.h>

#include <cerrno>

#include <algorithm>
#include <cstring>

#include "imgbake/cancel.h"
#include "imgbake/util.h"

namespace imgbake {

void Masker::add(const std::string& secret) {
  auto add_one = [&](const std::string& s) {
    if (s.empty() || std::find(secrets_.begin(), secrets_.end(), s) != secrets_.end()) return;
    secrets_.push_back(s);
  };
  add_one(secret);
  if (secret.find('\n') != std::string::npos) {
    for (const auto& line : util::split(secret, '\n')) {
      std::string t = util::trim(line);
      // Very short fragments (a lone "}" of a JSON key file) would mask unrelated text.
      if (t.size() >= 4) add_one(line.back() == '\r' ? line.substr(0, line.size() - 1) : line);
    }
  }
  std::sort(secrets_.begin(), secrets_.end(), [](const auto& a, const auto& b) { return a.size() > b.size(); });
}

std::string Masker::mask(std::string_view text) const {
  if (secrets_.empty()) return std::string(text);
  // Find every occurrence of every secret in the original text, merge overlapping
  // ranges, and replace each merged range once: overlapping secrets leave no
  // fragment, and the placeholder itself is never masked again.
  std::vector<std::pair<size_t, size_t>> ranges;
  for (const auto& s : secrets_) {
    for (size_t pos = text.find(s); pos != std::string_view::npos; pos = text.find(s, pos + 1))
      ranges.emplace_back(pos, pos + s.size());
  }
  if (ranges.empty()) return std::string(text);
  std::sort(ranges.begin(), ranges.end());
  std::string out;
  size_t at = 0;
  for (size_t i = 0; i < ranges.size();) {
    size_t begin = ranges[i].first, end = ranges[i].second;
    for (++i; i < ranges.size() && ranges[i].first < end; ++i) end = std::max(end, ranges[i].second);
    out.append(text.substr(at, begin - at));
    out += "<sensitive>";
    at = end;
  }
  out.append(text.substr(at));
  return out;
}

Ui::Ui(OutputMode mode, FILE* out, FILE* err, bool color, std::shared_ptr<const Masker> masker)
    : mode_(mode), out_(out), err_(err), color_(color), masker_(std::move(masker)) {}

bool Ui::interactive() const { return isatty(STDIN_FILENO) && isatty(fileno(err_)); }

namespace {
const char* kBold = "\033[1m";
const char* kGreen = "\033[32m";
const char* kRed = "\033[31m";
const char* kYellow = "\033[33m";
const char* kCyan = "\033[36m";
const char* kReset = "\033[0m";

std::string now_rfc3339() { return util::format_rfc3339(std::chrono::system_clock::now(), true); }

double seconds(std::chrono::nanoseconds d) { return std::chrono::duration<double>(d).count(); }
}  // namespace

std::string Ui::prefix(const std::string& build) const { return build.empty() ? "" : build + ": "; }

void Ui::emit(nlohmann::json ev) {
  mask_strings(ev);
  nlohmann::json line = {{"time", now_rfc3339()}};
  line.update(ev);
  std::string s = line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  std::lock_guard lock(mu_);
  std::fprintf(out_, "%s\n", s.c_str());
  std::fflush(out_);
}

void Ui::human(FILE* f, const std::string& build, const char* color, std::string_view marker, std::string_view text) {
  std::string masked = mask(text);
  std::string pre = mask(prefix(build));
  // Colour only where that stream is a terminal (stdout may be, stderr not).
  bool colored = color_ && color && isatty(fileno(f));
  std::lock_guard lock(mu_);
  for (const auto& line : util::split(masked, '\n')) {
    if (colored)
      std::fprintf(f, "%s%.*s%s%s%s\n", color, static_cast<int>(marker.size()), marker.data(), pre.c_str(),
                   line.c_str(), kReset);
    else
      std::fprintf(f, "%.*s%s%s\n", static_cast<int>(marker.size()), marker.data(), pre.c_str(), line.c_str());
  }
  std::fflush(f);
}

void Ui::build_start(const std::string& build, const std::string& type) {
  if (mode_ == OutputMode::Json) return emit({{"event", "build_start"}, {"build", build}, {"builder_type", type}});
  human(out_, build, kBold, "==> ", "build started (" + type + ")");
}

void Ui::build_end(const BuildSummary& s) {
  if (mode_ == OutputMode::Json) {
    nlohmann::json ev = {{"event", "build_end"},
                         {"build", s.name},
                         {"status", s.ok          ? "ok"
                                    : s.cancelled ? "cancelled"
                                                  : "failed"},
                         {"duration_s", seconds(s.duration)}};
    if (!s.error.empty()) ev["error"] = mask(s.error);
    return emit(ev);
  }
  if (s.ok)
    human(out_, s.name, kGreen, "==> ", "build finished after " + util::format_duration(s.duration));
  else
    human(err_, s.name, kRed, "==> ",
          std::string(s.cancelled ? "build cancelled" : "build failed") + " after " +
              util::format_duration(s.duration) + (s.error.empty() ? "" : ": " + s.error));
}

void Ui::step_start(const std::string& build, const std::string& step, const std::string& key) {
  if (mode_ == OutputMode::Json) return emit({{"event", "step_start"}, {"build", build}, {"step", step}, {"key", key}});
  human(out_, build, kBold, "==> ", step);
}

void Ui::step_end(const std::string& build, const std::string& step, bool ok, std::chrono::nanoseconds d,
                  const std::string& key) {
  if (mode_ == OutputMode::Json)
    return emit({{"event", "step_end"},
                 {"build", build},
                 {"step", step},
                 {"key", key},
                 {"status", ok ? "ok" : "failed"},
                 {"duration_s", seconds(d)}});
  human(ok ? out_ : err_, build, ok ? kGreen : kRed, "    ",
        std::string(ok ? "done: " : "FAILED: ") + step + " (" + util::format_duration(d) + ")");
}

void Ui::say(const std::string& build, std::string_view text) {
  if (mode_ == OutputMode::Json) return emit({{"event", "message"}, {"build", build}, {"text", mask(text)}});
  human(out_, build, kBold, "==> ", text);
}

void Ui::message(const std::string& build, std::string_view text) {
  if (mode_ == OutputMode::Json) return emit({{"event", "message"}, {"build", build}, {"text", mask(text)}});
  human(out_, build, nullptr, "    ", text);
}

void Ui::output(const std::string& build, Stream s, std::string_view line) {
  if (mode_ == OutputMode::Json)
    return emit({{"event", "log"},
                 {"build", build},
                 {"stream", s == Stream::Stdout ? "stdout" : "stderr"},
                 {"text", mask(line)}});
  human(out_, build, s == Stream::Stderr ? kYellow : nullptr, "    ", line);
}

void Ui::warn(const std::string& build, std::string_view text) {
  if (mode_ == OutputMode::Json) return emit({{"event", "warning"}, {"build", build}, {"text", mask(text)}});
  human(err_, build, kYellow, "warning: ", text);
}

void Ui::error(const std::string& build, std::string_view text) {
  if (mode_ == OutputMode::Json) return emit({{"event", "error"}, {"build", build}, {"text", mask(text)}});
  human(err_, build, kRed, "error: ", text);
}

void Ui::note(std::string_view text) {
  if (mode_ == OutputMode::Json) return emit({{"event", "message"}, {"text", mask(text)}});
  human(out_, "", nullptr, "", text);
}

void Ui::artifact(const std::string& build, const Artifact& a) {
  if (mode_ == OutputMode::Json) {
    nlohmann::json files = nlohmann::json::array();
    for (const auto& f : a.files) files.push_back({{"path", f.path}, {"size", f.size}, {"sha256", f.sha256}});
    return emit(
        {{"event", "artifact"}, {"build", build}, {"builder_type", a.builder_type}, {"id", a.id}, {"files", files}});
  }
  human(out_, build, kCyan, "--> ", "artifact " + a.describe());
  for (const auto& f : a.files) human(out_, build, nullptr, "    ", "  " + f.path);
}

void Ui::summary(const std::vector<BuildSummary>& builds) {
  if (mode_ == OutputMode::Json) {
    nlohmann::json arr = nlohmann::json::array();
    for (const auto& b : builds) {
      nlohmann::json arts = nlohmann::json::array();
      for (const auto& a : b.artifacts) arts.push_back(a->id);
      arr.push_back({{"build", b.name},
                     {"status", b.ok          ? "ok"
                                : b.cancelled ? "cancelled"
                                              : "failed"},
                     {"duration_s", seconds(b.duration)},
                     {"image", b.image_ref},
                     {"artifacts", arts}});
    }
    return emit({{"event", "summary"}, {"builds", arr}});
  }
  size_t wname = 5, wtime = 4, wimage = 5;
  std::vector<std::string> times;
  for (const auto& b : builds) {
    wname = std::max(wname, b.name.size());
    wimage = std::max(wimage, b.image_ref.size());
    times.push_back(util::format_duration(b.duration));
    wtime = std::max(wtime, times.back().size());
  }
  bool color = color_ && isatty(fileno(out_));
  std::lock_guard lock(mu_);
  std::fprintf(out_, "\n%s%-*s  %-9s  %-*s  %-*s  %s%s\n", color ? kBold : "", static_cast<int>(wname), "BUILD",
               "STATUS", static_cast<int>(wtime), "TIME", static_cast<int>(wimage), "IMAGE", "ARTIFACTS",
               color ? kReset : "");
  for (size_t i = 0; i < builds.size(); ++i) {
    const auto& b = builds[i];
    std::string status = b.ok ? "ok" : b.cancelled ? "cancelled" : "failed";
    std::string arts;
    for (const auto& a : b.artifacts) arts += (arts.empty() ? "" : ", ") + a->describe();
    if (arts.empty()) arts = "-";
    const char* c = !color ? "" : b.ok ? kGreen : kRed;
    std::string image = b.image_ref.empty() ? "-" : b.image_ref;
    std::fprintf(out_, "%-*s  %s%-9s%s  %-*s  %-*s  %s\n", static_cast<int>(wname), mask(b.name).c_str(), c,
                 status.c_str(), color ? kReset : "", static_cast<int>(wtime), times[i].c_str(),
                 static_cast<int>(wimage), mask(image).c_str(), mask(arts).c_str());
  }
  std::fflush(out_);
}

std::optional<std::string> Ui::ask(const std::string& build, std::string_view question) {
  if (!interactive()) return std::nullopt;
  {
    std::lock_guard lock(mu_);
    bool color = color_ && isatty(fileno(err_));
    std::fprintf(err_, "%s%s%s ", color ? kBold : "", mask(prefix(build) + std::string(question)).c_str(),
                 color ? kReset : "");
    std::fflush(err_);
  }
  // Read the answer byte by byte with poll(), so that an interrupt ends the wait.
  std::string line;
  const CancelToken& cancel = global_cancel();
  while (true) {
    struct pollfd fds[2] = {{STDIN_FILENO, POLLIN, 0}, {cancel.fd(), POLLIN, 0}};
    int r = poll(fds, 2, -1);
    if (r < 0 && errno != EINTR) return std::nullopt;
    cancel.throw_if_cancelled();
    if (r <= 0 || !(fds[0].revents & (POLLIN | POLLHUP))) continue;
    char c;
    ssize_t n = ::read(STDIN_FILENO, &c, 1);
    if (n <= 0) return line.empty() ? std::nullopt : std::optional(line);
    if (c == '\n') return line;
    line += c;
  }
}

}  // namespace imgbake
