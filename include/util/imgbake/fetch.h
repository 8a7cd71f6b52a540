// Download-and-verify for iso_url/iso_urls with Packer 1.6.6's iso_checksum forms, and a
// cache keyed by checksum so that a second build does not download the ISO again.
// docs/fetch.md describes the URL schemes, checksum forms and the cache layout.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "imgbake/cancel.h"

namespace imgbake {

struct FetchRequest {
  std::vector<std::string> urls;  // tried in order: file://PATH, http://, https://, or a plain path
                                  // (relative to the current directory)
  std::string checksum;           // "sha256:HEX", "sha1:HEX", "md5:HEX", "sha512:HEX", bare HEX (type from
                                  // its length), "file:URL-or-path" of a SUMS file, or "none"
  std::string cache_dir;          // where downloads are kept, created if missing
  std::string target_extension;   // e.g. "iso" (Packer's iso_target_extension); may be empty
};

struct FetchResult {
  std::string path;           // file:// and plain paths: the file itself (never copied); else the cache entry
  std::string checksum_type;  // "sha256", "sha1", "md5", "sha512" or "none"
  std::string checksum;       // lower-case hex that was verified; empty for none
  std::string url;            // the URL that was used
  bool from_cache = false;    // a verified cache entry was reused without downloading
};

// done/total in bytes; total 0 when unknown. Called at most ~10 times a second.
using FetchProgress = std::function<void(uint64_t done, uint64_t total)>;

// Returns nullopt when `checksum` is well-formed, else a message for the user (used at validate time).
std::optional<std::string> checksum_syntax_error(const std::string& checksum);

// Default cache dir: $IMGBAKE_CACHE_DIR, else $XDG_CACHE_HOME/imgbake, else ~/.cache/imgbake; + "/downloads".
std::string default_download_cache_dir();

// Tries each URL in order until one yields a verified file. Throws BuildError naming every URL
// and why it failed, and Cancelled when `cancel` fires (no partial download is left behind).
// `progress` may be empty.
FetchResult fetch(const FetchRequest& req, const FetchProgress& progress, const CancelToken& cancel);

}  // namespace imgbake
