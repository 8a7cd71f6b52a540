// Ed25519 signing and verifying keys on OpenSSL 3 EVP.
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <climits>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

#include "imgbake/provenance.h"
#include "imgbake/util.h"

namespace imgbake::provenance {

namespace {

constexpr size_t kSignatureSize = 64;

using BioPtr = std::unique_ptr<BIO, decltype(&BIO_free)>;
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)>;

// The newest OpenSSL error as text, and an empty queue afterwards: stale errors would
// otherwise surface in unrelated OpenSSL calls elsewhere in the process.
std::string openssl_error() {
  unsigned long code = ERR_peek_last_error();
  std::string text;
  if (code != 0) {
    char buf[256];
    ERR_error_string_n(code, buf, sizeof buf);
    text = buf;
  }
  ERR_clear_error();
  return text.empty() ? "unknown OpenSSL error" : text;
}

// Without a callback, PEM_read_bio_* prompts on the terminal for an encrypted key; a
// build tool must fail instead.
int no_password(char*, int, int, void*) { return -1; }

std::string bio_to_string(BIO* bio) {
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  return n > 0 ? std::string(data, static_cast<size_t>(n)) : std::string();
}

BioPtr read_bio(const std::string& text) {
  if (text.size() > INT_MAX) throw std::runtime_error("PEM text too large");
  BioPtr bio(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())), BIO_free);
  if (!bio) throw std::runtime_error("out of memory: " + openssl_error());
  return bio;
}

BioPtr write_bio() {
  BioPtr bio(BIO_new(BIO_s_mem()), BIO_free);
  if (!bio) throw std::runtime_error("out of memory: " + openssl_error());
  return bio;
}

// A non-null pointer even for an empty view (whose data() may be null): OpenSSL gives a NULL
// buffer special meanings in places, so never hand it one by accident.
const unsigned char* bytes(std::string_view s) {
  static const unsigned char kEmpty = 0;
  return s.data() ? reinterpret_cast<const unsigned char*>(s.data()) : &kEmpty;
}

std::string public_pem_of(EVP_PKEY* pkey) {
  BioPtr bio = write_bio();
  if (PEM_write_bio_PUBKEY(bio.get(), pkey) != 1)
    throw std::runtime_error("cannot encode public key: " + openssl_error());
  return bio_to_string(bio.get());
}

std::string keyid_of(EVP_PKEY* pkey) {
  unsigned char* raw = nullptr;
  int n = i2d_PUBKEY(pkey, &raw);
  if (n <= 0) throw std::runtime_error("cannot encode public key: " + openssl_error());
  std::unique_ptr<unsigned char, void (*)(unsigned char*)> der(raw, [](unsigned char* p) { OPENSSL_free(p); });
  return "sha256:" +
         util::sha256_hex(std::string_view(reinterpret_cast<const char*>(der.get()), static_cast<size_t>(n)));
}

EVP_PKEY* checked(const PkeyPtr& pkey, const char* what) {
  if (!pkey) throw std::logic_error(std::string("use of a moved-from ") + what);
  return pkey.get();
}

}  // namespace

void PkeyDeleter::operator()(evp_pkey_st* pkey) const noexcept { EVP_PKEY_free(pkey); }

// --- SigningKey ---

