// Packer's -machine-readable format: one CSV line per fact, "TIMESTAMP,TARGET,TYPE,DATA...",
// where TIMESTAMP is Unix seconds, TARGET a build name or empty, and commas, carriage returns
// and newlines inside DATA are written as "%!(PACKER_COMMA)", "\r" and "\n" (two characters).
// CI scripts written for `packer build -machine-readable` read imgbake's lines the same way.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace imgbake {

std::string packer_escape(std::string_view data);
// One line, ending in '\n'.
std::string packer_line(std::int64_t unix_time, std::string_view target, std::string_view type,
                        const std::vector<std::string>& data);
// The same, stamped with the current time.
std::string packer_line(std::string_view target, std::string_view type, const std::vector<std::string>& data);
// The builder-id Packer gives an artifact of this builder or post-processor type
// ("file" → "packer.file", "qemu" → "transcend.qemu"); imgbake's own types get "imgbake.TYPE".
std::string packer_builder_id(std::string_view type);

}  // namespace imgbake
