#include "imgbake/hcl_diagnostic.h"

namespace imgbake::hcl {

Range range_between(const Range& a, const Range& b) {
  Range r;
  r.start = a.start.byte <= b.start.byte ? a.start : b.start;
  r.end = a.end.byte >= b.end.byte ? a.end : b.end;
  return r;
}

void Diagnostics::error(const std::string& file, Range subject, std::string summary, std::string detail) {
  items_.push_back(Diagnostic{Diagnostic::Severity::Error, std::move(summary), std::move(detail), file, subject});
}

void Diagnostics::append(const Diagnostics& other) {
  items_.insert(items_.end(), other.items_.begin(), other.items_.end());
}

bool Diagnostics::has_errors() const {
  for (const auto& d : items_)
    if (d.severity == Diagnostic::Severity::Error) return true;
  return false;
}

namespace {
// The text of line `line` (1-based) of `source`, without its newline.
std::string_view source_line(std::string_view source, int line) {
  size_t start = 0;
  for (int l = 1; l < line; ++l) {
    size_t nl = source.find('\n', start);
    if (nl == std::string_view::npos) return {};
    start = nl + 1;
  }
  size_t end = source.find('\n', start);
  std::string_view s = source.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start);
  if (!s.empty() && s.back() == '\r') s.remove_suffix(1);
  return s;
}
}  // namespace

std::string format(const Diagnostic& d, std::string_view source) {
  const Pos& p = d.subject.start;
  std::string out = d.file + ":" + std::to_string(p.line) + ":" + std::to_string(p.column) + ": ";
  out += d.severity == Diagnostic::Severity::Error ? "error: " : "warning: ";
  out += d.summary;
  if (!d.detail.empty()) out += "; " + d.detail;
  std::string_view line = source_line(source, p.line);
  if (line.empty() && source.empty()) return out;
  std::string num = std::to_string(p.line);
  out += "\n  " + num + " | " + std::string(line) + "\n  " + std::string(num.size(), ' ') + " | ";
  // The caret line keeps tabs so that it lines up under the source line.
  int col = 1;
  size_t i = 0;
  for (; i < line.size() && col < p.column; ++i) {
    auto c = static_cast<unsigned char>(line[i]);
    if ((c & 0xC0) == 0x80) continue;
    out += c == '\t' ? '\t' : ' ';
    ++col;
  }
  int width = d.subject.end.line == p.line ? std::max(1, d.subject.end.column - p.column) : 1;
  out += std::string(static_cast<size_t>(width), '^');
  return out;
}

std::string format(const Diagnostics& ds, std::string_view source) {
  std::string out;
  for (const auto& d : ds.items()) {
    if (!out.empty()) out += '\n';
    out += format(d, source);
  }
  return out;
}

}  // namespace imgbake::hcl
