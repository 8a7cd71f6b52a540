#pragma once

#include <functional>
#include <set>
#include <string>
#include <vector>

#include "imgbake/component_registry.h"
#include "imgbake/config.h"
#include "imgbake/pipeline.h"
#include "imgbake/process.h"

namespace imgbake {

// A file on the host that a provisioner's tool reads (a manifest, a role's task file): its path
// as the template names it (a directory's files as DIR/RELATIVE) and its sha256 in hex, or
// "missing" when it cannot be read. These enter the step's key and the provenance.
struct HostInput {
  std::string path;
  std::string sha256;
};

class Provisioner {
 public:
  virtual ~Provisioner() = default;
  // Options that hold actions rendered at run time ({{ .Vars }}, {{ .ChecksumType }});
  // every other option must render completely when the template is validated.
  virtual std::set<std::string> runtime_keys() const { return {}; }
  virtual void prepare(ConfigReader& cfg) = 0;
  // Does the work against st.communicator (or the host, for shell-local).
  // Throws on failure.
  virtual void provision(State& st) = 0;
  // Resolved options and digests of host files read, for the step's content key.
  virtual nlohmann::json key_material() const = 0;
  // What it changes outside the machine (pipeline.h): such steps are never skipped by a cache.
  virtual HostEffect host_effect() const { return HostEffect::None; }
  // The host files it reads, listed in the provenance as resolved dependencies.
  virtual std::vector<HostInput> host_inputs() const { return {}; }
};

using ProvisionerRegistry = ComponentRegistry<Provisioner>;

// [{"path", "sha256"}] for the host files a provisioner reads (scripts), for key_material();
// a file that cannot be read has "missing" (prepare() has reported it).
nlohmann::json host_file_digests(const std::vector<std::string>& paths);

// Every regular file under each path: a file itself, a directory's whole tree (symlinks
// followed), in path order; a path that does not exist is one "missing" entry.
std::vector<HostInput> host_tree_inputs(const std::vector<std::string>& paths);
// {"PATH": "SHA256", …} for key_material(): a changed file shows in --explain-cache by its path.
nlohmann::json host_inputs_json(const std::vector<HostInput>& inputs);

// Runs a bookkeeping command on the machine (mkdir, rm -rf of a staging directory) without showing
// its output. Throws BuildError "cannot WHAT on the machine (exit status N: its stderr)", or
// naming a dropped connection.
void run_quiet(State& st, const std::string& command, const std::string& what);

// Removes `paths` on the machine (`rm -rf`, through sudo when the tool that wrote them ran through
// it: their owner is root then) after a tool ran, whether it succeeded or not. Never throws: a
// failure is a warning, so that it never hides the tool's own result. Does nothing once the build
// is cancelled (a second Ctrl-C is on its way; the machine goes away with the build).
void remove_on_machine(State& st, const std::vector<std::string>& paths, bool sudo, const std::string& what) noexcept;

// What a host path named in a template must be, for check_host_path.
enum class HostPathKind { File, Directory, Any };
// Reports a configuration error at `key` when `path` ("" = not given: fine) does not exist on the
// host, or is not of `kind` ("'P' does not exist (relative paths start at the directory imgbake
// runs in)", "'P' is not a directory", "'P' is a directory, not a file").
void check_host_path(ConfigReader& cfg, const std::string& key, const std::string& path, HostPathKind kind);

// The two sinks of a tool the provisioner runs (puppet, ansible-playbook, chef): each line goes to
// the build view and to `observe` (the reader that names what failed).
struct ToolSinks {
  LineSink out;
  LineSink err;
};
ToolSinks tool_sinks(State& st, std::function<void(std::string_view)> observe);

// Inside '…' a single quote is written '"'"' (close, quoted quote, reopen), as Packer does.
std::string escape_single_quotes(const std::string& value);
// Packer's env_var_format: a printf format with two %s, the name, then the escaped value
// ("%s='%s' " → "NAME='it'"'"'s' ").
std::string format_env_var(const std::string& format, const std::string& name, const std::string& value);

}  // namespace imgbake

#define IMGBAKE_REGISTER_PROVISIONER(NAME, CLASS) IMGBAKE_REGISTER(::imgbake::Provisioner, NAME, CLASS)
