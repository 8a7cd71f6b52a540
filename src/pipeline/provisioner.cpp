#include "imgbake/provisioner.h"

#include "imgbake/util.h"

namespace imgbake {

nlohmann::json host_file_digests(const std::vector<std::string>& paths) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& path : paths) {
    std::string digest;
    try {
      digest = util::file_digest_hex(path);
    } catch (const std::exception&) {
      digest = "missing";
    }
    out.push_back({{"path", path}, {"sha256", digest}});
  }
  return out;
}

std::string escape_single_quotes(const std::string& value) {
  std::string out;
  for (char c : value) {
    if (c == '\'')
      out += "'\"'\"'";
    else
      out += c;
  }
  return out;
}

std::string format_env_var(const std::string& format, const std::string& name, const std::string& value) {
  std::string out;
  int n = 0;
  for (size_t i = 0; i < format.size(); ++i) {
    if (format[i] == '%' && i + 1 < format.size() && format[i + 1] == 's') {
      out += n++ == 0 ? name : escape_single_quotes(value);
      ++i;
    } else {
      out += format[i];
    }
  }
  return out;
}

}  // namespace imgbake
