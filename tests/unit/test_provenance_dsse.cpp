// DSSE (PAE, base64, envelopes) and the Ed25519 keys that sign them.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <memory>
#include <regex>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "imgbake/provenance.h"
#include "imgbake/util.h"

namespace {

namespace fs = std::filesystem;
using imgbake::provenance::base64_decode;
using imgbake::provenance::base64_encode;
using imgbake::provenance::EnvelopeCheck;
using imgbake::provenance::EnvelopeFailure;
using imgbake::provenance::kInTotoPayloadType;
using imgbake::provenance::pae;
using imgbake::provenance::sign_envelope;
using imgbake::provenance::SigningKey;
using imgbake::provenance::verify_envelope;
using imgbake::provenance::VerifyingKey;
using nlohmann::json;
using ::testing::HasSubstr;

std::string unhex(std::string_view hex) {
  std::string out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2)
    out += static_cast<char>(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16));
  return out;
}

std::string hex(std::string_view bytes) {
  static const char* kDigits = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out += kDigits[c >> 4];
    out += kDigits[c & 15];
  }
  return out;
}

std::string pem_block(const std::string& label, const std::string& der) {
  return "-----BEGIN " + label + "-----\n" + base64_encode(der) + "\n-----END " + label + "-----\n";
}

// RFC 8032 section 7.1, TEST 1.
constexpr const char* kRfcSecret = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
constexpr const char* kRfcPublic = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
constexpr const char* kRfcSignature =
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe2465"
    "5141438e7a100b";

// The DER is built by hand (RFC 8410 layouts) so that the test does not trust the
// encoder under test: PKCS#8 OneAsymmetricKey and SubjectPublicKeyInfo for Ed25519.
std::string rfc_private_pem() {
  return pem_block("PRIVATE KEY", unhex("302e020100300506032b657004220420") + unhex(kRfcSecret));
}
std::string rfc_public_der() { return unhex("302a300506032b6570032100") + unhex(kRfcPublic); }

class TempDir : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "imgbake-ut-prov-XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::string Write(const std::string& name, const std::string& content) {
    auto path = (dir_ / name).string();
    imgbake::util::write_file_atomic(path, content, 0600);
    return path;
  }
  SigningKey RfcKey() { return SigningKey::load_private(Write("rfc8032.pem", rfc_private_pem())); }
  fs::path dir_;
};
// Suite names that the provenance test filter (Dsse*:SigningKey*) picks up.
class SigningKeyFiles : public TempDir {};
class DsseEnvelopeFiles : public TempDir {};

// ---------------------------------------------------------------- PAE

TEST(DssePae, SpecTestVector) {
  EXPECT_EQ(pae("http://example.com/HelloWorld", "hello world"),
            "DSSEv1 29 http://example.com/HelloWorld 11 hello world");
}

TEST(DssePae, EmptyTypeAndBody) { EXPECT_EQ(pae("", ""), "DSSEv1 0  0 "); }

TEST(DssePae, LengthsCountBytesNotCharacters) {
  // "é" is two bytes in UTF-8; a NUL is a byte like any other.
  EXPECT_EQ(pae("t\xc3\xa9", std::string("a\0b", 3)), std::string("DSSEv1 3 t\xc3\xa9 3 a\0b", 18));
  EXPECT_EQ(pae(std::string(10, 'x'), std::string(100, 'y')),
            "DSSEv1 10 " + std::string(10, 'x') + " 100 " + std::string(100, 'y'));
}

// ---------------------------------------------------------------- base64

TEST(DsseBase64, Rfc4648Vectors) {
  const std::vector<std::pair<std::string, std::string>> vectors = {
      {"", ""},
      {"f", "Zg=="},
      {"fo", "Zm8="},
      {"foo", "Zm9v"},
      {"foob", "Zm9vYg=="},
      {"fooba", "Zm9vYmE="},
      {"foobar", "Zm9vYmFy"},
  };
  for (const auto& [plain, encoded] : vectors) {
    EXPECT_EQ(base64_encode(plain), encoded);
    EXPECT_EQ(base64_decode(encoded), plain) << encoded;
  }
}

