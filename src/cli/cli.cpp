#include "cli.h"

#include <unistd.h>

#include <algorithm>
#include <iostream>
#include <set>
#include <string_view>

#include "imgbake/cancel.h"
#include "imgbake/error.h"
#include "imgbake/oci_json.h"
#include "imgbake/util.h"
#include "imgbake/version.h"

namespace imgbake::cli {

const std::vector<Command>& commands() {
  static const std::vector<Command> table = {
      {"build", "Build images from a template", setup_build},
      {"validate", "Check that a template is valid", setup_validate},
      {"inspect", "Show a template's variables, builders, provisioners and post-processors", setup_inspect},
      {"fmt", "Format a template as stable 2-space JSON", setup_fmt},
      {"images", "List the images in the store", setup_images},
      {"show", "Show an image: metadata, labels, channels, parent, provenance", setup_show},
      {"label", "Add or change labels of an image", setup_label},
      {"promote", "Point a channel (environment) at an image", setup_promote},
      {"rollback", "Point a channel back at its previous image", setup_rollback},
      {"policy", "Make a channel demand passing test results before promote (set, clear, list)", setup_policy},
      {"history", "Show the audit history of an image name or one of its channels", setup_history},
      {"revoke", "Revoke an image (and optionally its descendants)", setup_revoke},
      {"rm", "Delete a version from the store (not while a channel points at it)", setup_rm},
      {"verify", "Verify an image's signed provenance and its digests", setup_verify},
      {"test", "Run an image's checks (files, commands, packages, users) against it", setup_test},
      {"export", "Write an image out as tar, raw or qcow2", setup_export},
      {"store", "Check the store (store check) or remove unreferenced blobs (store gc)", setup_store},
      {"keygen", "Make an Ed25519 signing key", setup_keygen},
      {"push", "Push an image and its provenance to an OCI registry", setup_push},
      {"pull", "Pull an image (and its provenance) from an OCI registry into the store", setup_pull},
      {"copy", "Copy an image from one registry to another, keeping its digest", setup_copy},
      {"login", "Store credentials for a registry", setup_login},
      {"logout", "Remove the credentials `imgbake login` stored for a registry", setup_logout},
      {"version", "Print the version", setup_version},
  };
  return table;
}

namespace {

// The long names ("var" for --var) of `app`'s options and of all its subcommands'.
void collect_long_names(const CLI::App& app, std::set<std::string, std::less<>>& names) {
  for (const CLI::Option* o : app.get_options())
    for (const auto& n : o->get_lnames()) names.insert(n);
  for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; })) collect_long_names(*sub, names);
}

}  // namespace

std::vector<std::string> normalize_args(const CLI::App& app, const std::vector<std::string>& args) {
  std::set<std::string, std::less<>> long_names;
  collect_long_names(app, long_names);
  std::vector<std::string> out;
  out.reserve(args.size());
  for (size_t i = 0; i < args.size(); ++i) {
    std::string a = args[i];
    if (i > 0 && a.size() > 2 && a[0] == '-' && a[1] != '-') {
      std::string_view name =
          std::string_view(a).substr(1, a.find('=') == std::string::npos ? std::string::npos : a.find('=') - 1);
      if (long_names.contains(name)) a = "-" + a;
    }
    out.push_back(a);
  }
  return out;
}

void define_commands(CLI::App& app, GlobalOptions& global, Action& action) {
  app.name("imgbake");
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("imgbake ") + kVersion);
  for (const auto& c : commands()) {
    CLI::App* sub = app.add_subcommand(c.name, c.description);
    sub->add_option("--output", global.output, "Output: human (default) or json (one event per line)")
        ->check(CLI::IsMember({"human", "json"}));
    sub->add_option("--color", global.color, "Colours on a terminal (default true; -color=false as in Packer)");
    Action a = c.setup(*sub, global);
    sub->callback([&action, a] { action = a; });
  }
}

Ui make_ui(const GlobalOptions& global, std::shared_ptr<Masker> masker) {
  OutputMode mode = global.machine_readable   ? OutputMode::Machine
                    : global.output == "json" ? OutputMode::Json
                                              : OutputMode::Human;
  // The Ui checks each stream for a terminal when it writes; this is the user's wish.
  bool color = mode == OutputMode::Human && global.color && !std::getenv("NO_COLOR");
  return Ui(mode, stdout, stderr, color, std::move(masker));
}

int report_config_error(const std::exception& e, const Masker* masker) {
  std::string text = e.what();
  if (masker) text = masker->mask(text);
  std::cerr << text << "\n";
  return kExitFailure;
}

int run(int argc, char** argv) {
  install_signal_handlers();
  CLI::App app{"imgbake: bake, version, sign and promote machine images from Packer-compatible templates"};
  GlobalOptions global;
  Action action;
  define_commands(app, global, action);
  std::vector<std::string> args = normalize_args(app, std::vector<std::string>(argv, argv + argc));
  if (auto rc = help_or_completion(app, args)) return *rc;
  if (args.size() > 1 && !args[1].empty() && args[1][0] != '-') {
    std::vector<std::string> verbs;
    for (const auto& c : commands()) verbs.emplace_back(c.name);
    verbs.emplace_back("help");
    if (std::find(verbs.begin(), verbs.end(), args[1]) == verbs.end()) {
      std::cerr << "imgbake: unknown command '" << args[1] << "'" << util::did_you_mean(args[1], verbs)
                << "; the commands are: " << util::join(verbs, ", ") << "\n";
      return kExitUsage;
    }
  }
  std::vector<const char*> cargs;
  cargs.reserve(args.size());
  for (const auto& s : args) cargs.push_back(s.c_str());
  try {
    app.parse(static_cast<int>(cargs.size()), cargs.data());
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() != 0)
      if (auto msg = unknown_flag(app, args)) {
        std::cerr << *msg << "\n";
        return kExitUsage;
      }
    int rc = app.exit(e);
    return e.get_exit_code() == 0 ? rc : kExitUsage;
  }
  try {
    return action ? action() : kExitUsage;
  } catch (const UsageError& e) {
    std::cerr << "imgbake: " << e.what() << "\n";
    return kExitUsage;
  } catch (const ConfigError& e) {
    return report_config_error(e, nullptr);
  } catch (const Cancelled&) {
    return 128 + global_cancel().signal();
  } catch (const std::exception& e) {
    std::cerr << "imgbake: " << oci::json_error_text(e) << "\n";
    return kExitFailure;
  }
}

}  // namespace imgbake::cli
