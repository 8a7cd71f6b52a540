// HCL string literals: quoting a value for messages and Value::str.
#pragma once

#include <string>
#include <string_view>

namespace imgbake::hcl {

// Escapes for a quoted HCL string (with the quotes): \" \\ \n \r \t, $${ and %%{.
std::string quote_string(std::string_view s);

}  // namespace imgbake::hcl
