#include "store_verbs.h"

#include "imgbake/util.h"

namespace imgbake::cli {

std::unique_ptr<store::Store> open_store() { return std::make_unique<store::Store>(store::Store::default_home()); }

nlohmann::json image_json(const store::ImageRecord& r) {
  return {{"ref", r.ref()},
          {"name", r.name},
          {"version", r.version},
          {"digest", r.manifest_digest},
          {"created", r.created},
          {"builder_type", r.builder_type},
          {"template_digest", r.template_digest},
          {"git_commit", r.git_commit},
          {"parent", r.parent},
          {"provenance", r.provenance_digest},
          {"revoked", r.revoked},
          {"revoked_reason", r.revoked_reason},
          {"labels", r.labels},
          {"channels", r.channels}};
}

std::string image_line(const store::ImageRecord& r) {
  std::string s = r.ref() + "  " + r.manifest_digest.substr(0, 19) + "  " + r.created;
  if (!r.channels.empty()) s += "  [" + util::join(r.channels, ", ") + "]";
  if (r.revoked) s += "  REVOKED (" + r.revoked_reason + ")";
  return s;
}

}  // namespace imgbake::cli
