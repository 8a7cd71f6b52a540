// Packer 1.6.6's functions from Terraform's set that cty does not have: IP networks (cidrhost,
// cidrnetmask, cidrsubnet, cidrsubnets, as go-cidr computes them), uuidv5, bcrypt (libcrypt's
// bcrypt, "$2a$" as Go's x/crypto/bcrypt writes), urlencode, rsadecrypt (OpenSSL); and the functions that need an
// outside service (vault, consul_key, aws_secretsmanager), which imgbake does not call.
#include <arpa/inet.h>
#include <crypt.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include <algorithm>
#include <fstream>
#include <memory>

#include "hcl_load.h"
#include "imgbake/util.h"

namespace imgbake::hcl_template {

using hcl::Function;
using hcl::FunctionError;
using hcl::Type;
using hcl::Value;

namespace {

// An address (4 or 16 bytes) as a 128-bit number, and a network as Go's net.IPNet.
using U128 = unsigned __int128;

struct Network {
  U128 ip = 0;     // masked
  int bits = 32;   // 32 or 128
  int prefix = 0;  // the mask's length
};

U128 mask_of(int prefix, int bits) {
  if (prefix <= 0) return 0;
  U128 all = bits == 128 ? ~U128(0) : (U128(1) << 32) - 1;
  return all ^ (bits - prefix >= 128 ? ~U128(0) : (U128(1) << (bits - prefix)) - 1);
}

std::string ip_string(U128 ip, int bits) {
  unsigned char b[16];
  int n = bits / 8;
  for (int i = n - 1; i >= 0; --i, ip >>= 8) b[i] = static_cast<unsigned char>(ip & 0xFF);
  char out[INET6_ADDRSTRLEN];
  inet_ntop(n == 4 ? AF_INET : AF_INET6, b, out, sizeof out);
  return out;
}

std::string network_string(const Network& n) { return ip_string(n.ip, n.bits) + "/" + std::to_string(n.prefix); }

// Go's net.ParseCIDR.
Network parse_cidr(const std::string& s) {
  auto bad = [&] { return FunctionError("invalid CIDR expression: invalid CIDR address: " + s, 0); };
  size_t slash = s.find('/');
  if (slash == std::string::npos) throw bad();
  std::string addr = s.substr(0, slash);
  std::string len = s.substr(slash + 1);
  Network n;
  unsigned char b[16];
  if (inet_pton(AF_INET, addr.c_str(), b) == 1) {
    n.bits = 32;
  } else if (inet_pton(AF_INET6, addr.c_str(), b) == 1) {
    n.bits = 128;
  } else {
    throw bad();
  }
  if (len.empty() || len.size() > 3 || len.find_first_not_of("0123456789") != std::string::npos) throw bad();
  n.prefix = std::stoi(len);
  if (n.prefix > n.bits) throw bad();
  for (int i = 0; i < n.bits / 8; ++i) n.ip = (n.ip << 8) | b[i];
  n.ip &= mask_of(n.prefix, n.bits);
  return n;
}

int64_t whole(const Value& v, int arg) {
  std::optional<int64_t> n = v.as_number().to_int64();
  if (!n) throw FunctionError("value must be a whole number", arg);
  return *n;
}

U128 host_part(const Network& n) { return n.bits - n.prefix >= 128 ? ~U128(0) : (U128(1) << (n.bits - n.prefix)) - 1; }

// go-cidr's Subnet: the num-th subnet of `base` with `newbits` more bits of prefix.
Network subnet(const Network& base, int64_t newbits, int64_t num) {
  if (base.prefix + newbits > base.bits)
    throw FunctionError("insufficient address space to extend prefix of " + std::to_string(base.prefix) + " by " +
                        std::to_string(newbits));
  U128 max = newbits >= 64 ? ~U128(0) : (U128(1) << newbits) - 1;
  if (static_cast<U128>(static_cast<uint64_t>(num)) > max)
    throw FunctionError("prefix extension of " + std::to_string(newbits) + " does not accommodate a subnet numbered " +
                        std::to_string(num));
  Network out = base;
  out.prefix = static_cast<int>(base.prefix + newbits);
  out.ip = base.ip | (static_cast<U128>(static_cast<uint64_t>(num)) << (base.bits - out.prefix));
  return out;
}

const char* kHex = "0123456789abcdef";

std::string uuid_text(const unsigned char* b) {
  std::string s;
  for (int i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) s += '-';
    s += kHex[b[i] >> 4];
    s += kHex[b[i] & 15];
  }
  return s;
}

bool parse_uuid(const std::string& s, unsigned char* out) {
  std::string hex;
  for (char c : s)
    if (c != '-') hex += c;
  if (hex.size() != 32 || hex.find_first_not_of("0123456789abcdefABCDEF") != std::string::npos) return false;
  for (int i = 0; i < 16; ++i) out[i] = static_cast<unsigned char>(std::stoi(hex.substr(2 * i, 2), nullptr, 16));
  return true;
}

Function unavailable(const std::string& name, size_t params, const std::string& why) {
  Function fn;
  for (size_t i = 0; i < params; ++i) fn.params.push_back({"arg" + std::to_string(i), Type()});
  fn.result_type = Type::string();
  fn.impl = [name, why](const std::vector<Value>&) -> Value {
    throw FunctionError(name + "() is not available in imgbake: " + why);
  };
  return fn;
}

}  // namespace

