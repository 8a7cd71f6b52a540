// The command table: one entry per verb, one file per verb (ninja's pattern).
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "imgbake/oci_client.h"
#include "imgbake/provenance.h"
#include "imgbake/ui.h"

namespace imgbake::registry {
class Client;
}

namespace imgbake::cli {

// Options every verb shares.
struct GlobalOptions {
  std::string output = "human";  // human | json
  bool color = true;
  bool machine_readable = false;  // Packer's CSV stream (a verb's --machine-readable)
};

using Action = std::function<int()>;

struct Command {
  const char* name;
  const char* description;
  // Adds the verb's options to `sub` and returns what to run once parsed.
  Action (*setup)(CLI::App& sub, const GlobalOptions& global);
};

const std::vector<Command>& commands();

Action setup_build(CLI::App& sub, const GlobalOptions& global);
Action setup_validate(CLI::App& sub, const GlobalOptions& global);
Action setup_inspect(CLI::App& sub, const GlobalOptions& global);
Action setup_fmt(CLI::App& sub, const GlobalOptions& global);
Action setup_version(CLI::App& sub, const GlobalOptions& global);
Action setup_images(CLI::App& sub, const GlobalOptions& global);
Action setup_show(CLI::App& sub, const GlobalOptions& global);
Action setup_test(CLI::App& sub, const GlobalOptions& global);
Action setup_label(CLI::App& sub, const GlobalOptions& global);
Action setup_promote(CLI::App& sub, const GlobalOptions& global);
Action setup_policy(CLI::App& sub, const GlobalOptions& global);
Action setup_rollback(CLI::App& sub, const GlobalOptions& global);
Action setup_history(CLI::App& sub, const GlobalOptions& global);
Action setup_revoke(CLI::App& sub, const GlobalOptions& global);
Action setup_rm(CLI::App& sub, const GlobalOptions& global);
Action setup_verify(CLI::App& sub, const GlobalOptions& global);
Action setup_export(CLI::App& sub, const GlobalOptions& global);
Action setup_store(CLI::App& sub, const GlobalOptions& global);
Action setup_keygen(CLI::App& sub, const GlobalOptions& global);
Action setup_push(CLI::App& sub, const GlobalOptions& global);
Action setup_pull(CLI::App& sub, const GlobalOptions& global);
Action setup_copy(CLI::App& sub, const GlobalOptions& global);
Action setup_login(CLI::App& sub, const GlobalOptions& global);
Action setup_logout(CLI::App& sub, const GlobalOptions& global);

// Options of the verbs that reach registries (registry_verbs.cpp): push, pull, copy, login, and
// promote, rollback, history, revoke and verify on a REGISTRY/REPO reference.
struct RegistryFlags {
  std::vector<std::string> insecure;  // HOST:PORT served over plain HTTP
  bool tls_verify = true;
  std::string signing_key;  // records are signed with it (else $IMGBAKE_SIGNING_KEY, else the default key)
};
void add_registry_flags(CLI::App& sub, RegistryFlags& flags, bool signs_records = false);
// Plain HTTP / TLS checks for a host: the flags, then registries.conf (registries_conf.h).
// Throws BuildError when registries.conf blocks the host.
registry::ClientOptions client_options(const std::string& host, const RegistryFlags& flags);
std::unique_ptr<registry::Client> make_registry_client(const std::string& host, const RegistryFlags& flags, Ui& ui,
                                                       bool progress = false);
provenance::SigningKey record_signing_key(const RegistryFlags& flags);

// Rewrites Packer's single-dash long flags ("-var", "-only=x") to "--var", "--only=x": any
// argument after args[0] whose name is the long name of an option of `app` or of one of its
// subcommands (so a new long option accepts -name too). Everything else is left alone.
std::vector<std::string> normalize_args(const CLI::App& app, const std::vector<std::string>& args);

// Adds the verbs of commands() to `app`, with the options every verb has (--output, --color);
// parsing sets `action` to the chosen verb's. `global` and `action` must outlive `app`.
void define_commands(CLI::App& app, GlobalOptions& global, Action& action);

// `imgbake help [VERB]`, `imgbake completion bash|zsh|fish` and `imgbake man` (help.cpp): the
// exit status when args name one of them, else nullopt.
std::optional<int> help_or_completion(const CLI::App& app, const std::vector<std::string>& args);
// After a failed parse: "imgbake VERB: unknown flag '--x' (did you mean '--y'?)" for the first
// flag the verb does not have, else nullopt.
std::optional<std::string> unknown_flag(const CLI::App& app, const std::vector<std::string>& args);

// The Ui for a verb: JSON events or the human view (colours only on a terminal).
Ui make_ui(const GlobalOptions& global, std::shared_ptr<Masker> masker);

// Prints a ConfigError's diagnostics (masked) and returns the exit code for it.
int report_config_error(const std::exception& e, const Masker* masker);

int run(int argc, char** argv);

}  // namespace imgbake::cli
