// Per-registry settings from registries.conf, as podman and skopeo read them
// (containers-registries.conf(5)), so `--insecure-registry` need not be repeated on every
// command. Files, later ones winning: /etc/containers/registries.conf (or, when it exists,
// $XDG_CONFIG_HOME/containers/registries.conf — podman reads one or the other), then
// imgbake's own $IMGBAKE_CONFIG_HOME/registries.conf. Read: version 2's [[registry]] tables
// (`location`, `insecure`, `blocked`; `prefix` is taken as the location when no location is
// given) and version 1's [registries.insecure] / [registries.block] `registries` lists. Other
// keys and tables (mirrors, search registries, aliases) are accepted and not used.
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace imgbake::registry {

struct RegistrySettings {
  bool insecure = false;  // plain HTTP, and TLS without certificate checks
  bool blocked = false;   // never contacted
  std::string source;     // "FILE:LINE" that set it, for messages
};

class RegistriesConf {
 public:
  // Parses one file's text; throws BuildError "FILE:LINE: message" on a line it cannot read.
  void parse(const std::string& text, const std::string& file);
  // Reads the files listed above (missing files are skipped).
  static RegistriesConf load();
  // The settings for a registry host (HOST[:PORT]): the entry whose location is the host, or a
  // repository prefix under it (HOST/NAMESPACE); the last matching entry wins.
  RegistrySettings settings_for(const std::string& host) const;

 private:
  std::vector<std::pair<std::string, RegistrySettings>> entries_;  // location, settings
};

// The files load() reads, in order.
std::vector<std::filesystem::path> registries_conf_paths();

}  // namespace imgbake::registry