SigningKey SigningKey::generate() {
  PkeyPtr pkey(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519"));
  if (!pkey) throw std::runtime_error("cannot generate an Ed25519 key: " + openssl_error());
  SigningKey key;
  key.pkey_ = std::move(pkey);
  return key;
}

SigningKey SigningKey::load_private(const std::string& path) {
  std::string pem = util::read_file(path);
  PkeyPtr pkey;
  {
    BioPtr bio = read_bio(pem);
    pkey.reset(PEM_read_bio_PrivateKey(bio.get(), nullptr, no_password, nullptr));
  }
  OPENSSL_cleanse(pem.data(), pem.size());
  if (!pkey) {
    // OpenSSL's decoder codes ("DECODER routines::unsupported") tell people nothing more.
    ERR_clear_error();
    throw std::runtime_error(path + ": not an unencrypted PEM private key");
  }
  if (EVP_PKEY_get_id(pkey.get()) != EVP_PKEY_ED25519) throw std::runtime_error(path + ": not an Ed25519 private key");
  SigningKey key;
  key.pkey_ = std::move(pkey);
  return key;
}

void SigningKey::save(const std::string& private_path) const {
  EVP_PKEY* pkey = checked(pkey_, "SigningKey");
  std::string private_pem;
  {
    BioPtr bio = write_bio();
    // No cipher: OpenSSL 3 writes an unencrypted PKCS#8 "PRIVATE KEY" block.
    if (PEM_write_bio_PrivateKey(bio.get(), pkey, nullptr, nullptr, 0, nullptr, nullptr) != 1)
      throw std::runtime_error("cannot encode private key: " + openssl_error());
    private_pem = bio_to_string(bio.get());
    // The BIO's buffer held the secret too.
    char* data = nullptr;
    long n = BIO_get_mem_data(bio.get(), &data);
    if (n > 0) OPENSSL_cleanse(data, static_cast<size_t>(n));
  }
  const std::string public_path = private_path + ".pub";
  try {
    util::write_file_atomic(private_path, private_pem, 0600);
  } catch (const std::exception& e) {
    OPENSSL_cleanse(private_pem.data(), private_pem.size());
    throw std::runtime_error("cannot save private key " + private_path + ": " + e.what());
  }
  OPENSSL_cleanse(private_pem.data(), private_pem.size());
  try {
    util::write_file_atomic(public_path, public_pem_of(pkey), 0644);
  } catch (const std::exception& e) {
    throw std::runtime_error("cannot save public key " + public_path + ": " + e.what());
  }
}

std::string SigningKey::sign(std::string_view message) const {
  EVP_PKEY* pkey = checked(pkey_, "SigningKey");
  MdCtxPtr ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  if (!ctx) throw std::runtime_error("out of memory: " + openssl_error());
  // Ed25519 hashes internally (PureEdDSA): no digest, one-shot only.
  if (EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, pkey) != 1)
    throw std::runtime_error("cannot sign: " + openssl_error());
  std::string sig(kSignatureSize, '\0');
  size_t len = sig.size();
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len, bytes(message), message.size()) !=
      1)
    throw std::runtime_error("cannot sign: " + openssl_error());
  sig.resize(len);
  return sig;
}

std::string SigningKey::public_pem() const { return public_pem_of(checked(pkey_, "SigningKey")); }

std::string SigningKey::keyid() const { return keyid_of(checked(pkey_, "SigningKey")); }

// --- VerifyingKey ---

VerifyingKey VerifyingKey::from_pem(const std::string& pem) {
  PkeyPtr pkey;
  {
    BioPtr bio = read_bio(pem);
    pkey.reset(PEM_read_bio_PUBKEY(bio.get(), nullptr, no_password, nullptr));
  }
  if (!pkey) {
    ERR_clear_error();
    throw std::runtime_error("not a PEM public key");
  }
  if (EVP_PKEY_get_id(pkey.get()) != EVP_PKEY_ED25519) throw std::runtime_error("not an Ed25519 public key");
  VerifyingKey key;
  key.pkey_ = std::move(pkey);
  return key;
}

VerifyingKey VerifyingKey::load(const std::string& path) {
  std::string pem = util::read_file(path);
  try {
    return from_pem(pem);
  } catch (const std::runtime_error& e) {
    throw std::runtime_error(path + ": " + e.what());
  }
}

bool VerifyingKey::verify(std::string_view message, std::string_view signature) const {
  EVP_PKEY* pkey = checked(pkey_, "VerifyingKey");
  if (signature.size() != kSignatureSize) return false;
  MdCtxPtr ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  if (!ctx) throw std::runtime_error("out of memory: " + openssl_error());
  if (EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, pkey) != 1)
    throw std::runtime_error("cannot verify: " + openssl_error());
  int rc = EVP_DigestVerify(ctx.get(), bytes(signature), signature.size(), bytes(message), message.size());
  // A bad signature leaves an error on the queue; it is an answer, not a failure.
  ERR_clear_error();
  return rc == 1;
}

std::string VerifyingKey::keyid() const { return keyid_of(checked(pkey_, "VerifyingKey")); }

std::string VerifyingKey::pem() const { return public_pem_of(checked(pkey_, "VerifyingKey")); }

}  // namespace imgbake::provenance
