#include "imgbake/error.h"

namespace imgbake {

std::string Diagnostic::str() const {
  std::string out;
  if (!file.empty()) {
    out += file;
    if (pos.line > 0) {
      out += ':' + std::to_string(pos.line);
      if (pos.col > 0) out += ':' + std::to_string(pos.col);
    }
    out += ": ";
  }
  if (warning) out += "warning: ";
  out += message;
  return out;
}

namespace {
// The same problem found once per build (a provisioner shared by two builds) is reported once.
void add_unique(std::vector<Diagnostic>& items, Diagnostic d) {
  for (const auto& i : items)
    if (i.warning == d.warning && i.file == d.file && i.pos.line == d.pos.line && i.pos.col == d.pos.col &&
        i.message == d.message)
      return;
  items.push_back(std::move(d));
}
}  // namespace

void Diagnostics::error(const std::string& file, json::Pos pos, std::string message) {
  add_unique(items_, Diagnostic{file, pos, std::move(message), false});
}

void Diagnostics::warn(const std::string& file, json::Pos pos, std::string message) {
  add_unique(items_, Diagnostic{file, pos, std::move(message), true});
}

bool Diagnostics::has_errors() const {
  for (const auto& d : items_)
    if (!d.warning) return true;
  return false;
}

std::vector<Diagnostic> Diagnostics::errors() const {
  std::vector<Diagnostic> out;
  for (const auto& d : items_)
    if (!d.warning) out.push_back(d);
  return out;
}

std::vector<Diagnostic> Diagnostics::warnings() const {
  std::vector<Diagnostic> out;
  for (const auto& d : items_)
    if (d.warning) out.push_back(d);
  return out;
}

void Diagnostics::merge(const Diagnostics& other) {
  for (const auto& d : other.items_) add_unique(items_, d);
}

void Diagnostics::throw_if_errors() const {
  if (has_errors()) throw ConfigError(errors());
}

namespace {
std::string join_diags(const std::vector<Diagnostic>& diags) {
  std::string out;
  for (size_t i = 0; i < diags.size(); ++i) {
    if (i) out += '\n';
    out += diags[i].str();
  }
  return out;
}
}  // namespace

ConfigError::ConfigError(std::vector<Diagnostic> diags)
    : std::runtime_error(join_diags(diags)), diags_(std::move(diags)) {}

ConfigError::ConfigError(const std::string& file, json::Pos pos, const std::string& message)
    : ConfigError(std::vector<Diagnostic>{Diagnostic{file, pos, message, false}}) {}

}  // namespace imgbake
