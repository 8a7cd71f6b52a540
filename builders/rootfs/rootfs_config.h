// The rootfs builder's options (docs/builders/rootfs.md).
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "imgbake/config.h"
#include "imgbake/layer.h"

namespace imgbake::rootfs {

enum class SourceKind { Debootstrap, Tar, OciLayout, OciArchive, Store };

struct DebootstrapConfig {
  std::string suite = "bookworm";
  std::string variant = "minbase";
  std::vector<std::string> components;  // empty: debootstrap's default (main)
  std::vector<std::string> include;     // extra packages
  std::string mirror;                   // default: the first deb URI in /etc/apt/sources.list*
  bool check_gpg = true;
};

struct Config {
  std::string source;  // as written
  SourceKind kind = SourceKind::Store;
  std::string path;  // tar/oci/oci-archive: the file or directory; store: the REF
  std::string tag;   // oci/oci-archive: the ref.name to pick ("" = the only manifest)
  DebootstrapConfig debootstrap;
  bool network = false;
  layer::Compression compression = layer::Compression::Gzip;
  int compression_level = -1;
  std::optional<int64_t> source_date_epoch;  // the option; the env var and git are looked at when building
};

// Reads and checks the options; problems go to the reader.
Config read_config(ConfigReader& r);

// The first "deb" URI of the host's apt sources (sources.list, then sources.list.d/*.list and
// *.sources in name order; one-line and deb822 forms), or "".
std::string host_apt_mirror(const std::filesystem::path& etc_apt = "/etc/apt");

}  // namespace imgbake::rootfs
