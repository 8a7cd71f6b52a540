// Where things are in an HCL file, and what went wrong there. Positions are 1-based lines
// and columns (columns count characters, not bytes) plus the 0-based byte offset, as
// hashicorp/hcl reports them; a diagnostic prints as file:line:col with the source line.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace imgbake::hcl {

struct Pos {
  int line = 1;
  int column = 1;
  int byte = 0;
  friend bool operator==(const Pos& a, const Pos& b) {
    return a.line == b.line && a.column == b.column && a.byte == b.byte;
  }
};

struct Range {
  Pos start;
  Pos end;
  friend bool operator==(const Range& a, const Range& b) { return a.start == b.start && a.end == b.end; }
};

// The range from the start of `a` to the end of `b`.
Range range_between(const Range& a, const Range& b);

struct Diagnostic {
  enum class Severity { Error, Warning };
  Severity severity = Severity::Error;
  std::string summary;  // "Missing newline after argument"
  std::string detail;   // a sentence or two on what to do
  std::string file;
  Range subject;
};

class Diagnostics {
 public:
  void error(const std::string& file, Range subject, std::string summary, std::string detail = {});
  void add(Diagnostic d) { items_.push_back(std::move(d)); }
  void append(const Diagnostics& other);
  bool has_errors() const;
  bool empty() const { return items_.empty(); }
  const std::vector<Diagnostic>& items() const { return items_; }

 private:
  std::vector<Diagnostic> items_;
};

// "file:3:5: error: Missing newline after argument; An argument definition must end with a
// newline." then the source line and a caret line under the subject:
//     3 | a = "a value", b = "b value"
//       |              ^
std::string format(const Diagnostic& d, std::string_view source);
std::string format(const Diagnostics& ds, std::string_view source);

}  // namespace imgbake::hcl
