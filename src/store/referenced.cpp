// The blobs an image needs: referenced_blobs, the one walk over an image's manifest and its
// referrers that gc, store check, revoke --descendants and blobs_of (what a push uploads) share.
#include <set>
#include <string>
#include <vector>

#include "manifest.h"

namespace imgbake::store {

using detail::parse_manifest;
using detail::ParsedManifest;

std::vector<std::string> ReferencedBlobs::digests() const {
  std::vector<std::string> out;
  std::set<std::string> seen;
  auto add = [&](const std::string& d) {
    if (!d.empty() && seen.insert(d).second) out.push_back(d);
  };
  for (const auto& m : manifests) {
    add(m.manifest.digest);
    add(m.config.digest);
    for (const auto& l : m.layers) add(l.digest);
  }
  add(envelope_digest);
  return out;
}

std::vector<std::string> ReferencedBlobs::problems() const {
  std::vector<std::string> out;
  for (const auto& m : manifests)
    if (!m.problem.empty()) out.push_back(m.problem);
  return out;
}

ReferencedBlobs Store::referenced_blobs(const ImageRecord& img) const {
  ReferencedBlobs out;
  out.envelope_digest = img.provenance_digest;
  auto walk = [&](const std::string& role, const std::string& digest, uint64_t size) {
    ManifestBlobs m;
    m.role = role;
    m.manifest = Descriptor{oci::kManifestMediaType, digest, size, {}};
    const std::string what = img.ref() + ": " + role + " " + digest;
    std::string bytes;
    try {
      bytes = blobs_.read(digest);
    } catch (const std::exception& e) {
      m.problem = what + " is unreadable: " + e.what();
    }
    if (m.problem.empty()) {
      try {
        ParsedManifest p = parse_manifest(bytes, what);
        m.config = p.config;
        m.layers = p.layers;
      } catch (const StoreError& e) {
        m.problem = e.what();
      }
    }
    out.manifests.push_back(std::move(m));
  };
  walk("the image manifest", img.manifest_digest, img.manifest_size);
  if (!img.referrer_digest.empty()) walk("the provenance referrer", img.referrer_digest, img.referrer_size);
  for (const TestRun& t : test_runs(img))
    walk("the test result referrer (suite " + t.suite + ", " + t.time + ")", t.referrer_digest, t.referrer_size);
  return out;
}

std::vector<Descriptor> Store::blobs_of(const ImageRecord& img) const {
  ReferencedBlobs walk = referenced_blobs(img);
  if (auto problems = walk.problems(); !problems.empty()) throw StoreError(problems.front());
  std::vector<Descriptor> out;
  for (size_t i = 0; i < walk.manifests.size(); ++i) {
    const ManifestBlobs& m = walk.manifests[i];
    out.push_back(m.config);
    out.insert(out.end(), m.layers.begin(), m.layers.end());
    if (i > 0) out.push_back(m.manifest);  // a referrer: PUT after the image manifest it names
  }
  return out;
}

}  // namespace imgbake::store
