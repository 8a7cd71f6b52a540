// libFuzzer target: a Packer JSON template, as `imgbake validate` reads it. Every input must end
// in a Template or a ConfigError; anything else (a crash, another exception, a sanitizer report)
// is a bug.
#include <cstddef>
#include <cstdint>
#include <string>

#include "imgbake/error.h"
#include "imgbake/template.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    imgbake::parse_template_text(std::string(reinterpret_cast<const char*>(data), size), "fuzz.json");
  } catch (const imgbake::ConfigError&) {
  }
  return 0;
}
