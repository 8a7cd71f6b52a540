// Glue between a finished build and the store: signing keys, git facts, provenance,
// and verification of what the store holds.
#pragma once

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "imgbake/provenance.h"
#include "imgbake/store.h"

namespace imgbake {

struct GitFacts {
  std::string commit;
  std::string branch;
  bool dirty = false;
  std::string remote;
};
// Facts about the git repository holding `dir`; empty when it is not in one (or git is missing).
GitFacts detect_git(const std::filesystem::path& dir);

// ${IMGBAKE_CONFIG_HOME:-${XDG_CONFIG_HOME:-~/.config}/imgbake}/signing.key
std::filesystem::path default_signing_key_path();

// The key to sign with: `path` if given, else the per-user default key, created on
// first use (`created` tells the caller to say so).
provenance::SigningKey load_signing_key(const std::string& path, bool& created);

// Keys whose signatures the store trusts: the default key's public half, every
// $IMGBAKE_HOME/trusted/*.pub, and `extra` (a --key PUB).
std::vector<provenance::VerifyingKey> trusted_keys(const store::Store& st, const std::string& extra = "");

struct Verification {
  bool ok = false;
  std::vector<std::string> problems;
  std::string keyid;
  nlohmann::json statement;  // when the envelope decodes
};
// Checks the image's provenance: the envelope's signature with one of `keys`, and that
// every subject digest matches the stored manifest and blobs.
Verification verify_image(const store::Store& st, const store::ImageRecord& img,
                          const std::vector<provenance::VerifyingKey>& keys);

}  // namespace imgbake