TEST(DsseBase64, DecodeAcceptsUnpaddedAndUrlSafe) {
  EXPECT_EQ(base64_decode("Zg"), "f");
  EXPECT_EQ(base64_decode("Zm8"), "fo");
  EXPECT_EQ(base64_decode("Zm9vYmE"), "fooba");
  const std::string bytes("\xfb\xff\xbf", 3);
  EXPECT_EQ(base64_encode(bytes), "+/+/");
  EXPECT_EQ(base64_decode("+/+/"), bytes);
  EXPECT_EQ(base64_decode("-_-_"), bytes);
  EXPECT_EQ(base64_decode("-_8"), std::string("\xfb\xff", 2));
  EXPECT_EQ(base64_decode("-_8="), std::string("\xfb\xff", 2));
}

TEST(DsseBase64, RoundTripsEveryByte) {
  std::string all;
  for (int i = 0; i < 256; ++i) all += static_cast<char>(i);
  for (size_t n = 0; n <= all.size(); n += 37) {
    std::string part = all.substr(0, n);
    EXPECT_EQ(base64_decode(base64_encode(part)), part) << n;
  }
  EXPECT_EQ(base64_decode(base64_encode(all)), all);
}

TEST(DsseBase64, DecodeRejectsInvalidInput) {
  for (const char* bad : {"Z", "Zm9vY", "Zg=", "Zg===", "Zm8==", "=", "==", "Zm9v!", "Zm 9v", "Zm9v\n",
                          "Z=g=", "Zm9v====", "Zh==", "Zm9=", "\xc3\xa9\xc3\xa9"}) {
    EXPECT_THROW(base64_decode(bad), std::invalid_argument) << bad;
  }
}

// ---------------------------------------------------------------- keys

TEST_F(SigningKeyFiles, ReproducesRfc8032Test1) {
  SigningKey key = RfcKey();
  EXPECT_EQ(hex(key.sign("")), kRfcSignature);
  EXPECT_EQ(key.public_pem(), pem_block("PUBLIC KEY", rfc_public_der()));
  EXPECT_EQ(key.keyid(), "sha256:" + imgbake::util::sha256_hex(rfc_public_der()));
  EXPECT_EQ(key.keyid(), "sha256:06e3fd8fda29bb60ab59557de61edb0aecdb231134be30e75b455f8e1b792fa9");

  VerifyingKey pub = VerifyingKey::from_pem(pem_block("PUBLIC KEY", rfc_public_der()));
  EXPECT_EQ(pub.keyid(), key.keyid());
  EXPECT_TRUE(pub.verify("", unhex(kRfcSignature)));
  EXPECT_FALSE(pub.verify("x", unhex(kRfcSignature)));
}

TEST(SigningKey, GenerateSignVerify) {
  SigningKey key = SigningKey::generate();
  VerifyingKey pub = VerifyingKey::from_pem(key.public_pem());
  EXPECT_EQ(pub.keyid(), key.keyid());
  EXPECT_EQ(pub.pem(), key.public_pem());
  EXPECT_TRUE(std::regex_match(key.keyid(), std::regex("sha256:[0-9a-f]{64}"))) << key.keyid();

  std::string sig = key.sign("message");
  ASSERT_EQ(sig.size(), 64u);
  EXPECT_EQ(key.sign("message"), sig);  // Ed25519 is deterministic
  EXPECT_TRUE(pub.verify("message", sig));
  EXPECT_FALSE(pub.verify("messagE", sig));
  std::string flipped = sig;
  flipped[10] = static_cast<char>(flipped[10] ^ 1);
  EXPECT_FALSE(pub.verify("message", flipped));
  EXPECT_FALSE(pub.verify("message", sig.substr(0, 63)));
  EXPECT_FALSE(pub.verify("message", sig + "x"));
  EXPECT_FALSE(pub.verify("message", ""));

  SigningKey other = SigningKey::generate();
  EXPECT_NE(other.keyid(), key.keyid());
  EXPECT_FALSE(VerifyingKey::from_pem(other.public_pem()).verify("message", sig));
}

