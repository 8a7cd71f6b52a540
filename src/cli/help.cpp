// imgbake help [VERB], "did you mean" for an unknown flag, and the shell completions and man page
// generated from the CLI11 definitions (so they never drift from the flags the verbs have).
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <set>
#include <sstream>

#include "cli.h"
#include "imgbake/util.h"
#include "imgbake/version.h"

namespace imgbake::cli {

namespace {

const CLI::App* verb(const CLI::App& app, const std::string& name) {
  for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; }))
    if (sub->get_name() == name) return sub;
  return nullptr;
}

std::vector<std::string> long_flags(const CLI::App& sub) {
  std::vector<std::string> out;
  for (const CLI::Option* o : sub.get_options())
    for (const auto& n : o->get_lnames()) out.push_back("--" + n);
  return out;
}

std::vector<std::string> verb_names(const CLI::App& app) {
  std::vector<std::string> out;
  for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; })) out.push_back(sub->get_name());
  out.emplace_back("help");
  return out;
}

// roff needs its backslashes and leading dots/quotes escaped, and non-ASCII characters written as
// groff's \[uXXXX] (UTF-8 decoded).
std::string roff(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c == '\\') {
      out += "\\e";
    } else if (c == '-') {
      out += "\\-";
    } else if (c < 0x80) {
      out += static_cast<char>(c);
    } else {
      int extra = c >= 0xF0 ? 3 : c >= 0xE0 ? 2 : 1;
      uint32_t cp = c & (0x3F >> extra);
      for (int k = 0; k < extra && i + 1 < s.size(); ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[++i]) & 0x3F);
      char buf[16];
      std::snprintf(buf, sizeof buf, "\\[u%04X]", cp);
      out += buf;
    }
  }
  if (!out.empty() && (out[0] == '.' || out[0] == '\'')) out = "\\&" + out;
  return out;
}

std::string bash_completion(const CLI::App& app) {
  std::ostringstream s;
  s << "# bash completion for imgbake (generated from its CLI definitions: imgbake completion bash)\n"
    << "_imgbake() {\n"
    << "  local cur=${COMP_WORDS[COMP_CWORD]} verb=${COMP_WORDS[1]}\n"
    << "  if [ \"$COMP_CWORD\" -eq 1 ]; then\n"
    << "    COMPREPLY=($(compgen -W \"" << util::join(verb_names(app), " ") << "\" -- \"$cur\"))\n"
    << "    return\n  fi\n  case $verb in\n";
  for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; }))
    s << "    " << sub->get_name() << ") COMPREPLY=($(compgen -W \"" << util::join(long_flags(*sub), " ")
      << "\" -- \"$cur\")) ;;\n";
  s << "    help) COMPREPLY=($(compgen -W \"" << util::join(verb_names(app), " ") << "\" -- \"$cur\")) ;;\n"
    << "  esac\n"
    << "  [ ${#COMPREPLY[@]} -eq 0 ] && COMPREPLY=($(compgen -f -- \"$cur\"))\n"
    << "}\ncomplete -F _imgbake imgbake\n";
  return s.str();
}

std::string zsh_completion(const CLI::App& app) {
  std::ostringstream s;
  s << "#compdef imgbake\n# zsh completion for imgbake (generated: imgbake completion zsh)\n"
    << "_imgbake() {\n  local -a verbs\n  verbs=(\n";
  for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; })) {
    std::string d = sub->get_description();
    for (auto& c : d)
      if (c == '\'' || c == ':') c = ' ';
    s << "    '" << sub->get_name() << ":" << d << "'\n";
  }
  s << "    'help:Show the help of a command'\n  )\n"
    << "  if (( CURRENT == 2 )); then _describe 'command' verbs; return; fi\n"
    << "  case $words[2] in\n";
  for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; }))
    s << "    " << sub->get_name() << ") _arguments '*:file:_files' " << util::join(long_flags(*sub), " ") << " ;;\n";
  s << "  esac\n}\n_imgbake \"$@\"\n";
  return s.str();
}

