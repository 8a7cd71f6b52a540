// The differences between two cache key preimages (json_diff.h).
#include "imgbake/json_diff.h"

#include <algorithm>

namespace imgbake {

void json_diff(const nlohmann::json& a, const nlohmann::json& b, const std::string& path,
               std::vector<std::string>& out) {
  if (out.size() >= 8 || a == b) return;
  if (a.is_object() && b.is_object()) {
    for (const auto& [k, v] : a.items())
      json_diff(v, b.contains(k) ? b[k] : nlohmann::json(), path.empty() ? k : path + "." + k, out);
    for (const auto& [k, v] : b.items())
      if (!a.contains(k)) json_diff(nlohmann::json(), v, path.empty() ? k : path + "." + k, out);
    return;
  }
  if (a.is_array() && b.is_array()) {
    for (size_t i = 0; i < std::max(a.size(), b.size()); ++i)
      json_diff(i < a.size() ? a[i] : nlohmann::json(), i < b.size() ? b[i] : nlohmann::json(),
                path + "[" + std::to_string(i) + "]", out);
    return;
  }
  auto show = [](const nlohmann::json& v) {
    std::string s = v.is_null() ? "(absent)" : v.dump();
    return s.size() > 80 ? s.substr(0, 77) + "..." : s;
  };
  out.push_back(path + ": " + show(a) + " -> " + show(b));
}

}  // namespace imgbake