TEST_F(SigningKeyFiles, SaveAndLoad) {
  SigningKey key = SigningKey::generate();
  const std::string path = (dir_ / "signing.key").string();
  key.save(path);

  EXPECT_EQ(fs::status(path).permissions(), fs::perms::owner_read | fs::perms::owner_write);
  EXPECT_EQ(fs::status(path + ".pub").permissions(),
            fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read | fs::perms::others_read);
  std::string private_pem = imgbake::util::read_file(path);
  EXPECT_TRUE(private_pem.starts_with("-----BEGIN PRIVATE KEY-----\n")) << "unencrypted PKCS#8";
  EXPECT_EQ(imgbake::util::read_file(path + ".pub"), key.public_pem());
  // Nothing but the two keys: the temp files of the atomic writes are gone.
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir_)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  EXPECT_THAT(names, ::testing::ElementsAre("signing.key", "signing.key.pub"));

  SigningKey loaded = SigningKey::load_private(path);
  EXPECT_EQ(loaded.keyid(), key.keyid());
  EXPECT_EQ(loaded.sign("abc"), key.sign("abc"));
  EXPECT_EQ(VerifyingKey::load(path + ".pub").keyid(), key.keyid());

  // Saving again replaces both files.
  SigningKey second = SigningKey::generate();
  second.save(path);
  EXPECT_EQ(SigningKey::load_private(path).keyid(), second.keyid());
  EXPECT_EQ(VerifyingKey::load(path + ".pub").keyid(), second.keyid());
}

TEST_F(SigningKeyFiles, ErrorsNameThePath) {
  const std::string missing = (dir_ / "missing.key").string();
  try {
    SigningKey::load_private(missing);
    ADD_FAILURE() << "no exception";
  } catch (const std::runtime_error& e) {
    EXPECT_THAT(e.what(), HasSubstr(missing));
  }
  try {
    VerifyingKey::load(missing);
    ADD_FAILURE() << "no exception";
  } catch (const std::runtime_error& e) {
    EXPECT_THAT(e.what(), HasSubstr(missing));
  }

  const std::string garbage = Write("garbage.key", "not a key\n");
  try {
    SigningKey::load_private(garbage);
    ADD_FAILURE() << "no exception";
  } catch (const std::runtime_error& e) {
    EXPECT_THAT(e.what(), HasSubstr(garbage));
  }
  try {
    VerifyingKey::load(garbage);
    ADD_FAILURE() << "no exception";
  } catch (const std::runtime_error& e) {
    EXPECT_THAT(e.what(), HasSubstr(garbage));
  }

  const std::string unwritable = (dir_ / "no-such-dir" / "signing.key").string();
  try {
    SigningKey::generate().save(unwritable);
    ADD_FAILURE() << "no exception";
  } catch (const std::runtime_error& e) {
    EXPECT_THAT(e.what(), HasSubstr(unwritable));
  }
}

TEST_F(SigningKeyFiles, RejectsOtherKeyTypes) {
  imgbake::provenance::PkeyPtr ec(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  ASSERT_TRUE(ec);
  std::unique_ptr<BIO, decltype(&BIO_free)> priv(BIO_new(BIO_s_mem()), BIO_free);
  std::unique_ptr<BIO, decltype(&BIO_free)> pub(BIO_new(BIO_s_mem()), BIO_free);
  ASSERT_EQ(PEM_write_bio_PrivateKey(priv.get(), ec.get(), nullptr, nullptr, 0, nullptr, nullptr), 1);
  ASSERT_EQ(PEM_write_bio_PUBKEY(pub.get(), ec.get()), 1);
  char* data = nullptr;
  long n = BIO_get_mem_data(priv.get(), &data);
  const std::string ec_private(data, static_cast<size_t>(n));
  n = BIO_get_mem_data(pub.get(), &data);
  const std::string ec_public(data, static_cast<size_t>(n));

  const std::string path = Write("ec.key", ec_private);
  try {
    SigningKey::load_private(path);
    ADD_FAILURE() << "no exception";
  } catch (const std::runtime_error& e) {
    EXPECT_THAT(e.what(), HasSubstr(path));
    EXPECT_THAT(e.what(), HasSubstr("Ed25519"));
  }
  EXPECT_THROW(VerifyingKey::from_pem(ec_public), std::runtime_error);
  EXPECT_THROW(VerifyingKey::from_pem(rfc_private_pem()), std::runtime_error);  // a private key is not a PUBKEY
  EXPECT_THROW(VerifyingKey::from_pem(""), std::runtime_error);
  EXPECT_THROW(VerifyingKey::from_pem("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"),
               std::runtime_error);
}

TEST_F(SigningKeyFiles, EncryptedKeyFailsWithoutPrompting) {
  // The default OpenSSL callback would ask on the terminal; a build must fail instead.
  imgbake::provenance::PkeyPtr pkey(EVP_PKEY_new_raw_private_key(
      EVP_PKEY_ED25519, nullptr, reinterpret_cast<const unsigned char*>(unhex(kRfcSecret).data()), 32));
  ASSERT_TRUE(pkey);
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), BIO_free);
  char pass[] = "secret";
  ASSERT_EQ(PEM_write_bio_PKCS8PrivateKey(bio.get(), pkey.get(), EVP_aes_256_cbc(), pass, 6, nullptr, nullptr), 1);
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  const std::string path = Write("encrypted.key", std::string(data, static_cast<size_t>(n)));
  ASSERT_THAT(imgbake::util::read_file(path), HasSubstr("ENCRYPTED"));
  try {
    SigningKey::load_private(path);
    ADD_FAILURE() << "no exception";
  } catch (const std::runtime_error& e) {
    EXPECT_THAT(e.what(), HasSubstr(path));
  }
}

