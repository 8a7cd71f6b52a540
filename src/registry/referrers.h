// The referrers of an image manifest (private to the registry module): putting one, with the
// referrers tag schema fallback for registries without the referrers API. transfer.h's
// put_referrer and referrers_tag forward here, so that the records (remote_channels.cpp) push
// theirs without depending on transfer.h, whose push/pull/copy depend on the records.
#pragma once

#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "imgbake/oci_client.h"

namespace imgbake::registry::detail {

// The tag under which the referrers tag schema keeps the index of `digest`'s referrers.
std::string referrers_tag(const std::string& digest);

// The referrers tag schema index with `referrer` (a descriptor) added, from `existing` (the bytes
// at the tag; nullopt when there are none); nullopt when it lists the referrer already. Throws
// BuildError naming `where` and the cause when `existing` is not an image index: PUTting a new
// one would lose the referrers it lists.
std::optional<std::string> add_to_referrers_index(const std::optional<std::string>& existing,
                                                  const nlohmann::json& referrer, const std::string& where);

// PUTs a referrer manifest (its blobs must be there) and, when the registry has no referrers
// API, adds it to the referrers tag schema index of `subject`. Returns whether the tag was used.
bool put_referrer(Client& client, const std::string& repo, const std::string& subject,
                  const std::string& referrer_bytes, const std::string& referrer_digest);

}  // namespace imgbake::registry::detail
