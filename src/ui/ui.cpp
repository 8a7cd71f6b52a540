#include "imgbake/ui.h"

#include <poll.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdio>

#include <algorithm>
#include <cstring>

#include "imgbake/cancel.h"
#include "imgbake/json.h"
#include "imgbake/machine_readable.h"
#include "imgbake/text_encoding.h"
#include "imgbake/util.h"

namespace imgbake {

namespace {

// As JSON writes it inside its quotes.
std::string json_escaped(std::string_view s) {
  std::string q = json::quote(s);
  return q.substr(1, q.size() - 2);
}

std::string shell_quoted(std::string_view s) {
  std::string out;
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out;
}

}  // namespace

void Masker::add(const std::string& secret) {
  std::unique_lock lock(mu_);
  const std::string digest = "<sensitive sha256:" + util::sha256_hex(secret).substr(0, 16) + ">";
  auto add_one = [&](const std::string& s) {
    if (s.empty() || digest_of_.count(s)) return;
    secrets_.push_back(s);
    digest_of_[s] = digest;
  };
  auto add_forms = [&](const std::string& s) {
    add_one(s);
    add_one(json_escaped(s));
    add_one(shell_quoted(s));
    add_one(util::percent_encode(s));
  };
  add_forms(secret);
  if (secret.find('\n') != std::string::npos) {
    for (const auto& line : util::split(secret, '\n')) {
      std::string t = util::trim(line);
      // Very short fragments (a lone "}" of a JSON key file) would mask unrelated text.
      if (t.size() >= 4) add_forms(line.back() == '\r' ? line.substr(0, line.size() - 1) : line);
    }
  }
  std::sort(secrets_.begin(), secrets_.end(), [](const auto& a, const auto& b) { return a.size() > b.size(); });
}

bool Masker::empty() const {
  std::shared_lock lock(mu_);
  return secrets_.empty();
}

template <typename Replace>
std::string Masker::replace_all(std::string_view text, Replace replacement) const {
  std::shared_lock lock(mu_);
  if (secrets_.empty()) return std::string(text);
  // Find every occurrence of every secret in the original text, merge overlapping
  // ranges, and replace each merged range once: overlapping secrets leave no
  // fragment, and the placeholder itself is never masked again.
  struct Range {
    size_t begin, end;
    const std::string* secret;
  };
  std::vector<Range> ranges;
  for (const auto& s : secrets_) {
    for (size_t pos = text.find(s); pos != std::string_view::npos; pos = text.find(s, pos + 1))
      ranges.push_back({pos, pos + s.size(), &s});
  }
  if (ranges.empty()) return std::string(text);
  std::sort(ranges.begin(), ranges.end(),
            [](const Range& a, const Range& b) { return a.begin != b.begin ? a.begin < b.begin : a.end > b.end; });
  std::string out;
  size_t at = 0;
  for (size_t i = 0; i < ranges.size();) {
    size_t begin = ranges[i].begin, end = ranges[i].end;
    const std::string* first = ranges[i].secret;
    for (++i; i < ranges.size() && ranges[i].begin < end; ++i) end = std::max(end, ranges[i].end);
    out.append(text.substr(at, begin - at));
    out += replacement(*first);
    at = end;
  }
  out.append(text.substr(at));
  return out;
}

std::string Masker::mask(std::string_view text) const {
  return replace_all(text, [](const std::string&) { return std::string("<sensitive>"); });
}

std::string Masker::redact(std::string_view text) const {
  return replace_all(text, [this](const std::string& s) { return digest_of_.at(s); });
}

Ui::Ui(OutputMode mode, FILE* out, FILE* err, bool color, std::shared_ptr<Masker> masker)
    : mode_(mode),
      out_(out),
      err_(err),
      color_(color),
      masker_(masker ? std::move(masker) : std::make_shared<Masker>()) {}

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

void Ui::touch(const std::string& build) {
  std::lock_guard lock(activity_mu_);
  last_shown_[build] = std::chrono::steady_clock::now();
}

std::chrono::steady_clock::duration Ui::quiet_for(const std::string& build) {
  std::lock_guard lock(activity_mu_);
  auto now = std::chrono::steady_clock::now();
  auto it = last_shown_.find(build);
  if (it == last_shown_.end()) it = last_shown_.emplace(build, now).first;
  return now - it->second;
}

void Ui::machine(const std::string& build, std::string_view type, std::vector<std::string> data) {
  for (auto& d : data) d = mask(d);
  std::string line = packer_line(mask(build), type, data);
  std::lock_guard lock(mu_);
  std::fputs(line.c_str(), out_);
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
  if (mode_ == OutputMode::Machine)
    return machine("", "ui", {"say", "==> " + prefix(build) + "build started (" + type + ")"});
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
  if (mode_ == OutputMode::Machine) {
    // Packer's own sentences: "Build 'x' finished after …" / "Build 'x' errored after …: …".
    std::string took = util::format_duration(s.duration);
    if (s.ok) return machine("", "ui", {"say", "Build '" + s.name + "' finished after " + took + "."});
    return machine("", "ui",
                   {"error", "Build '" + s.name + "' " + (s.cancelled ? "cancelled" : "errored") + " after " + took +
                                 (s.error.empty() ? "." : ": " + s.error)});
  }
  if (s.ok)
    human(out_, s.name, kGreen, "==> ", "build finished after " + util::format_duration(s.duration));
  else
    human(err_, s.name, kRed, "==> ",
          std::string(s.cancelled ? "build cancelled" : "build failed") + " after " +
              util::format_duration(s.duration) + (s.error.empty() ? "" : ": " + s.error));
}

void Ui::step_start(const std::string& build, const std::string& step, const std::string& key) {
  touch(build);
  if (mode_ == OutputMode::Json) return emit({{"event", "step_start"}, {"build", build}, {"step", step}, {"key", key}});
  if (mode_ == OutputMode::Machine) return machine("", "ui", {"say", "==> " + prefix(build) + step});
  human(out_, build, kBold, "==> ", step);
}

void Ui::step_end(const std::string& build, const std::string& step, bool ok, std::chrono::nanoseconds d,
                  const std::string& key, const std::optional<StepCache>& cache) {
  if (mode_ == OutputMode::Json) {
    nlohmann::json ev = {
        {"event", "step_end"},     {"build", build}, {"step", step}, {"key", key}, {"status", ok ? "ok" : "failed"},
        {"duration_s", seconds(d)}};
    if (cache) ev["cache"] = {{"hit", cache->hit}, {"key", cache->key}};
    return emit(ev);
  }
  if (mode_ == OutputMode::Machine)
    return machine("", "ui",
                   {ok ? "message" : "error", "    " + prefix(build) + (ok ? "done: " : "FAILED: ") + step + " (" +
                                                  util::format_duration(d) + ")"});
  human(ok ? out_ : err_, build, ok ? kGreen : kRed, "    ",
        std::string(ok ? "done: " : "FAILED: ") + step + " (" + util::format_duration(d) + ")");
}

void Ui::say(const std::string& build, std::string_view text) {
  touch(build);
  if (mode_ == OutputMode::Json) return emit({{"event", "message"}, {"build", build}, {"text", mask(text)}});
  if (mode_ == OutputMode::Machine) return machine("", "ui", {"say", "==> " + prefix(build) + std::string(text)});
  human(out_, build, kBold, "==> ", text);
}

void Ui::message(const std::string& build, std::string_view text) {
  touch(build);
  if (mode_ == OutputMode::Json) return emit({{"event", "message"}, {"build", build}, {"text", mask(text)}});
  if (mode_ == OutputMode::Machine) return machine("", "ui", {"message", "    " + prefix(build) + std::string(text)});
  human(out_, build, nullptr, "    ", text);
}

void Ui::output(const std::string& build, Stream s, std::string_view line) {
  touch(build);
  // Carriage-return progress ("Reading database ... 5%\r… 100%"): the line's final state.
  while (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (size_t cr = line.rfind('\r'); cr != std::string_view::npos) line.remove_prefix(cr + 1);
  if (mode_ == OutputMode::Json)
    return emit({{"event", "log"},
                 {"build", build},
                 {"stream", s == Stream::Stdout ? "stdout" : "stderr"},
                 {"text", mask(line)}});
  if (mode_ == OutputMode::Machine) return machine("", "ui", {"message", "    " + prefix(build) + std::string(line)});
  human(out_, build, s == Stream::Stderr ? kYellow : nullptr, "    ", line);
}

void Ui::warn(const std::string& build, std::string_view text) {
  touch(build);
  if (mode_ == OutputMode::Json) return emit({{"event", "warning"}, {"build", build}, {"text", mask(text)}});
  // Packer's Ui has no warning kind; its warnings are "say" lines.
  if (mode_ == OutputMode::Machine) return machine("", "ui", {"say", "Warning: " + prefix(build) + std::string(text)});
  human(err_, build, kYellow, "warning: ", text);
}

void Ui::error(const std::string& build, std::string_view text, const std::string& step,
               std::optional<int> exit_status) {
  touch(build);
  if (mode_ == OutputMode::Json) {
    nlohmann::json ev = {{"event", "error"}, {"build", build}, {"text", mask(text)}};
    if (!step.empty()) ev["step"] = step;
    if (exit_status) ev["exit_status"] = *exit_status;
    return emit(ev);
  }
  if (mode_ == OutputMode::Machine) return machine("", "ui", {"error", prefix(build) + std::string(text)});
  human(err_, build, kRed, "error: ", text);
}

void Ui::commit(const std::string& build, const CommitInfo& c) {
  touch(build);
  std::string ref = c.image + ":" + c.version;
  if (mode_ == OutputMode::Json)
    return emit({{"event", "commit"},
                 {"build", build},
                 {"image", c.image},
                 {"version", c.version},
                 {"ref", ref},
                 {"digest", c.digest},
                 {"new_version", c.new_version},
                 {"store", c.store},
                 {"signed_by", c.signed_by},
                 {"channels", c.channels}});
  if (!c.new_version) {
    say(build, "unchanged: " + ref + " (" + c.digest + ") already has this content; no new version");
    return;
  }
  say(build,
      "committed " + ref + " (" + c.digest + ") to the store " + c.store + "; provenance signed by " + c.signed_by);
  for (const auto& ch : c.channels) message(build, "channel '" + ch + "' now points at " + ref);
}

void Ui::note(std::string_view text) {
  if (mode_ == OutputMode::Json) return emit({{"event", "message"}, {"text", mask(text)}});
  if (mode_ == OutputMode::Machine) return machine("", "ui", {"say", std::string(text)});
  human(out_, "", nullptr, "", text);
}

void Ui::artifact(const std::string& build, const Artifact& a) {
  if (mode_ == OutputMode::Json) {
    nlohmann::json files = nlohmann::json::array();
    for (const auto& f : a.files) files.push_back({{"path", f.path}, {"size", f.size}, {"sha256", f.sha256}});
    return emit(
        {{"event", "artifact"}, {"build", build}, {"builder_type", a.builder_type}, {"id", a.id}, {"files", files}});
  }
  // Packer lists artifacts once all builds are done: summary() writes them.
  if (mode_ == OutputMode::Machine) return;
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
                     {"digest", b.image_digest},
                     {"artifacts", arts}});
    }
    return emit({{"event", "summary"}, {"builds", arr}});
  }
  if (mode_ == OutputMode::Machine) return machine_summary(builds);
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

