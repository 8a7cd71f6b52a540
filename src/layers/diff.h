// A layer's plan (private to the layers module): the tar entries that turn the `before` tree
// into the `after` one, in the order they are written.
#pragma once

#include <string>
#include <vector>

#include "imgbake/layer.h"

namespace imgbake::layer::detail {

enum class ItemKind { Write, Whiteout, Opaque };
struct LayerItem {
  std::string tar_path;
  ItemKind kind = ItemKind::Write;
  const Entry* entry = nullptr;  // Write only
};

// The entries of the layer from `before` to `after`, sorted by tar path: added and changed paths,
// whiteouts for deleted ones, opaque markers for replaced directories (see write_diff).
std::vector<LayerItem> plan_layer(const Snapshot& before, const Snapshot& after);

}  // namespace imgbake::layer::detail
