// libFuzzer target: the Go-template subset of Packer templates ({{user `x`}}, pipes, functions).
// Every input must render or throw interp::Error (Poisoned for a failed variable); anything else
// is a bug. The context has variables, a failed one and run-time data, so that every function
// and the deferred form are reached.
#include <cstddef>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <string_view>

#include "imgbake/interpolate.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::map<std::string, std::string> vars = {
      {"name", "web"}, {"empty", ""}, {"long", std::string(4096, 'x')}, {"braces", "{{user `name`}}"}};
  static const std::set<std::string> failed = {"broken"};
  std::string_view text(reinterpret_cast<const char*>(data), size);
  // The first byte picks the context's switches; the rest is the text.
  uint8_t mode = size > 0 ? data[0] : 0;
  if (size > 0) text.remove_prefix(1);
  imgbake::interp::Context ctx;
  ctx.user_vars = (mode & 1) != 0 ? &vars : nullptr;
  ctx.allow_env = (mode & 2) != 0;
  ctx.defer_unknown = (mode & 4) != 0;
  ctx.failed_user_vars = &failed;
  ctx.template_dir = "/templates";
  ctx.build_name = "qemu";
  ctx.build_type = "qemu";
  if ((mode & 8) != 0) ctx.data = {{"Name", "x"}, {"HTTPIP", "10.0.2.2"}, {"HTTPPort", "8080"}};
  try {
    imgbake::interp::render(text, ctx);
  } catch (const imgbake::interp::Error&) {
  } catch (const imgbake::interp::Poisoned&) {
  }
  return 0;
}
