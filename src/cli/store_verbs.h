// Helpers shared by the store verbs (images, show, label, promote, ...).
#pragma once

#include <memory>
#include <string>

#include "cli.h"
#include "imgbake/store.h"
#include "imgbake/util.h"

namespace imgbake::cli {

std::unique_ptr<store::Store> open_store();
nlohmann::json image_json(const store::ImageRecord& r);
// "2026-11-22T03:04:05Z" stays; the rest of a line printed for people.
std::string image_line(const store::ImageRecord& r);

}  // namespace imgbake::cli