TEST(SigningKey, MoveSemantics) {
  SigningKey a = SigningKey::generate();
  const std::string id = a.keyid();
  SigningKey b = std::move(a);
  EXPECT_EQ(b.keyid(), id);
  EXPECT_THROW(a.sign("x"), std::logic_error);  // NOLINT(bugprone-use-after-move): deliberate
  SigningKey c = SigningKey::generate();
  c = std::move(b);  // frees c's own key (the leak checker would notice otherwise)
  EXPECT_EQ(c.keyid(), id);
  a = SigningKey::generate();  // a moved-from key can be assigned again
  EXPECT_NE(a.keyid(), id);
  auto& self = c;
  c = std::move(self);
  EXPECT_EQ(c.keyid(), id);

  VerifyingKey v = VerifyingKey::from_pem(c.public_pem());
  VerifyingKey w = std::move(v);
  EXPECT_EQ(w.keyid(), id);
  EXPECT_THROW(v.pem(), std::logic_error);  // NOLINT(bugprone-use-after-move): deliberate
  v = VerifyingKey::from_pem(a.public_pem());
  w = std::move(v);
  EXPECT_EQ(w.keyid(), a.keyid());
}

// ---------------------------------------------------------------- envelopes

TEST_F(DsseEnvelopeFiles, GoldenVector) {
  // Expected values come from an independent implementation (Python `cryptography`).
  SigningKey key = RfcKey();
  json env = sign_envelope(key, kInTotoPayloadType, R"({"hello":"world"})");
  EXPECT_EQ(env, json::parse(R"({
    "payloadType": "application/vnd.in-toto+json",
    "payload": "eyJoZWxsbyI6IndvcmxkIn0=",
    "signatures": [{
      "keyid": "sha256:06e3fd8fda29bb60ab59557de61edb0aecdb231134be30e75b455f8e1b792fa9",
      "sig": "8Z+Ul4Od6melJRaAKdrZYj8OzivgSSf58nKSDtTcWMbnhOQqt8+DsTXKG1cCGOc7DQgIpg0/gZIp5vavhevKDA=="
    }]
  })"));
}

TEST(DsseEnvelope, SignsPaeOverRawPayload) {
  SigningKey key = SigningKey::generate();
  VerifyingKey pub = VerifyingKey::from_pem(key.public_pem());
  const std::string payload = std::string("{\"a\":1}\n\0binary", 15);
  json env = sign_envelope(key, "application/x-test", payload);
  EXPECT_EQ(env["payloadType"], "application/x-test");
  EXPECT_EQ(base64_decode(env["payload"].get<std::string>()), payload);
  ASSERT_EQ(env["signatures"].size(), 1u);
  EXPECT_EQ(env["signatures"][0]["keyid"], key.keyid());
  std::string sig = base64_decode(env["signatures"][0]["sig"].get<std::string>());
  EXPECT_TRUE(pub.verify(pae("application/x-test", payload), sig));
  EXPECT_FALSE(pub.verify(pae("application/x-test", base64_encode(payload)), sig));
  EXPECT_FALSE(pub.verify(payload, sig));
}

TEST(DsseEnvelope, VerifyRoundTrip) {
  SigningKey key = SigningKey::generate();
  VerifyingKey pub = VerifyingKey::from_pem(key.public_pem());
  json env = sign_envelope(key, kInTotoPayloadType, "hello");
  // Through text, as it will be stored.
  EnvelopeCheck check = verify_envelope(json::parse(env.dump()), pub);
  EXPECT_TRUE(check.ok) << check.error;
  EXPECT_EQ(check.error, "");
  EXPECT_EQ(check.keyid, key.keyid());
  EXPECT_EQ(check.payload, "hello");
  EXPECT_EQ(check.payload_type, kInTotoPayloadType);
}

