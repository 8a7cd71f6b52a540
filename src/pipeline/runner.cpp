#include <algorithm>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <stop_token>
#include <string>
#include <thread>

#include "imgbake/error.h"
#include "imgbake/oci_json.h"
#include "imgbake/pipeline.h"
#include "imgbake/util.h"

namespace imgbake {

std::optional<OnError> parse_on_error(std::string_view s) {
  if (s == "cleanup") return OnError::Cleanup;
  if (s == "abort") return OnError::Abort;
  if (s == "ask") return OnError::Ask;
  if (s == "run-cleanup-provisioner") return OnError::RunCleanupProvisioner;
  return std::nullopt;
}

std::string State::render(std::string_view text) const {
  interp::Context ctx = build.interp;
  for (const auto& [k, v] : data) ctx.data[k] = v;
  return interp::render(text, ctx);
}

std::optional<std::chrono::milliseconds> State::time_left() const {
  if (!deadline) return std::nullopt;
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(*deadline - std::chrono::steady_clock::now());
  return std::max(left, std::chrono::milliseconds(1));
}

std::string step_key(const nlohmann::json& material, const std::string& prev_key) {
  // nlohmann::json (not ordered_json) keeps object keys sorted: a canonical form.
  nlohmann::json pre = {{"prev", prev_key}, {"step", material}};
  return "sha256:" + util::sha256_hex(pre.dump());
}

namespace {

enum class AfterFailure { Cleanup, Abort, Retry, RunCleanupProvisioner };

AfterFailure decide(State& st, const std::string& step) {
  switch (st.build.on_error) {
    case OnError::Cleanup: return AfterFailure::Cleanup;
    case OnError::Abort: return AfterFailure::Abort;
    case OnError::RunCleanupProvisioner: return AfterFailure::RunCleanupProvisioner;
    case OnError::Ask: break;
  }
  while (true) {
    auto answer = st.ui.ask(st.build.name, "Step '" + step +
                                               "' failed. [c] Clean up and exit, [a] abort without cleanup, "
                                               "[r] retry step (c/a/r)?");
    if (!answer) {
      st.ui.warn(st.build.name, "-on-error=ask needs a terminal; cleaning up");
      return AfterFailure::Cleanup;
    }
    std::string a = util::trim(*answer);
    if (a == "c" || a == "C") return AfterFailure::Cleanup;
    if (a == "a" || a == "A") return AfterFailure::Abort;
    if (a == "r" || a == "R") return AfterFailure::Retry;
  }
}

// While a step runs, says every IMGBAKE_PROGRESS_INTERVAL seconds (default 60) that it is still
// running, with the time so far, when the build has shown nothing for that long (debootstrap,
// a guest that boots, an SSH wait): a long silent step does not look like a hang.
class QuietStepNotice {
 public:
  QuietStepNotice(State& st, std::string step) : st_(st), step_(std::move(step)) {
    auto interval = std::chrono::seconds(60);
    if (const char* e = std::getenv("IMGBAKE_PROGRESS_INTERVAL"); e && *e) {
      char* end = nullptr;
      long v = std::strtol(e, &end, 10);
      if (end && *end == '\0' && v > 0) interval = std::chrono::seconds(v);
    }
    thread_ = std::jthread([this, interval](std::stop_token stop) { watch(stop, interval); });
  }
  ~QuietStepNotice() {
    thread_.request_stop();
    cv_.notify_all();
  }
  QuietStepNotice(const QuietStepNotice&) = delete;
  QuietStepNotice& operator=(const QuietStepNotice&) = delete;

 private:
  void watch(const std::stop_token& stop, std::chrono::seconds interval) {
    auto started = std::chrono::steady_clock::now();
    std::mutex mu;
    std::unique_lock lock(mu);
    while (!stop.stop_requested()) {
      cv_.wait_for(lock, stop, std::chrono::milliseconds(250), [] { return false; });
      if (stop.stop_requested()) break;
      if (st_.ui.quiet_for(st_.build.name) < interval) continue;
      st_.ui.message(st_.build.name, "still running: " + step_ + " (" +
                                         util::format_duration(std::chrono::steady_clock::now() - started) + ")");
    }
  }

