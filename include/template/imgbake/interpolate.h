// Packer's template engine: the Go text/template subset that Packer JSON templates
// use ({{user `x`}}, {{ .Name }}, pipes, string/raw/number literals, parentheses).
#pragma once

#include <chrono>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace imgbake::interp {

// The start of this run: timestamp and isotime give the same time everywhere in one run.
std::chrono::system_clock::time_point run_start_time();

struct Context {
  // Values for {{user `name`}}; nullptr means no variables exist here.
  const std::map<std::string, std::string>* user_vars = nullptr;
  // {{env}} is only allowed in variable defaults, as in Packer.
  bool allow_env = false;
  std::string template_dir;
  std::string build_name;
  std::string build_type;
  // {{ .Key }} values that builders and provisioners fill at run time.
  std::map<std::string, std::string> data;
  // When true, an action that needs something not known yet ({{ .HTTPIP }} before the
  // builder has started, {{build_name}} in a variable) is left in place verbatim, to be
  // rendered again later. When false, it is an error.
  bool defer_unknown = false;
  // The time of this run: timestamp and isotime are constant across one run.
  std::chrono::system_clock::time_point now = run_start_time();
  // Outside the variables section (allow_env false) {{user `x`}} of an undefined variable
  // renders "", as in Packer; each such use is appended here (when set) so the caller can warn.
  struct Undefined {
    std::string name;
    size_t offset;  // of the action within the rendered text
  };
  std::vector<Undefined>* undefined_users = nullptr;
  // Variables that could not be given a value (an error was already reported for each):
  // rendering a text that uses one throws Poisoned, so that nothing downstream reports the
  // same cause again as a problem of the unrendered text.
  const std::set<std::string>* failed_user_vars = nullptr;
};

// Thrown by render() when the text uses a variable listed in Context::failed_user_vars.
class Poisoned : public std::runtime_error {
 public:
  explicit Poisoned(const std::string& name) : std::runtime_error("variable '" + name + "' has no value"), name(name) {}
  std::string name;
};

class Error : public std::runtime_error {
 public:
  Error(const std::string& message, size_t offset) : std::runtime_error(message), offset(offset) {}
  size_t offset;  // byte offset of the failing action within the rendered text
};

// The longest text render() produces: beyond it, it throws TooLong.
inline constexpr size_t kMaxRenderedSize = 4u << 20;

// The rendered text would pass kMaxRenderedSize where `action` ("{{user `b`}}") adds its output.
class TooLong : public Error {
 public:
  TooLong(const std::string& action, size_t offset)
      : Error("this value would be longer than " + std::to_string(kMaxRenderedSize >> 20) +
                  " MiB (the limit on a rendered value) where '" + action + "' adds to it",
              offset),
        action(action) {}
  std::string action;
};

// Renders `text`. Throws Error (with the offset of the action) on an unknown function,
// bad arguments, an undefined variable, a syntax error; TooLong for a result longer than
// kMaxRenderedSize.
std::string render(std::string_view text, const Context& ctx);

// Whether `text` contains a template action at all.
bool has_actions(std::string_view text);

// The names of every function the engine knows (for "did you mean").
const std::vector<std::string>& function_names();

}  // namespace imgbake::interp
