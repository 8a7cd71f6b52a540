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

// HCL's JSON syntax (hashicorp/hcl's json package). There, whether an object property is an
// argument or a block depends on what the reader expects; a schema says which property names
// are blocks (with their labels, nested as JSON objects) at each level.
struct BodySchema {
  struct BlockType {
    std::string type;
    std::vector<std::string> labels;  // the labels' names, for messages ("type", "name")
    // What the block's body holds; nullptr: arguments only (hcl's JustAttributes: the body
    // must be one JSON object, every property an argument).
    const BodySchema* body = nullptr;
  };
  std::vector<BlockType> blocks;
  // Arguments whose string is an expression in native syntax rather than a template (a
  // variable's type constraint, as hcl reads them with ExprCall/AsTraversal).
  std::vector<std::string> expression_arguments;
  const BlockType* block(const std::string& type) const;
};

// A `*.json` file as a body: properties that `schema` names as blocks become blocks, the
// others arguments (`"//"` properties, comments, are skipped); values become expressions:
// strings are templates, arrays tuples, objects objects whose keys are templates. Positions
// are those in the JSON file. `schema` nullptr: arguments only.
File parse_json_file(std::string source, std::string filename, const BodySchema* schema, Diagnostics& diags);

}  // namespace imgbake::hcl
