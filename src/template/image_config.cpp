// The "config" object of the template's "imgbake" section: how a container image runs
// (OCI image config: Env, Entrypoint, Cmd, WorkingDir, User, ExposedPorts, Volumes,
// StopSignal, Labels). Read by the template check and by image builders.
#include <regex>

#include "imgbake/config.h"
#include "imgbake/interpolate.h"
#include "imgbake/test_spec.h"
#include "imgbake_section.h"

namespace imgbake {

nlohmann::ordered_json read_image_config(ConfigReader& r) {
  nlohmann::ordered_json c = nlohmann::ordered_json::object();
  // Env: ["K=V", …] as in the OCI config, or {"K": "V"} (kept in the order written).
  if (const json::Value* env = r.raw("Env")) {
    nlohmann::ordered_json list = nlohmann::ordered_json::array();
    if (env->is_object()) {
      for (const auto& m : env->members) {
        if (!m.value.is_string()) r.error("Env", "'Env' values must be strings ('" + m.key + "' is not)");
        list.push_back(m.key + "=" + m.value.text);
      }
    } else {
      for (const auto& e : r.strings("Env")) {
        if (e.find('=') == std::string::npos || e.front() == '=')
          r.error("Env", "'Env' entry '" + e + "' is not NAME=VALUE");
        list.push_back(e);
      }
    }
    c["Env"] = list;
  }
  for (const char* k : {"Entrypoint", "Cmd"})
    if (r.has(k)) c[k] = r.strings(k);
  for (const char* k : {"WorkingDir", "User", "StopSignal"})
    if (r.has(k)) c[k] = r.string(k);
  if (auto wd = c.find("WorkingDir"); wd != c.end() && !wd->get<std::string>().starts_with("/"))
    r.error("WorkingDir", "'WorkingDir' must be an absolute path");
  for (const char* k : {"ExposedPorts", "Volumes"}) {
    if (!r.has(k)) continue;
    nlohmann::ordered_json set = nlohmann::ordered_json::object();
    for (const auto& p : r.strings(k)) set[p] = nlohmann::ordered_json::object();
    c[k] = set;
  }
  if (r.has("Labels")) {
    nlohmann::ordered_json labels = nlohmann::ordered_json::object();
    for (const auto& [k, v] : r.string_map("Labels")) labels[k] = v;
    c["Labels"] = labels;
  }
  r.finish();
  return c;
}

}  // namespace imgbake

namespace imgbake::hcl_template {

// imgbake's own settings. Packer ignores nothing it knows because they live under
// one key (JSON) or block (HCL2) of their own; the store gives them effect.
void check_imgbake_section(const json::Value& v, const std::string& path, Diagnostics& d) {
  ConfigReader r(v, path, "'imgbake'", d);
  static const std::regex repo("[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*)*");
  std::string image = r.string("image");
  if (!image.empty() && !interp::has_actions(image) && !std::regex_match(image, repo))
    r.error("image", "image name '" + image +
                         "' is not a valid OCI repository name (lower-case letters, digits, '.', '_', '-', '/')");
  std::string version = r.string("version");
  // A version made with {{user `x`}} is checked once rendered (plan_builds' commit).
  if (!interp::has_actions(version) && version.find_first_of(":@/ ") != std::string::npos)
    r.error("version", "version '" + version + "' must not contain ':', '@', '/' or spaces");
  r.string_map("labels");
  r.strings("channels");
  r.string("signing_key");
  r.boolean("embed_build_info", true);
  if (const json::Value* tests = r.raw("tests")) read_test_spec(*tests, path, d);
  if (r.boolean("test_after_build", false) && !r.raw("tests"))
    r.error("test_after_build", "'test_after_build' needs checks: give them in 'tests'");
  // false: no step is taken from a cache (--no-cache); an object: where the cache is shared
  // (docs/build-cache.md); --cache-from/--cache-to and $IMGBAKE_CACHE_FROM/_TO win.
  if (const json::Value* c = r.raw("cache"); c && c->is_object()) {
    ConfigReader cr(*c, path, "'imgbake.cache'", d);
    for (const auto& from : cr.strings("from"))
      if (from.empty() || from.find_first_of("@ ") != std::string::npos)
        cr.error("from", "'from' entry '" + from + "' is not a REGISTRY/REPOSITORY");
    if (std::string to = cr.string("to"); to.find_first_of("@ ") != std::string::npos)
      cr.error("to", "'to' is not a REGISTRY/REPOSITORY");
    cr.finish();
  } else if (c && !c->is_bool()) {
    r.error("cache", "'cache' must be true, false or an object ({\"from\": …, \"to\": …})");
  }
  if (const json::Value* c = r.raw("config")) {
    if (c->is_object()) {
      ConfigReader cr(*c, path, "'imgbake.config'", d);
      read_image_config(cr);
    } else {
      r.error("config", "'config' must be an object (Env, Entrypoint, Cmd, WorkingDir, User, ExposedPorts, …)");
    }
  }
  r.finish();
}

}  // namespace imgbake::hcl_template