void Ui::machine_summary(const std::vector<BuildSummary>& builds) {
  // The tail of `packer build -machine-readable`, line for line.
  size_t failed = 0;
  bool any_artifact = false;
  for (const auto& b : builds) {
    failed += b.ok ? 0 : 1;
    any_artifact = any_artifact || (b.ok && !b.artifacts.empty());
  }
  if (failed > 0) {
    machine("", "error-count", {std::to_string(failed)});
    machine("", "ui", {"error", "\n==> Some builds didn't complete successfully and had errors:"});
    for (const auto& b : builds) {
      if (b.ok) continue;
      std::string why = b.error.empty() ? (b.cancelled ? "cancelled" : "failed") : b.error;
      machine(b.name, "error", {why});
      machine("", "ui", {"error", "--> " + b.name + ": " + why});
    }
  }
  if (!any_artifact) return machine("", "ui", {"say", "\n==> Builds finished but no artifacts were created."});
  machine("", "ui", {"say", "\n==> Builds finished. The artifacts of successful builds are:"});
  for (const auto& b : builds) {
    if (!b.ok || b.artifacts.empty()) continue;
    machine(b.name, "artifact-count", {std::to_string(b.artifacts.size())});
    for (size_t i = 0; i < b.artifacts.size(); ++i) {
      const Artifact& a = *b.artifacts[i];
      std::string n = std::to_string(i);
      machine(b.name, "artifact", {n, "builder-id", packer_builder_id(a.builder_type)});
      machine(b.name, "artifact", {n, "id", a.id});
      machine(b.name, "artifact", {n, "string", a.describe()});
      machine(b.name, "artifact", {n, "files-count", std::to_string(a.files.size())});
      for (size_t f = 0; f < a.files.size(); ++f)
        machine(b.name, "artifact", {n, "file", std::to_string(f), a.files[f].path});
      machine(b.name, "artifact", {n, "end"});
      machine("", "ui", {"say", "--> " + b.name + ": " + a.describe()});
    }
    // imgbake's own fact: where the build was committed in the store.
    if (!b.image_ref.empty()) machine(b.name, "image", {b.image_ref});
  }
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