void add_network_and_id_functions(std::map<std::string, Function>& f) {
  Function cidrhost;
  cidrhost.params = {{"prefix", Type::string()}, {"hostnum", Type::number()}};
  cidrhost.result_type = Type::string();
  cidrhost.impl = [](const std::vector<Value>& a) {
    Network n = parse_cidr(a[0].as_string());
    int64_t num = whole(a[1], 1);
    U128 max = host_part(n);
    U128 host = num < 0 ? max - (static_cast<U128>(-(num + 1))) : static_cast<U128>(num);
    if ((num < 0 && static_cast<U128>(-(num + 1)) > max) || host > max)
      throw FunctionError("prefix of " + std::to_string(n.prefix) + " does not accommodate a host numbered " +
                          std::to_string(num));
    return Value::string(ip_string(n.ip | host, n.bits));
  };
  f["cidrhost"] = cidrhost;

  Function cidrnetmask;
  cidrnetmask.params = {{"prefix", Type::string()}};
  cidrnetmask.result_type = Type::string();
  cidrnetmask.impl = [](const std::vector<Value>& a) {
    Network n = parse_cidr(a[0].as_string());
    return Value::string(ip_string(mask_of(n.prefix, n.bits), n.bits));
  };
  f["cidrnetmask"] = cidrnetmask;

  Function cidrsubnet;
  cidrsubnet.params = {{"prefix", Type::string()}, {"newbits", Type::number()}, {"netnum", Type::number()}};
  cidrsubnet.result_type = Type::string();
  cidrsubnet.impl = [](const std::vector<Value>& a) {
    Network n = parse_cidr(a[0].as_string());
    int64_t newbits = whole(a[1], 1);
    if (newbits > 32) throw FunctionError("may not extend prefix by more than 32 bits");
    return Value::string(network_string(subnet(n, newbits, whole(a[2], 2))));
  };
  f["cidrsubnet"] = cidrsubnet;

  // cidrsubnets(prefix, newbits...): consecutive subnets, each aligned after the previous one.
  Function cidrsubnets;
  cidrsubnets.params = {{"prefix", Type::string()}};
  cidrsubnets.variadic = Function::Param{"newbits", Type::number()};
  cidrsubnets.result_type = Type::list(Type::string());
  cidrsubnets.impl = [](const std::vector<Value>& a) {
    Network n = parse_cidr(a[0].as_string());
    std::vector<Value> out;
    if (a.size() < 2) return Value::list({}, Type::string());
    const U128 all = n.bits == 128 ? ~U128(0) : (U128(1) << 32) - 1;
    // go-cidr: start from the subnet before the first one (PreviousSubnet), then NextSubnet.
    Network current;
    current.bits = n.bits;
    current.prefix = static_cast<int>(std::min<int64_t>(n.bits, std::max<int64_t>(0, n.prefix + whole(a[1], 1))));
    current.ip = ((n.ip - 1) & all) & mask_of(current.prefix, n.bits);
    for (size_t i = 1; i < a.size(); ++i) {
      int arg = static_cast<int>(i);
      int64_t len = whole(a[i], arg);
      if (len < 1) throw FunctionError("must extend prefix by at least one bit", arg);
      if (len > 32) throw FunctionError("may not extend prefix by more than 32 bits", arg);
      len += n.prefix;
      if (len > n.bits)
        throw FunctionError("would extend prefix to " + std::to_string(len) + " bits, which is too long for an " +
                                (n.bits == 32 ? "IPv4" : "IPv6") + " address",
                            arg);
      Network next;
      next.bits = n.bits;
      next.prefix = static_cast<int>(len);
      U128 mask = mask_of(next.prefix, n.bits);
      U128 last = ((current.ip | host_part(current)) & mask) | host_part(next);
      U128 after = (last + 1) & all;
      next.ip = after & mask;
      if (after == 0 || (next.ip & mask_of(n.prefix, n.bits)) != n.ip)
        throw FunctionError("not enough remaining address space for a subnet with a prefix of " + std::to_string(len) +
                                " bits after " + network_string(current),
                            arg);
      current = next;
      out.push_back(Value::string(network_string(current)));
    }
    return Value::list(std::move(out), Type::string());
  };
  f["cidrsubnets"] = cidrsubnets;

  Function uuidv5;
  uuidv5.params = {{"namespace", Type::string()}, {"name", Type::string()}};
  uuidv5.result_type = Type::string();
  uuidv5.impl = [](const std::vector<Value>& a) {
    static const std::map<std::string, std::string> named = {{"dns", "6ba7b810-9dad-11d1-80b4-00c04fd430c8"},
                                                             {"url", "6ba7b811-9dad-11d1-80b4-00c04fd430c8"},
                                                             {"oid", "6ba7b812-9dad-11d1-80b4-00c04fd430c8"},
                                                             {"x500", "6ba7b814-9dad-11d1-80b4-00c04fd430c8"}};
    const std::string& ns = a[0].as_string();
    auto it = named.find(ns);
    unsigned char id[16];
    if (!parse_uuid(it != named.end() ? it->second : ns, id))
      throw FunctionError("uuidv5() doesn't support namespace " + ns +
                          " (invalid UUID length: " + std::to_string(ns.size()) + ")");
    util::Hasher sha1("sha1");
    sha1.update(id, sizeof id);
    sha1.update(a[1].as_string().data(), a[1].as_string().size());
    std::string digest = sha1.hex();
    unsigned char out[16];
    for (int i = 0; i < 16; ++i) out[i] = static_cast<unsigned char>(std::stoi(digest.substr(2 * i, 2), nullptr, 16));
    out[6] = static_cast<unsigned char>((out[6] & 0x0F) | 0x50);
    out[8] = static_cast<unsigned char>((out[8] & 0x3F) | 0x80);
    return Value::string(uuid_text(out));
  };
  f["uuidv5"] = uuidv5;

  Function bcrypt;
  bcrypt.params = {{"str", Type::string()}};
  bcrypt.variadic = Function::Param{"cost", Type::number()};
  bcrypt.result_type = Type::string();
  bcrypt.impl = [](const std::vector<Value>& a) {
    int64_t cost = 10;  // Go's bcrypt.DefaultCost
    if (a.size() > 2) throw FunctionError("bcrypt() takes no more than two arguments");
    if (a.size() == 2) cost = whole(a[1], 1);
    if (cost < 4) cost = 10;  // as Go's bcrypt.GenerateFromPassword
    if (cost > 31)
      throw FunctionError("error occured generating password crypto/bcrypt: cost " + std::to_string(cost) +
                          " is outside allowed range (4,31)");
    std::string random(16, '\0');
    {
      std::ifstream u("/dev/urandom", std::ios::binary);
      u.read(random.data(), static_cast<std::streamsize>(random.size()));
      if (!u) throw FunctionError("no random bytes for the salt (/dev/urandom)");
    }
    char setting[CRYPT_GENSALT_OUTPUT_SIZE];
    if (!crypt_gensalt_rn("$2a$", static_cast<unsigned long>(cost), random.data(), static_cast<int>(random.size()),
                          setting, sizeof setting))
      throw FunctionError("error occured generating password crypto/bcrypt: no salt");
    crypt_data data{};
    const char* h = crypt_rn(a[0].as_string().c_str(), setting, &data, sizeof data);
    if (!h || h[0] == '*') throw FunctionError("error occured generating password crypto/bcrypt");
    return Value::string(h);
  };
  f["bcrypt"] = bcrypt;

  // Terraform's urlencode (Go's url.QueryEscape): a space is "+".
  Function urlencode;
  urlencode.params = {{"str", Type::string()}};
  urlencode.result_type = Type::string();
  urlencode.impl = [](const std::vector<Value>& a) {
    std::string out;
    for (unsigned char c : a[0].as_string()) {
      if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
        out += static_cast<char>(c);
      } else if (c == ' ') {
        out += '+';
      } else {
        out += '%';
        out += "0123456789ABCDEF"[c >> 4];
        out += "0123456789ABCDEF"[c & 15];
      }
    }
    return Value::string(out);
  };
  f["urlencode"] = urlencode;

  // rsadecrypt(ciphertext, privatekey): base64 PKCS #1 v1.5 ciphertext, a PEM RSA key.
  Function rsadecrypt;
  rsadecrypt.params = {{"ciphertext", Type::string()}, {"privatekey", Type::string()}};
  rsadecrypt.result_type = Type::string();
  rsadecrypt.impl = [](const std::vector<Value>& a) {
    const std::string& in = a[0].as_string();
    std::optional<std::string> cipher = base64_decode(in);
    if (!cipher) throw FunctionError("failed to decode input \"" + in + "\": cipher text must be base64-encoded");
    const std::string& pem = a[1].as_string();
    std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), BIO_free);
    std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(
        bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr) : nullptr, EVP_PKEY_free);
    if (!key) throw FunctionError("invalid private key: ssh: no key found", 1);
    if (EVP_PKEY_get_base_id(key.get()) != EVP_PKEY_RSA) throw FunctionError("invalid private key type", 1);
    std::unique_ptr<EVP_PKEY_CTX, decltype(&EVP_PKEY_CTX_free)> ctx(EVP_PKEY_CTX_new(key.get(), nullptr),
                                                                    EVP_PKEY_CTX_free);
    size_t len = 0;
    auto data = reinterpret_cast<const unsigned char*>(cipher->data());
    if (!ctx || EVP_PKEY_decrypt_init(ctx.get()) <= 0 ||
        EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_PKCS1_PADDING) <= 0 ||
        EVP_PKEY_decrypt(ctx.get(), nullptr, &len, data, cipher->size()) <= 0)
      throw FunctionError("failed to decrypt: crypto/rsa: decryption error");
    std::string out(len, '\0');
    if (EVP_PKEY_decrypt(ctx.get(), reinterpret_cast<unsigned char*>(out.data()), &len, data, cipher->size()) <= 0)
      throw FunctionError("failed to decrypt: crypto/rsa: decryption error");
    out.resize(len);
    return Value::string(out);
  };
  f["rsadecrypt"] = rsadecrypt;

  const std::string service =
      "it reads secrets from an outside service at template load time; pass the value in a variable (-var, "
      "-var-file or PKR_VAR_) instead";
  f["vault"] = unavailable("vault", 2, service);
  f["consul_key"] = unavailable("consul_key", 1, service);
  f["aws_secretsmanager"] = unavailable("aws_secretsmanager", 2, service);
}

}  // namespace imgbake::hcl_template
