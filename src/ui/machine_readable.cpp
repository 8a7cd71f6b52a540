#include "imgbake/machine_readable.h"

#include <chrono>
#include <map>

namespace imgbake {

std::string packer_escape(std::string_view data) {
  std::string out;
  out.reserve(data.size());
  for (char c : data) {
    if (c == ',')
      out += "%!(PACKER_COMMA)";
    else if (c == '\r')
      out += "\\r";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

std::string packer_line(std::int64_t unix_time, std::string_view target, std::string_view type,
                        const std::vector<std::string>& data) {
  // Packer escapes only the data; the target and type are names without commas.
  std::string line = std::to_string(unix_time);
  line += ',';
  line += packer_escape(target);
  line += ',';
  line += type;
  for (const auto& d : data) {
    line += ',';
    line += packer_escape(d);
  }
  line += '\n';
  return line;
}

std::string packer_line(std::string_view target, std::string_view type, const std::vector<std::string>& data) {
  auto now = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch());
  return packer_line(now.count(), target, type, data);
}

std::string packer_builder_id(std::string_view type) {
  // Packer 1.6.6's ids (its builders' and post-processors' BuilderId constants).
  static const std::map<std::string, std::string, std::less<>> ids = {
      {"file", "packer.file"},
      {"null", "fnoeding.null"},
      {"qemu", "transcend.qemu"},
      {"amazon-ebs", "mitchellh.amazonebs"},
      {"checksum", "packer.post-processor.checksum"},
      {"manifest", "packer.post-processor.manifest"},
      {"shell-local", "packer.post-processor.shell-local"},
  };
  auto it = ids.find(type);
  return it != ids.end() ? it->second : "imgbake." + std::string(type);
}

}  // namespace imgbake
