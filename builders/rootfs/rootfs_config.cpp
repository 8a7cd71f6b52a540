#include "rootfs_config.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "imgbake/util.h"

namespace imgbake::rootfs {

namespace fs = std::filesystem;

namespace {

// "oci:PATH[:TAG]" / "oci-archive:FILE[:TAG]": the tag is what follows the last ':' when
// the part before it names something that exists (a path may contain ':' itself).
void split_path_tag(const std::string& rest, std::string& path, std::string& tag) {
  size_t colon = rest.rfind(':');
  if (colon != std::string::npos && colon > 0 && fs::exists(rest.substr(0, colon)) && !fs::exists(rest)) {
    path = rest.substr(0, colon);
    tag = rest.substr(colon + 1);
  } else {
    path = rest;
  }
}

}  // namespace

Config read_config(ConfigReader& r) {
  Config c;
  c.source = r.string("source");
  if (c.source.empty()) {
    r.require("source");
  } else if (c.source == "debootstrap") {
    c.kind = SourceKind::Debootstrap;
  } else if (c.source.starts_with("tar:")) {
    c.kind = SourceKind::Tar;
    c.path = c.source.substr(4);
    if (!fs::is_regular_file(c.path)) r.error("source", "the rootfs tarball '" + c.path + "' does not exist");
  } else if (c.source.starts_with("oci:")) {
    c.kind = SourceKind::OciLayout;
    split_path_tag(c.source.substr(4), c.path, c.tag);
    if (!fs::is_regular_file(fs::path(c.path) / "index.json"))
      r.error("source", "'" + c.path + "' is not an OCI image layout (no index.json)");
  } else if (c.source.starts_with("oci-archive:")) {
    c.kind = SourceKind::OciArchive;
    split_path_tag(c.source.substr(12), c.path, c.tag);
    if (!fs::is_regular_file(c.path)) r.error("source", "the OCI archive '" + c.path + "' does not exist");
  } else {
    c.kind = SourceKind::Store;
    c.path = c.source.starts_with("store:") ? c.source.substr(6) : c.source;
  }

  if (const json::Value* d = r.raw("debootstrap")) {
    if (!d->is_object()) {
      r.error("debootstrap", "'debootstrap' must be an object (suite, variant, components, include, mirror)");
    } else {
      ConfigReader dr(*d, r.file(), r.label() + " debootstrap", r.diagnostics());
      c.debootstrap.suite = dr.string("suite", "bookworm");
      c.debootstrap.variant = dr.string("variant", "minbase");
      c.debootstrap.components = dr.strings("components");
      c.debootstrap.include = dr.strings("include");
      c.debootstrap.mirror = dr.string("mirror");
      c.debootstrap.check_gpg = dr.boolean("check_gpg", true);
      static const std::vector<std::string> variants = {"minbase", "buildd", "fakechroot", "-", "default"};
      if (std::find(variants.begin(), variants.end(), c.debootstrap.variant) == variants.end())
        dr.error("variant",
                 "variant '" + c.debootstrap.variant + "' is not one of minbase, buildd, fakechroot, default");
      dr.finish();
    }
    if (c.kind != SourceKind::Debootstrap)
      r.warn("debootstrap", "'debootstrap' options are ignored: source is not \"debootstrap\"");
  }
  if (c.kind == SourceKind::Debootstrap) {
    if (c.debootstrap.mirror.empty()) c.debootstrap.mirror = host_apt_mirror();
    if (c.debootstrap.mirror.empty())
      r.error("source", "debootstrap needs a mirror: set debootstrap.mirror (none found in /etc/apt/sources.list*)");
  }

  c.network = r.boolean("network", false);
  std::string comp = r.string("layer_compression", "gzip");
  if (auto parsed = layer::parse_compression(comp))
    c.compression = *parsed;
  else
    r.error("layer_compression", "layer_compression '" + comp + "' is not gzip, zstd or none");
  c.compression_level = static_cast<int>(r.integer("layer_compression_level", -1));
  if (c.compression_level != -1 && (c.compression_level < 1 || c.compression_level > 19))
    r.error("layer_compression_level", "layer_compression_level must be 1-9 (gzip) or 1-19 (zstd)");
  if (r.has("source_date_epoch")) {
    int64_t e = r.integer("source_date_epoch", 0);
    if (e < 0) r.error("source_date_epoch", "source_date_epoch must be seconds since 1970 (>= 0)");
    c.source_date_epoch = e;
  }
  return c;
}

std::string host_apt_mirror(const fs::path& etc_apt) {
  std::vector<fs::path> files;
  if (fs::exists(etc_apt / "sources.list")) files.push_back(etc_apt / "sources.list");
  std::error_code ec;
  std::vector<fs::path> more;
  for (const auto& e : fs::directory_iterator(etc_apt / "sources.list.d", ec))
    if (e.path().extension() == ".list" || e.path().extension() == ".sources") more.push_back(e.path());
  std::sort(more.begin(), more.end());
  files.insert(files.end(), more.begin(), more.end());
  for (const auto& f : files) {
    std::ifstream in(f);
    std::string line;
    bool deb822 = f.extension() == ".sources", is_deb = !deb822;
    while (std::getline(in, line)) {
      std::string t = util::trim(line);
      if (t.empty() || t[0] == '#') {
        if (deb822 && t.empty()) is_deb = false;  // a new stanza
        continue;
      }
      if (deb822) {
        if (t.starts_with("Types:")) is_deb = (" " + t.substr(6) + " ").find(" deb ") != std::string::npos;
        if (t.starts_with("URIs:") && is_deb) {
          std::istringstream uris(t.substr(5));
          std::string uri;
          if (uris >> uri) return uri;
        }
      } else if (t.starts_with("deb ")) {
        std::istringstream words(t.substr(4));
        std::string w;
        while (words >> w) {
          if (w.starts_with("[")) {  // options: [arch=amd64 signed-by=…]
            while (w.find(']') == std::string::npos && words >> w) {
            }
            continue;
          }
          return w;
        }
      }
    }
  }
  return "";
}

}  // namespace imgbake::rootfs
