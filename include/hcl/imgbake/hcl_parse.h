// Reading HCL native syntax: a whole file (a body), one expression, or a template. Problems
// are added to `diags` with their source ranges; the tree is still returned (with
// placeholders where the source was wrong), as hashicorp/hcl does.
#pragma once

#include <string>
#include <string_view>

#include "imgbake/hcl_ast.h"

namespace imgbake::hcl {

File parse_file(std::string source, std::string filename, Diagnostics& diags);
ExprPtr parse_expression(std::string_view source, const std::string& filename, Diagnostics& diags);
ExprPtr parse_template(std::string_view source, const std::string& filename, Diagnostics& diags);

}  // namespace imgbake::hcl