TEST(DsseEnvelope, VerifyRejectsTampering) {
  SigningKey key = SigningKey::generate();
  VerifyingKey pub = VerifyingKey::from_pem(key.public_pem());
  json env = sign_envelope(key, kInTotoPayloadType, "hello");

  json payload = env;
  payload["payload"] = base64_encode("hellO");
  EnvelopeCheck check = verify_envelope(payload, pub);
  EXPECT_FALSE(check.ok);
  EXPECT_EQ(check.error, "signature does not verify");
  EXPECT_EQ(check.payload, "hellO");  // parsed, but not to be trusted

  json type = env;
  type["payloadType"] = "text/plain";
  check = verify_envelope(type, pub);
  EXPECT_FALSE(check.ok);
  EXPECT_EQ(check.error, "signature does not verify");

  json sig = env;
  sig["signatures"][0]["sig"] = base64_encode(key.sign("hello"));  // not over PAE
  EXPECT_EQ(verify_envelope(sig, pub).error, "signature does not verify");

  json bad_sig = env;
  bad_sig["signatures"][0]["sig"] = "%%%";
  EXPECT_EQ(verify_envelope(bad_sig, pub).error, "signature does not verify");
}

TEST(DsseEnvelope, VerifyErrorsForPeople) {
  SigningKey key = SigningKey::generate();
  VerifyingKey pub = VerifyingKey::from_pem(key.public_pem());
  json env = sign_envelope(key, kInTotoPayloadType, "hello");

  json bad_payload = env;
  bad_payload["payload"] = "not base64!";
  EnvelopeCheck check = verify_envelope(bad_payload, pub);
  EXPECT_FALSE(check.ok);
  EXPECT_EQ(check.error, "payload is not valid base64");

  json none = env;
  none["signatures"] = json::array();
  EXPECT_EQ(verify_envelope(none, pub).error, "no signatures");
  none.erase("signatures");
  check = verify_envelope(none, pub);
  EXPECT_EQ(check.error, "no signatures");
  EXPECT_EQ(check.payload, "hello");

  json no_type = env;
  no_type.erase("payloadType");
  check = verify_envelope(no_type, pub);
  EXPECT_FALSE(check.ok);
  EXPECT_THAT(check.error, HasSubstr("payloadType"));

  json no_payload = env;
  no_payload.erase("payload");
  EXPECT_THAT(verify_envelope(no_payload, pub).error, HasSubstr("payload"));

  EXPECT_FALSE(verify_envelope(json::array(), pub).ok);
  EXPECT_FALSE(verify_envelope(json("text"), pub).ok);
}

TEST(DsseEnvelope, VerifyWithAnotherKeySaysWhichKeySigned) {
  SigningKey key = SigningKey::generate();
  SigningKey other = SigningKey::generate();
  json env = sign_envelope(key, kInTotoPayloadType, "hello");
  EnvelopeCheck check = verify_envelope(env, VerifyingKey::from_pem(other.public_pem()));
  EXPECT_FALSE(check.ok);
  EXPECT_THAT(check.error, HasSubstr(other.keyid()));
  EXPECT_THAT(check.error, HasSubstr(key.keyid()));

  // Without the keyid hint the signature is tried, and fails.
  env["signatures"][0].erase("keyid");
  check = verify_envelope(env, VerifyingKey::from_pem(other.public_pem()));
  EXPECT_EQ(check.error, "signature does not verify");
}

TEST(DsseEnvelope, VerifyPicksTheMatchingSignature) {
  SigningKey key = SigningKey::generate();
  SigningKey other = SigningKey::generate();
  VerifyingKey pub = VerifyingKey::from_pem(key.public_pem());
  json env = sign_envelope(other, kInTotoPayloadType, "hello");
  json mine = sign_envelope(key, kInTotoPayloadType, "hello")["signatures"][0];
  // Unknown fields and URL-safe, unpadded base64 are accepted (envelope.md).
  std::string sig = mine["sig"].get<std::string>();
  std::replace(sig.begin(), sig.end(), '+', '-');
  std::replace(sig.begin(), sig.end(), '/', '_');
  sig.erase(sig.find_last_not_of('=') + 1);
  mine["sig"] = sig;
  mine["extension"] = "ignored";
  env["signatures"].push_back(mine);
  EnvelopeCheck check = verify_envelope(env, pub);
  EXPECT_TRUE(check.ok) << check.error;
  EXPECT_EQ(check.keyid, key.keyid());

  // A signature without keyid is tried as well.
  env["signatures"][1].erase("keyid");
  check = verify_envelope(env, pub);
  EXPECT_TRUE(check.ok) << check.error;
  EXPECT_EQ(check.keyid, key.keyid());

  // A failing signature that claims our keyid does not stop the search.
  env["signatures"].insert(env["signatures"].begin(),
                           json{{"keyid", key.keyid()}, {"sig", base64_encode(std::string(64, 'x'))}});
  EXPECT_TRUE(verify_envelope(env, pub).ok);
}