  State& st_;
  std::string step_;
  std::condition_variable_any cv_;
  std::jthread thread_;  // last: stopped and joined before the members it uses go
};

}  // namespace

StepOutcome run_steps(StepList& steps, State& st) {
  StepOutcome outcome;
  size_t ran = 0;  // steps whose run() was entered
  std::string prev;
  AfterFailure after = AfterFailure::Cleanup;

  for (size_t i = 0; i < steps.size(); ++i) {
    Step& step = *steps[i];
    if (st.cancel.cancelled()) {
      outcome.ok = false;
      outcome.cancelled = true;
      break;
    }
    std::string key;
    try {
      key = step_key(step.key_material(st), prev);
    } catch (const std::exception& e) {
      key = "";
      st.ui.warn(st.build.name, "step '" + step.name() + "': no content key: " + e.what());
    }
    if (step.silent()) {
      ran = std::max(ran, i + 1);
      try {
        step.run(st);
      } catch (const std::exception& e) {
        outcome.ok = false;
        outcome.failed_step = step.name();
        outcome.error = "step '" + step.name() + "': " + e.what();
        break;
      }
      continue;
    }
    if (st.build.debug) {
      auto answer = st.ui.ask(st.build.name, "[debug] Next step: '" + step.name() + "'. Press Enter to continue.");
      (void)answer;
    }
    st.ui.step_start(st.build.name, step.name(), key);
    st.step_cache.reset();
    auto t0 = std::chrono::steady_clock::now();
    ran = std::max(ran, i + 1);
    bool ok = true;
    std::string error;
    std::optional<int> exit_status;  // of a command that failed
    try {
      QuietStepNotice notice(st, step.name());
      step.run(st);
      st.cancel.throw_if_cancelled();
    } catch (const Cancelled&) {
      ok = false;
      outcome.cancelled = true;
      error = "interrupted";
    } catch (const std::exception& e) {
      ok = false;
      // A JSON library error that a component let through: its text, without the library's
      // "[json.exception.…]" code (the component should have named the file and field).
      error = oci::json_error_text(e);
      if (const auto* failed = dynamic_cast<const CommandFailed*>(&e)) exit_status = failed->exit_status;
    }
    auto d = std::chrono::steady_clock::now() - t0;
    st.ui.step_end(st.build.name, step.name(), ok, d, key, st.step_cache);
    outcome.steps.push_back({step.name(), d, ok, key});
    if (ok) {
      prev = key;
      continue;
    }
    outcome.ok = false;
    outcome.failed_step = step.name();
    outcome.error = "step '" + step.name() + "': " + error;
    if (outcome.cancelled) break;  // an interrupt always cleans up
    st.ui.error(st.build.name, outcome.error, step.name(), exit_status);
    after = decide(st, step.name());
    if (after == AfterFailure::Retry) {
      st.provisioning_failed = false;
      outcome.ok = true;
      outcome.failed_step.clear();
      outcome.error.clear();
      --i;
      continue;
    }
    break;
  }

  if (outcome.ok) {
    // Success: every step's cleanup still runs (temporary files, the VM), in reverse.
    after = AfterFailure::Cleanup;
  } else if (outcome.cancelled) {
    after = AfterFailure::Cleanup;
  }
  if (after == AfterFailure::Abort) {
    st.ui.warn(st.build.name, "-on-error=abort: leaving everything as it is; no cleanup ran");
    return outcome;
  }
  for (size_t i = ran; i-- > 0;) {
    Step& step = *steps[i];
    if (after == AfterFailure::RunCleanupProvisioner && !step.runs_on_abort()) continue;
    step.cleanup(st);
  }
  return outcome;
}

}  // namespace imgbake
