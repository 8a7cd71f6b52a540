#include <filesystem>
#include <iostream>
#include <iterator>

#include "cli.h"
#include "imgbake/error.h"
#include "imgbake/json.h"
#include "imgbake/util.h"

namespace imgbake::cli {

Action setup_fmt(CLI::App& sub, const GlobalOptions&) {
  struct Opts {
    std::string path;
    bool check = false;
    bool write = false;
  };
  auto o = std::make_shared<Opts>();
  sub.add_flag("--check", o->check, "Exit 1 (and name the file) if it is not formatted; change nothing");
  sub.add_flag("--write", o->write, "Rewrite the file in place (atomically)");
  sub.add_option("template", o->path, "The template")->required();
  return [o] {
    if (o->check && o->write) throw UsageError("fmt: --check and --write exclude each other");
    if (o->write && o->path == "-") throw UsageError("fmt: --write needs a file, not standard input");
    std::string text;
    if (o->path == "-")
      text.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
    else
      text = util::read_file(o->path);
    json::Value v;
    try {
      v = json::parse(text);
    } catch (const json::ParseError& e) {
      throw ConfigError(o->path, e.pos, std::string("invalid JSON: ") + e.what());
    }
    std::string formatted = json::serialize(v);
    if (o->check) {
      if (formatted == text) return 0;
      std::cout << o->path << "\n";
      return 1;
    }
    if (o->write) {
      if (formatted == text) return 0;
      // Rewrite the file a symlink points to (not the link), keeping its permissions:
      // a template holding secrets may be 0600 and must stay so.
      std::filesystem::path target = std::filesystem::canonical(o->path);
      auto perms = std::filesystem::status(target).permissions();
      util::write_file_atomic(target, formatted, static_cast<int>(perms & std::filesystem::perms::mask));
      return 0;
    }
    std::cout << formatted;
    return 0;
  };
}

}  // namespace imgbake::cli
