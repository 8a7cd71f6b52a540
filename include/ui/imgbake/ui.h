// Everything a user sees goes through the Ui: a human view (build-name prefix,
// colours only on a TTY, step durations, a summary table), JSON events, one
// object per line, or Packer's -machine-readable CSV lines (machine_readable.h). Every string is passed through the
// Masker first, so sensitive values never reach a terminal, a log or a CI event stream.
#pragma once

#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "imgbake/artifact.h"

namespace imgbake {

class Masker {
 public:
  // Registers a secret. Multi-line secrets are also masked line by line, so a
  // secret that a script prints across several output lines is caught too.
  // Every encoding of it the program may print is masked too: JSON-escaped, shell-quoted
  // (' as '\''), URL-encoded. Safe while other threads mask: a builder registers the secrets
  // it learns at run time (temporary credentials) through Ui::add_secret.
  void add(const std::string& secret);
  std::string mask(std::string_view text) const;
  // Like mask, but each secret becomes "<sensitive sha256:HEX16>" (a digest of the secret,
  // never the secret): for cache key material, which must change when a secret changes.
  std::string redact(std::string_view text) const;
  bool empty() const;

 private:
  template <typename Replace>
  std::string replace_all(std::string_view text, Replace replacement) const;
  std::vector<std::string> secrets_;              // longest first
  std::map<std::string, std::string> digest_of_;  // each form of a secret -> the digest of the secret
  mutable std::shared_mutex mu_;
};

// Machine: Packer's `-machine-readable` stream, everything on `out`: "ui,say" / "ui,message" /
// "ui,error" lines as the build goes, then Packer's error-count/error and
// artifact-count/artifact lines at the end (summary()).
enum class OutputMode { Human, Json, Machine };
enum class Stream { Stdout, Stderr };

// How a step used a builder's cache (only steps of builders that cache report it).
struct StepCache {
  bool hit = false;
  std::string key;  // the full cache key (the messages show its first 12 characters)
};

struct BuildSummary {
  std::string name;
  std::string type;
  bool ok = false;
  bool cancelled = false;
  std::chrono::nanoseconds duration{};
  std::string error;
  std::vector<std::shared_ptr<Artifact>> artifacts;
  struct StepTime {
    std::string name;
    std::chrono::nanoseconds duration{};
    bool ok = true;
    std::string key;  // the step's content key ("" for post-processors)
  };
  std::string image_ref;     // NAME:VERSION in the store, when committed
  std::string image_digest;  // its manifest digest
  std::vector<StepTime> steps;
};

// What a build committed to the store (the `commit` event).
struct CommitInfo {
  std::string image;                  // NAME
  std::string version;                // VERSION
  std::string digest;                 // the manifest digest
  bool new_version = true;            // false: the store already had this content (no new version)
  std::string store;                  // the store's directory
  std::string signed_by;              // the provenance key's id
  std::vector<std::string> channels;  // channels the template moved to it
};

class Ui {
 public:
  // `out` receives the human view or the JSON events; `err` receives human errors.
  Ui(OutputMode mode, FILE* out, FILE* err, bool color, std::shared_ptr<Masker> masker);

  OutputMode mode() const { return mode_; }
  bool interactive() const;  // stdin and stderr are terminals

  void build_start(const std::string& build, const std::string& type);
  void build_end(const BuildSummary& s);
  void step_start(const std::string& build, const std::string& step, const std::string& key);
  void step_end(const std::string& build, const std::string& step, bool ok, std::chrono::nanoseconds d,
                const std::string& key, const std::optional<StepCache>& cache = std::nullopt);
  void say(const std::string& build, std::string_view text);      // "==> build: text"
  void message(const std::string& build, std::string_view text);  // "    build: text"
  void output(const std::string& build, Stream s, std::string_view line);
  void warn(const std::string& build, std::string_view text);
  // `step` and `exit_status` (of a command that failed) go into the JSON event when known.
  void error(const std::string& build, std::string_view text, const std::string& step = "",
             std::optional<int> exit_status = std::nullopt);
  void commit(const std::string& build, const CommitInfo& c);
  void artifact(const std::string& build, const Artifact& a);
  void summary(const std::vector<BuildSummary>& builds);
  // Top-level message without a build (e.g. "validation passed").
  void note(std::string_view text);
  // Asks on the terminal; returns nullopt when not interactive.
  std::optional<std::string> ask(const std::string& build, std::string_view question);

  // How long since the build last showed anything (a step start, a message, a line of output).
  std::chrono::steady_clock::duration quiet_for(const std::string& build);

  std::string mask(std::string_view s) const { return masker_->mask(s); }
  // Whether there is anything to mask (the template's sensitive variables, secrets added since).
  bool has_secrets() const { return !masker_->empty(); }
  // A secret learnt while a build runs (an assumed role's secret key and session token): masked
  // from here on in everything the Ui shows, in every build.
  void add_secret(const std::string& secret) { masker_->add(secret); }
  // Every string of a JSON document with its secrets replaced by their digests (Masker::redact).
  template <typename Json>
  void redact_strings(Json& j) const {
    if (j.is_string()) {
      j = masker_->redact(j.template get_ref<const std::string&>());
    } else if (j.is_structured()) {
      for (auto& v : j) redact_strings(v);
    }
  }
  // Masks every string of a JSON document in place (names and paths can hold secrets too).
  template <typename Json>
  void mask_strings(Json& j) const {
    if (j.is_string()) {
      j = masker_->mask(j.template get_ref<const std::string&>());
    } else if (j.is_structured()) {
      for (auto& v : j) mask_strings(v);
    }
  }

 private:
  void emit(nlohmann::json ev);
  void touch(const std::string& build);
  // One Packer CSV line, masked; `build` is the target ("" for none).
  void machine(const std::string& build, std::string_view type, std::vector<std::string> data);
  void machine_summary(const std::vector<BuildSummary>& builds);
  void human(FILE* f, const std::string& build, const char* color, std::string_view marker, std::string_view text);
  std::string prefix(const std::string& build) const;

  OutputMode mode_;
  FILE* out_;
  FILE* err_;
  bool color_;
  std::shared_ptr<Masker> masker_;  // never null
  std::mutex mu_;
  std::mutex activity_mu_;
  std::map<std::string, std::chrono::steady_clock::time_point> last_shown_;
};

}  // namespace imgbake
