// The blobs an image needs: blobs_of lists what a push uploads.
#include <string>
#include <vector>

#include "manifest.h"

namespace imgbake::store {

using detail::parse_manifest;
using detail::ParsedManifest;

std::vector<Descriptor> Store::blobs_of(const ImageRecord& img) const {
  const std::string what = img.ref() + ": the image manifest";
  std::string bytes;
  try {
    bytes = blobs_.read(img.manifest_digest);
  } catch (const std::exception& e) {
    throw StoreError(what + " is unreadable: " + e.what());
  }
  ParsedManifest m = parse_manifest(bytes, what);
  std::vector<Descriptor> out = {m.config};
  out.insert(out.end(), m.layers.begin(), m.layers.end());
  if (!img.referrer_digest.empty()) {
    std::string ref_bytes;
    try {
      ref_bytes = blobs_.read(img.referrer_digest);
    } catch (const std::exception& e) {
      throw StoreError(img.ref() + ": the provenance referrer is unreadable: " + e.what());
    }
    ParsedManifest r = parse_manifest(ref_bytes, img.ref() + ": the provenance referrer");
    out.push_back(r.config);
    out.insert(out.end(), r.layers.begin(), r.layers.end());
    out.push_back(Descriptor{oci::kManifestMediaType, img.referrer_digest, img.referrer_size, {}});
  }
  return out;
}

}  // namespace imgbake::store
