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

// The user's imgbake configuration directory, outside every store:
// ${IMGBAKE_CONFIG_HOME:-${XDG_CONFIG_HOME:-~/.config}/imgbake}.
std::filesystem::path config_home();
// config_home()/signing.key
std::filesystem::path default_signing_key_path();

// The key to sign with: `path` if given, else the per-user default key, created on
// first use (`created` tells the caller to say so).
provenance::SigningKey load_signing_key(const std::string& path, bool& created);

// While alive, audit entries are signed with the key at `path` (a build's --signing-key, for its
// commit), instead of $IMGBAKE_SIGNING_KEY, else the default key; an empty path changes nothing.
class AuditSigningKey {
 public:
  explicit AuditSigningKey(const std::string& path);
  ~AuditSigningKey();
  AuditSigningKey(const AuditSigningKey&) = delete;
  AuditSigningKey& operator=(const AuditSigningKey&) = delete;

 private:
  std::string previous_;
};

// Trust anchors of a shared store, owned by root: every *.pub in it is trusted.
inline constexpr const char* kSystemTrustDir = "/etc/imgbake/trusted";

// The keys whose signatures are trusted, and where each came from. Trust lives outside the store
// (whoever can write the store must not be able to make a key trusted): the default key's public
// half, every config_home()/trusted/*.pub and every kSystemTrustDir/*.pub; or only `extra` (a
// --key PUB) when given. A file or directory that another user could write (mode g+w or o+w, or
// owned by someone other than root and the current user) is not trusted, and says so in
// `warnings`, as is a trusted/ directory inside the store (the place keys lived before 0.2).
struct TrustAnchors {
  std::vector<provenance::VerifyingKey> keys;
  std::vector<std::string> sources;  // sources[i]: the file keys[i] was read from
  std::vector<std::string> warnings;
  // "sha256:… (FILE)" for each key, as store check lists them.
  std::vector<std::string> describe() const;
};
TrustAnchors trust_anchors(const store::Store& st, const std::string& extra = "");
// trust_anchors(st, extra).keys
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