std::string fish_completion(const CLI::App& app) {
  std::ostringstream s;
  s << "# fish completion for imgbake (generated: imgbake completion fish)\n"
    << "complete -c imgbake -f -n '__fish_use_subcommand' -a help -d 'Show the help of a command'\n";
  for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; })) {
    std::string d = sub->get_description();
    for (auto& c : d)
      if (c == '\'') c = ' ';
    s << "complete -c imgbake -f -n '__fish_use_subcommand' -a " << sub->get_name() << " -d '" << d << "'\n";
    for (const CLI::Option* o : sub->get_options())
      for (const auto& n : o->get_lnames()) {
        std::string od = o->get_description();
        for (auto& c : od)
          if (c == '\'') c = ' ';
        s << "complete -c imgbake -n '__fish_seen_subcommand_from " << sub->get_name() << "' -l " << n << " -d '"
          << od.substr(0, 80) << "'\n";
      }
  }
  return s.str();
}

std::string man_page(const CLI::App& app) {
  std::ostringstream s;
  s << ".TH IMGBAKE 1 \"\" \"imgbake " << kVersion << "\" \"User Commands\"\n"
    << ".SH NAME\nimgbake \\- " << roff(app.get_description().substr(app.get_description().find(':') + 2)) << "\n"
    << ".SH SYNOPSIS\n.B imgbake\n.I command\n[\n.I options\n]\n"
    << ".SH DESCRIPTION\nimgbake bakes machine images from Packer\\-compatible templates, commits them to a "
       "local content\\-addressed store with signed provenance, and moves them between channels and OCI "
       "registries. Packer's single\\-dash spelling of long flags (\\fB\\-var\\fR) is accepted too. The "
       "manual is docs/README.md of the source tree.\n"
    << ".SH COMMANDS\n";
  for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; })) {
    s << ".SS " << sub->get_name() << "\n" << roff(sub->get_description()) << "\n";
    for (const CLI::Option* o : sub->get_options()) {
      if (o->get_lnames().empty() && o->get_snames().empty() && o->get_positional() == false) continue;
      std::string name = o->get_name(false, true);
      if (name.empty()) continue;
      s << ".TP\n.B " << roff(name) << "\n" << roff(o->get_description().empty() ? "-" : o->get_description()) << "\n";
    }
  }
  s << ".SH EXIT STATUS\n0 success; 1 a build, a validation or a check failed; 2 a usage error; 130/143 "
       "interrupted (SIGINT/SIGTERM).\n"
    << ".SH SEE ALSO\n.BR packer (1),\n.BR skopeo (1),\n.BR podman (1)\n";
  return s.str();
}

}  // namespace

std::optional<int> help_or_completion(const CLI::App& app, const std::vector<std::string>& args) {
  if (args.size() < 2) return std::nullopt;
  const std::string& v = args[1];
  if (v == "help") {
    if (args.size() < 3) {
      std::cout << app.help();
      return 0;
    }
    if (const CLI::App* sub = verb(app, args[2])) {
      std::cout << sub->help();
      return 0;
    }
    std::cerr << "imgbake: unknown command '" << args[2] << "'" << util::did_you_mean(args[2], verb_names(app))
              << "; the commands are: " << util::join(verb_names(app), ", ") << "\n";
    return static_cast<int>(kExitUsage);
  }
  if (v == "completion") {
    std::string shell = args.size() > 2 ? args[2] : "";
    if (shell == "bash")
      std::cout << bash_completion(app);
    else if (shell == "zsh")
      std::cout << zsh_completion(app);
    else if (shell == "fish")
      std::cout << fish_completion(app);
    else {
      std::cerr << "imgbake completion: give the shell: bash, zsh or fish\n";
      return static_cast<int>(kExitUsage);
    }
    return 0;
  }
  if (v == "man") {
    std::cout << man_page(app);
    return 0;
  }
  return std::nullopt;
}

std::optional<std::string> unknown_flag(const CLI::App& app, const std::vector<std::string>& args) {
  if (args.size() < 2) return std::nullopt;
  const CLI::App* sub = verb(app, args[1]);
  if (!sub) return std::nullopt;
  std::vector<std::string> known = long_flags(*sub);
  known.emplace_back("--help");
  for (size_t i = 2; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--") break;
    if (a.size() < 3 || !a.starts_with("--")) continue;
    std::string name = a.substr(0, a.find('='));
    if (std::find(known.begin(), known.end(), name) != known.end()) continue;
    return "imgbake " + args[1] + ": unknown flag '" + name + "'" + util::did_you_mean(name, known) +
           " (imgbake help " + args[1] + " lists them)";
  }
  return std::nullopt;
}

}  // namespace imgbake::cli
