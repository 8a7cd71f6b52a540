// libFuzzer target: HCL's native syntax (a *.pkr.hcl file). The parser reports problems as
// diagnostics and never throws; a crash, an exception or a sanitizer report is a bug. A file
// that parses cleanly is also evaluated, every attribute of every block, with the standard
// functions and no variables (unknown references become diagnostics).
#include <cstddef>
#include <cstdint>
#include <string>

#include "imgbake/hcl_eval.h"
#include "imgbake/hcl_parse.h"

namespace {

void evaluate_body(const imgbake::hcl::Body& body, const imgbake::hcl::EvalContext& ctx,
                   imgbake::hcl::Diagnostics& diags) {
  for (const auto& attr : body.attributes) {
    if (attr.expr) imgbake::hcl::evaluate(*attr.expr, ctx, diags, "fuzz.pkr.hcl");
  }
  for (const auto& block : body.blocks) {
    if (block.body) evaluate_body(*block.body, ctx, diags);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const imgbake::hcl::EvalContext ctx = [] {
    imgbake::hcl::EvalContext c;
    c.functions = imgbake::hcl::standard_functions();
    return c;
  }();
  imgbake::hcl::Diagnostics diags;
  imgbake::hcl::File file =
      imgbake::hcl::parse_file(std::string(reinterpret_cast<const char*>(data), size), "fuzz.pkr.hcl", diags);
  if (!diags.has_errors()) evaluate_body(file.body, ctx, diags);
  return 0;
}
