#include "imgbake/hcl_parse.h"

#include "parser.h"

namespace imgbake::hcl {

File parse_file(std::string source, std::string filename, Diagnostics& diags) {
  File f;
  f.name = std::move(filename);
  f.source = std::move(source);
  if (f.source.starts_with("\xEF\xBB\xBF")) f.source.erase(0, 3);  // a UTF-8 byte order mark
  Parser p(f.source, f.name, diags);
  f.body = p.parse_body(Tok::Eof);
  return f;
}

ExprPtr parse_expression(std::string_view source, const std::string& filename, Diagnostics& diags) {
  Parser p(source, filename, diags);
  p.push_newlines(false);  // a bare expression ignores newlines, as if in parentheses
  ExprPtr e = p.parse_expression();
  if (!p.at_eof() && !diags.has_errors())
    diags.error(filename, p.peek().range, "Extra characters after expression",
                "An expression was successfully parsed, but extra characters were found after it.");
  return e;
}

ExprPtr parse_template(std::string_view source, const std::string& filename, Diagnostics& diags) {
  Parser p(source, filename, diags, true);
  return p.parse_template_file();
}

}  // namespace imgbake::hcl
