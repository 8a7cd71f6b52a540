// Provenance: in-toto Statement v1 with a SLSA provenance v1 predicate, wrapped in a
// DSSE envelope signed with Ed25519 through OpenSSL.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

struct evp_pkey_st;  // OpenSSL's EVP_PKEY: this header needs no OpenSSL headers

namespace imgbake::provenance {

// The one owner of an OpenSSL EVP_PKEY, for this module and its tests: frees it with
// EVP_PKEY_free.
struct PkeyDeleter {
  void operator()(evp_pkey_st* pkey) const noexcept;
};
using PkeyPtr = std::unique_ptr<evp_pkey_st, PkeyDeleter>;

// --- DSSE (https://github.com/secure-systems-lab/dsse/blob/master/protocol.md) ---

inline constexpr const char* kInTotoPayloadType = "application/vnd.in-toto+json";

// PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body, LEN as ASCII decimal.
std::string pae(std::string_view payload_type, std::string_view payload);

std::string base64_encode(std::string_view data);
// Accepts standard and URL-safe alphabets, with or without padding; throws on invalid input.
std::string base64_decode(std::string_view text);

// --- Keys (Ed25519) ---

class SigningKey {
 public:
  // Generates a new Ed25519 key pair.
  static SigningKey generate();
  // Loads a PEM private key (PKCS#8). Throws std::runtime_error naming the path.
  static SigningKey load_private(const std::string& path);
  // Writes the private key (mode 0600) and the public key (PATH.pub, 0644) as PEM, atomically.
  void save(const std::string& private_path) const;

  std::string sign(std::string_view message) const;  // raw 64-byte signature
  std::string public_pem() const;
  std::string keyid() const;  // "sha256:" + hex sha256 of the DER SubjectPublicKeyInfo

  SigningKey(SigningKey&&) noexcept = default;
  SigningKey& operator=(SigningKey&&) noexcept = default;
  ~SigningKey() = default;

 private:
  SigningKey() = default;
  PkeyPtr pkey_;  // null once moved from
};

class VerifyingKey {
 public:
  static VerifyingKey from_pem(const std::string& pem);  // throws on invalid PEM / non-Ed25519
  static VerifyingKey load(const std::string& path);
  bool verify(std::string_view message, std::string_view signature) const;
  std::string keyid() const;
  std::string pem() const;

  VerifyingKey(VerifyingKey&&) noexcept = default;
  VerifyingKey& operator=(VerifyingKey&&) noexcept = default;
  ~VerifyingKey() = default;

 private:
  VerifyingKey() = default;
  PkeyPtr pkey_;  // null once moved from
};

// Signs `payload` as a DSSE envelope: {"payloadType", "payload" (base64), "signatures":[{"keyid","sig"}]}.
nlohmann::json sign_envelope(const SigningKey& key, std::string_view payload_type, std::string_view payload);

// Why an envelope did not verify (EnvelopeCheck::failure), for code; `error` says it for people.
enum class EnvelopeFailure {
  kNone,            // it verified
  kMalformed,       // not a DSSE envelope: no payloadType or payload, or the payload is not base64
  kNoSignatures,    // it holds no signature
  kNotSignedByKey,  // every signature names another key (keyid): nothing was tried with this one
  kBadSignature,    // a signature for this key (or one without a keyid) was tried and does not verify
  kNoTrustedKey,    // verify_envelope with no key at all
};

struct EnvelopeCheck {
  bool ok = false;
  EnvelopeFailure failure = EnvelopeFailure::kNone;
  std::string error;    // why not, for people
  std::string keyid;    // of the signature that verified
  std::string payload;  // decoded payload (set when the envelope parses)
  std::string payload_type;
};
// Verifies that at least one signature of the envelope is valid for `key` (over PAE).
EnvelopeCheck verify_envelope(const nlohmann::json& envelope, const VerifyingKey& key);
// Verifies with each of `keys` in turn: the check of the first key that verifies; else the most
// telling failure, where a failure that is about this envelope (a signature by a trusted key that
// does not verify, a malformed envelope) beats kNotSignedByKey ("signed by some other key"), which
// every other trusted key reports. No keys: kNoTrustedKey, "no trusted key to verify with".
EnvelopeCheck verify_envelope(const nlohmann::json& envelope, const std::vector<VerifyingKey>& keys);

// --- in-toto Statement / SLSA provenance v1 ---

struct Subject {
  std::string name;
  std::string sha256;  // hex, no prefix
};

struct StepRecord {
  std::string name;
  std::string key;  // "sha256:…" step key
  double duration_s = 0;
};

struct BuildFacts {
  std::vector<Subject> subjects;
  std::string builder_type;  // e.g. "file", "qemu"
  std::string build_name;
  std::string imgbake_version;
  std::string template_path;
  std::string template_sha256;                   // hex
  std::map<std::string, std::string> variables;  // sensitive ones already replaced by "<sensitive>"
  std::vector<std::string> only;
  std::vector<std::string> except;
  std::optional<std::string> git_commit;  // of the template's repository
  std::optional<std::string> git_branch;
  bool git_dirty = false;
  std::optional<std::string> git_remote;
  std::optional<std::string> parent;  // "sha256:…" digest of the base image/ISO, or a store ref
  std::vector<Subject> inputs;        // uploaded files, scripts (name + sha256)
  // What a builder resolved that has no digest here (amazon-ebs: the source AMI, by ARN), as SLSA
  // ResourceDescriptors; and the builder's settings that shaped the image (its instance type).
  std::vector<nlohmann::json> builder_dependencies;
  nlohmann::json builder_parameters = nlohmann::json::object();
  std::string invocation_id;  // the run uuid
  std::chrono::system_clock::time_point started;
  std::chrono::system_clock::time_point finished;
  std::vector<StepRecord> steps;
};

// The in-toto Statement v1 (predicateType https://slsa.dev/provenance/v1).
nlohmann::json make_statement(const BuildFacts& facts);

}  // namespace imgbake::provenance