TEST(DsseEnvelope, EachFailureHasItsReason) {
  SigningKey key = SigningKey::generate();
  SigningKey other = SigningKey::generate();
  VerifyingKey pub = VerifyingKey::from_pem(key.public_pem());
  json env = sign_envelope(key, kInTotoPayloadType, "hello");
  EXPECT_EQ(verify_envelope(env, pub).failure, EnvelopeFailure::kNone);
  EXPECT_EQ(verify_envelope(env, VerifyingKey::from_pem(other.public_pem())).failure, EnvelopeFailure::kNotSignedByKey);
  json tampered = env;
  tampered["payload"] = base64_encode("goodbye");
  EXPECT_EQ(verify_envelope(tampered, pub).failure, EnvelopeFailure::kBadSignature);
  json unsigned_env = env;
  unsigned_env["signatures"] = json::array();
  EXPECT_EQ(verify_envelope(unsigned_env, pub).failure, EnvelopeFailure::kNoSignatures);
  json no_payload = env;
  no_payload.erase("payload");
  EXPECT_EQ(verify_envelope(no_payload, pub).failure, EnvelopeFailure::kMalformed);
  EXPECT_EQ(verify_envelope(json("text"), pub).failure, EnvelopeFailure::kMalformed);
}

// With several trusted keys: the first key that verifies, else the most telling failure. A
// signature by a trusted key that does not verify says more than "signed by another key", which
// every other trusted key reports, whatever the order of the keys.
TEST(DsseEnvelope, SeveralKeysGiveTheMostTellingFailure) {
  SigningKey signer = SigningKey::generate();
  SigningKey other = SigningKey::generate();
  SigningKey third = SigningKey::generate();
  auto keys_of = [](std::initializer_list<const SigningKey*> ks) {
    std::vector<VerifyingKey> out;
    for (const SigningKey* k : ks) out.push_back(VerifyingKey::from_pem(k->public_pem()));
    return out;
  };
  json env = sign_envelope(signer, kInTotoPayloadType, "hello");

  EnvelopeCheck ok = verify_envelope(env, keys_of({&other, &signer, &third}));
  EXPECT_TRUE(ok.ok) << ok.error;
  EXPECT_EQ(ok.keyid, signer.keyid());
  EXPECT_EQ(ok.payload, "hello");

  json tampered = env;
  tampered["payload"] = base64_encode("goodbye");
  std::vector<std::vector<VerifyingKey>> orders;
  orders.push_back(keys_of({&other, &signer, &third}));
  orders.push_back(keys_of({&signer, &other}));
  orders.push_back(keys_of({&third, &signer}));
  for (const auto& keys : orders) {
    EnvelopeCheck c = verify_envelope(tampered, keys);
    EXPECT_FALSE(c.ok);
    EXPECT_EQ(c.failure, EnvelopeFailure::kBadSignature);
    EXPECT_EQ(c.error, "signature does not verify");
  }

  // Signed by none of them: "not signed by" the first key, naming who signed.
  EnvelopeCheck none = verify_envelope(env, keys_of({&other, &third}));
  EXPECT_EQ(none.failure, EnvelopeFailure::kNotSignedByKey);
  EXPECT_THAT(none.error, HasSubstr(other.keyid()));
  EXPECT_THAT(none.error, HasSubstr(signer.keyid()));

  EnvelopeCheck no_keys = verify_envelope(env, std::vector<VerifyingKey>{});
  EXPECT_FALSE(no_keys.ok);
  EXPECT_EQ(no_keys.failure, EnvelopeFailure::kNoTrustedKey);
  EXPECT_EQ(no_keys.error, "no trusted key to verify with");
}

}  // namespace
