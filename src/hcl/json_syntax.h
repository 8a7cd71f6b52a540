// HCL's JSON syntax (hashicorp/hcl's json package): the JSON value tree with source ranges,
// read by hcl's own scanner and parser rules (the same errors at the same ranges). What the
// values mean — bodies, blocks, expressions — is json_body.cpp's.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "imgbake/hcl_diagnostic.h"

namespace imgbake::hcl::json_syntax {

struct Node;
using NodePtr = std::unique_ptr<Node>;

struct Property {
  std::string name;
  Range name_range;
  NodePtr value;
};

struct Node {
  // Invalid: a value that could not be read (already reported).
  enum class Kind { Object, Array, String, Number, Bool, Null, Invalid };
  Kind kind = Kind::Invalid;
  Range range;        // the whole value
  Range open_range;   // an object's "{" or an array's "["
  Range close_range;  // an object's "}"
  std::string text;   // a string's value (escapes decoded); a number's literal
  bool boolean = false;
  std::vector<Property> properties;  // an object's, in source order (duplicates kept)
  std::vector<NodePtr> items;        // an array's

  // Where errors about the value as a whole point (hcl's StartRange).
  Range start_range() const { return kind == Kind::Object || kind == Kind::Array ? open_range : range; }
};

// Reads one JSON value (a whole file); never null. Problems go to `diags`.
NodePtr parse(std::string_view src, const std::string& file, Diagnostics& diags);

}  // namespace imgbake::hcl::json_syntax
