// A build is a flat list of named steps run in order. Each step has a content key
// (sha256 over a canonical JSON of what it does, chained with the previous step's
// key). On failure or cancellation the cleanups of the steps that ran run in
// reverse, as -on-error says.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "imgbake/artifact.h"
#include "imgbake/cancel.h"
#include "imgbake/interpolate.h"
#include "imgbake/ui.h"

namespace imgbake {

class Communicator;
namespace store {
class CacheRemote;
}

enum class OnError { Cleanup, Abort, Ask, RunCleanupProvisioner };
std::optional<OnError> parse_on_error(std::string_view s);

// What every step of one build can see.
struct BuildInfo {
  std::string name;  // the build's name (builder "name", default its type)
  std::string type;  // the builder type
  bool force = false;
  bool debug = false;
  OnError on_error = OnError::Cleanup;
  std::string run_uuid;
  std::string template_path;
  interp::Context interp;  // user variables, template_dir, build name/type, run time
  // For builders that keep a build cache or write to the store while they build (rootfs).
  std::string store_home;  // "" = store::Store::default_home()
  bool no_cache = false;
  bool explain_cache = false;
  // Where else cached steps are looked up and sent (--cache-from/--cache-to); nullptr: only the store.
  std::shared_ptr<store::CacheRemote> cache_remote;
  bool commit = true;                                                      // the image will be committed
  nlohmann::ordered_json image_config = nlohmann::ordered_json::object();  // the "imgbake" section's "config"
};

class State {
 public:
  State(Ui& ui, const CancelToken& cancel, BuildInfo info) : ui(ui), cancel(cancel), build(std::move(info)) {}

  Ui& ui;
  const CancelToken& cancel;
  BuildInfo build;
  std::shared_ptr<Artifact> artifact;       // set by the builder's last step
  Communicator* communicator = nullptr;     // set once connected; nullptr for "none"
  std::map<std::string, std::string> data;  // {{ .Key }} values filled at run time
  bool provisioning_failed = false;
  // When set, the running step must finish by then (provisioner "timeout").
  std::optional<std::chrono::steady_clock::time_point> deadline;
  // Set by a step of a builder that caches (rootfs): whether it came from the cache, and its
  // key. The runner clears it before each step and reports it in the step's end event.
  std::optional<StepCache> step_cache;

  void say(std::string_view text) { ui.say(build.name, text); }
  void message(std::string_view text) { ui.message(build.name, text); }
  // Renders a string with this build's variables and run-time data.
  std::string render(std::string_view text) const;
  // Time left before `deadline`, for the timeouts of commands the step runs.
  std::optional<std::chrono::milliseconds> time_left() const;
};

// Whether a step changes something outside the machine being built. Such a step runs on every
// build, also where an image builder's cache holds its (empty) layer: its effect is not in the
// image, so the cache cannot replay it.
enum class HostEffect {
  None,         // all its effect is in the machine (or nothing): a cache hit may skip it
  HostOnly,     // it runs on the host and needs no machine (shell-local)
  FromMachine,  // it reads the machine and writes on the host (a file download)
};

class Step {
 public:
  virtual ~Step() = default;
  virtual std::string name() const = 0;
  // What identifies this step's work: its type, resolved options, digests of the
  // host files it reads. Chained with the previous key into the step's key.
  virtual nlohmann::json key_material(const State& st) const = 0;
  // Throws (BuildError, Cancelled, anything) on failure.
  virtual void run(State& st) = 0;
  virtual void cleanup(State& /*st*/) noexcept {}
  // Whether cleanup() still runs under -on-error=run-cleanup-provisioner.
  virtual bool runs_on_abort() const { return false; }
  // Bookkeeping steps that do nothing visible in run() are not shown or timed.
  virtual bool silent() const { return false; }
  // The pipeline's hook that runs the error-cleanup-provisioner; a builder that wraps the
  // provision steps (rootfs: one layer each) passes this one through unwrapped.
  virtual bool is_error_cleanup_hook() const { return false; }
  virtual HostEffect host_effect() const { return HostEffect::None; }
};

using StepList = std::vector<std::unique_ptr<Step>>;

// sha256 over {"prev": prev_key, "step": material} serialized canonically (sorted keys).
std::string step_key(const nlohmann::json& material, const std::string& prev_key);

struct StepOutcome {
  bool ok = true;
  bool cancelled = false;
  std::string failed_step;
  std::string error;
  std::vector<BuildSummary::StepTime> steps;
};

// Runs the steps in order; on failure or cancellation runs the cleanups of the steps
// that ran (including the failed one), in reverse, according to st.build.on_error.
StepOutcome run_steps(StepList& steps, State& st);

}  // namespace imgbake
