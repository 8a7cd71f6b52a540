// OCI layers: the plan of a layer from two snapshots (what changed, whiteouts, opaque directories).
#include "diff.h"

#include <sys/stat.h>

#include <algorithm>
#include <string>
#include <unordered_set>
#include <vector>

#include "layer_tar.h"

namespace imgbake::layer::detail {
namespace {

bool present(const Snapshot& s, const std::string& path, const Entry** found) {
  auto it = s.entries.find(path);
  if (it == s.entries.end() || S_ISSOCK(it->second.mode)) return false;
  if (found != nullptr) *found = &it->second;
  return true;
}

// Whether `path` or one of its ancestors is in `dirs`.
bool within_any(const std::unordered_set<std::string>& dirs, std::string path) {
  if (dirs.empty()) return false;
  while (!path.empty()) {
    if (dirs.count(path) != 0) return true;
    path = parent_of(path);
  }
  return false;
}

}  // namespace

std::vector<LayerItem> plan_layer(const Snapshot& before, const Snapshot& after) {
  std::vector<LayerItem> items;
  std::unordered_set<std::string> opaque_dirs;
  for (const auto& [path, now] : after.entries) {
    if (S_ISSOCK(now.mode)) continue;
    const Entry* old = nullptr;
    bool existed = present(before, path, &old);
    bool in_opaque = within_any(opaque_dirs, parent_of(path));
    bool write = in_opaque || !existed || !(*old == now);
    // A directory that is not the one the lower layers hold: their content must not show through.
    if (S_ISDIR(now.mode) && existed && !in_opaque &&
        (!S_ISDIR(old->mode) || old->ino != now.ino || old->dev != now.dev)) {
      opaque_dirs.insert(path);
      items.push_back({path + "/" + std::string(kOpaqueMarker), ItemKind::Opaque, nullptr});
    }
    if (write) items.push_back({path, ItemKind::Write, &now});
  }
  for (const auto& [path, old] : before.entries) {
    if (S_ISSOCK(old.mode) || present(after, path, nullptr)) continue;
    std::string parent = parent_of(path);
    if (!parent.empty()) {
      // Only the topmost deleted path gets a whiteout; below a replaced directory, the opaque
      // marker already hides everything.
      const Entry* parent_now = nullptr;
      if (!present(after, parent, &parent_now) || !S_ISDIR(parent_now->mode) || within_any(opaque_dirs, parent)) {
        continue;
      }
    }
    items.push_back(
        {child_of(parent, std::string(kWhiteoutPrefix) + std::string(name_of(path))), ItemKind::Whiteout, nullptr});
  }
  std::sort(items.begin(), items.end(), [](const LayerItem& a, const LayerItem& b) { return a.tar_path < b.tar_path; });
  return items;
}

}  // namespace imgbake::layer::detail
