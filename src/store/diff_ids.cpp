// Layers entering the store: a tar layer's diff_id (the digest of its uncompressed tar, which
// the image config lists and every unpacking checks) is checked once, when the layer enters,
// so that an image whose config lies about a layer is never committed, pulled or signed.
#include "catalog.h"

#include "imgbake/cancel.h"
#include "imgbake/layer.h"

namespace imgbake::store::detail {

bool is_tar_layer(const std::string& media_type) {
  return media_type.starts_with("application/vnd.oci.image.layer.") ||
         media_type.starts_with("application/vnd.docker.image.rootfs.");
}

std::vector<CheckedDiffId> check_diff_ids(sqlite3* db, const BlobStore& blobs, const std::vector<LayerClaim>& layers,
                                          const std::string& what) {
  std::vector<CheckedDiffId> checked;
  for (size_t i = 0; i < layers.size(); ++i) {
    const auto& [blob, claimed] = layers[i];
    if (!is_tar_layer(blob.media_type)) continue;
    // Known: checked when it entered before, or written by a build step that hashed it.
    std::string known;
    {
      Stmt s(db,
             "SELECT diff_id FROM layer_diff_ids WHERE digest = ?1 UNION ALL "
             "SELECT diff_id FROM layer_cache WHERE digest = ?1 AND empty = 0 LIMIT 1");
      s.bind(1, blob.digest);
      if (s.step()) known = s.text(0);
    }
    std::string actual = known;
    if (actual.empty()) {
      blobs.check_regular(blob.digest);
      actual = layer::diff_id_of(blobs.path(blob.digest), global_cancel());
    }
    if (actual != claimed)
      throw StoreError(what + ": layer " + std::to_string(i + 1) + " (" + blob.digest + ") unpacks to " + actual +
                       ", but the image config gives its diff_id as " + (claimed.empty() ? "nothing" : claimed) +
                       "; refusing an image whose config does not describe its layers (unpacking it would fail)");
    if (known.empty()) checked.push_back({blob.digest, actual});
  }
  return checked;
}

void record_diff_ids(sqlite3* db, const std::vector<CheckedDiffId>& checked) {
  for (const auto& c : checked) {
    Stmt s(db, "INSERT OR IGNORE INTO layer_diff_ids(digest, diff_id) VALUES(?, ?)");
    s.bind(1, c.digest).bind(2, c.diff_id);
    s.run();
  }
}

}  // namespace imgbake::store::detail
