// The parts of standard_functions() (cty's function/stdlib), one file per family.
#pragma once

#include <map>
#include <string>

#include "imgbake/hcl_eval.h"

namespace imgbake::hcl {

void add_string_functions(std::map<std::string, Function>& fs);      // functions_string.cpp
void add_collection_functions(std::map<std::string, Function>& fs);  // functions_collection.cpp
void add_encoding_functions(std::map<std::string, Function>& fs);    // functions_encoding.cpp
void add_datetime_functions(std::map<std::string, Function>& fs);    // functions_datetime.cpp
void add_set_functions(std::map<std::string, Function>& fs);         // functions_sets.cpp

// Characters (code points) of a UTF-8 string, for substr and friends.
std::vector<std::string> utf8_chars(const std::string& s);

}  // namespace imgbake::hcl
