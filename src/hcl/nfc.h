// Unicode Normalization Form C: cty normalizes every string value to it, so "n" + U+0303
// and "ñ" are the same string (HCL's spec tests check it). ICU does the work.
#pragma once

#include <string>

namespace imgbake::hcl {

std::string to_nfc(std::string s);

}  // namespace imgbake::hcl
