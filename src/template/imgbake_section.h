// The checks of the template's `imgbake` section (private to the template module), shared by
// the JSON reader (parse.cpp) and the HCL2 one (hcl_load.cpp).
#pragma once

#include <string>

#include "imgbake/error.h"
#include "imgbake/json.h"

namespace imgbake::hcl_template {

void check_imgbake_section(const json::Value& v, const std::string& path, Diagnostics& d);

}  // namespace imgbake::hcl_template
