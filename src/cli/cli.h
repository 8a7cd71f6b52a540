// The command table: one entry per verb, one file per verb (ninja's pattern).
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <string>
#include <vector>

#include "imgbake/ui.h"

namespace imgbake::cli {

// Options every verb shares.
struct GlobalOptions {
  std::string output = "human";  // human | json
  bool color = true;
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
Action setup_label(CLI::App& sub, const GlobalOptions& global);
Action setup_promote(CLI::App& sub, const GlobalOptions& global);
Action setup_rollback(CLI::App& sub, const GlobalOptions& global);
Action setup_history(CLI::App& sub, const GlobalOptions& global);
Action setup_revoke(CLI::App& sub, const GlobalOptions& global);
Action setup_verify(CLI::App& sub, const GlobalOptions& global);
Action setup_export(CLI::App& sub, const GlobalOptions& global);
Action setup_store(CLI::App& sub, const GlobalOptions& global);
Action setup_keygen(CLI::App& sub, const GlobalOptions& global);
Action setup_push(CLI::App& sub, const GlobalOptions& global);
Action setup_pull(CLI::App& sub, const GlobalOptions& global);
Action setup_copy(CLI::App& sub, const GlobalOptions& global);
Action setup_login(CLI::App& sub, const GlobalOptions& global);

// Rewrites Packer's single-dash long flags ("-var", "-only=x") to "--var", "--only=x".
std::vector<std::string> normalize_args(int argc, char** argv);

// The Ui for a verb: JSON events or the human view (colours only on a terminal).
Ui make_ui(const GlobalOptions& global, std::shared_ptr<const Masker> masker);

// Prints a ConfigError's diagnostics (masked) and returns the exit code for it.
int report_config_error(const std::exception& e, const Masker* masker);

int run(int argc, char** argv);

}  // namespace imgbake::cli
