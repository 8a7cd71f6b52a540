// Type constraints written as HCL expressions (hcl's ext/typeexpr): `string`, `number`,
// `bool`, `any`, `list(T)`, `set(T)`, `map(T)`, `tuple([T, ...])`, `object({name = T, ...})`
// with `optional(T)` attributes. Packer's `variable { type = ... }` uses them.
#pragma once

#include <optional>
#include <string>

#include "imgbake/hcl_ast.h"

namespace imgbake::hcl {

// The type `e` names, or nullopt with a diagnostic at the offending part.
std::optional<Type> type_expression(const Expr& e, Diagnostics& diags, const std::string& file);

}  // namespace imgbake::hcl
