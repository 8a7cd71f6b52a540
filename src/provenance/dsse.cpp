// DSSE: pre-authentication encoding, base64, and signing/verifying envelopes.
// https://github.com/secure-systems-lab/dsse/blob/master/protocol.md and envelope.md.
#include <array>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "imgbake/provenance.h"

namespace imgbake::provenance {

namespace {

constexpr std::string_view kStdAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
constexpr int8_t kInvalid = -1;

// One table for both alphabets: envelope.md lets producers use either, so a decoder must
// take '+' '/' as well as '-' '_'.
constexpr std::array<int8_t, 256> make_decode_table() {
  std::array<int8_t, 256> table{};
  for (auto& v : table) v = kInvalid;
  for (size_t i = 0; i < kStdAlphabet.size(); ++i) table[static_cast<unsigned char>(kStdAlphabet[i])] = int8_t(i);
  table[static_cast<unsigned char>('-')] = 62;
  table[static_cast<unsigned char>('_')] = 63;
  return table;
}
constexpr std::array<int8_t, 256> kDecode = make_decode_table();

std::string join_keyids(const std::vector<std::string>& ids) {
  std::string out;
  for (const auto& id : ids) {
    if (!out.empty()) out += ", ";
    out += id;
  }
  return out;
}

}  // namespace

std::string pae(std::string_view payload_type, std::string_view payload) {
  std::string out = "DSSEv1 ";
  out += std::to_string(payload_type.size());
  out += ' ';
  out += payload_type;
  out += ' ';
  out += std::to_string(payload.size());
  out += ' ';
  out += payload;
  return out;
}

std::string base64_encode(std::string_view data) {
  std::string out;
  out.reserve((data.size() + 2) / 3 * 4);
  size_t i = 0;
  auto byte = [&](size_t k) { return static_cast<uint32_t>(static_cast<unsigned char>(data[k])); };
  for (; i + 3 <= data.size(); i += 3) {
    uint32_t n = byte(i) << 16 | byte(i + 1) << 8 | byte(i + 2);
    out += kStdAlphabet[n >> 18 & 63];
    out += kStdAlphabet[n >> 12 & 63];
    out += kStdAlphabet[n >> 6 & 63];
    out += kStdAlphabet[n & 63];
  }
  size_t rest = data.size() - i;
  if (rest == 1) {
    uint32_t n = byte(i) << 16;
    out += kStdAlphabet[n >> 18 & 63];
    out += kStdAlphabet[n >> 12 & 63];
    out += "==";
  } else if (rest == 2) {
    uint32_t n = byte(i) << 16 | byte(i + 1) << 8;
    out += kStdAlphabet[n >> 18 & 63];
    out += kStdAlphabet[n >> 12 & 63];
    out += kStdAlphabet[n >> 6 & 63];
    out += '=';
  }
  return out;
}

// Hand-written rather than EVP_DecodeBlock: that one rejects URL-safe input, needs padding,
// and returns a length that counts the padding bytes as zeros.
std::string base64_decode(std::string_view text) {
  size_t padding = 0;
  while (padding < text.size() && text[text.size() - 1 - padding] == '=') ++padding;
  std::string_view body = text.substr(0, text.size() - padding);
  // Padding, when present, must complete the last quantum exactly ("QQ==", not "QQ=" or "QQ===").
  if (padding > 2 || (padding > 0 && text.size() % 4 != 0)) throw std::invalid_argument("invalid base64: bad padding");
  if (body.size() % 4 == 1) throw std::invalid_argument("invalid base64: truncated input");
  std::string out;
  out.reserve(body.size() / 4 * 3 + 2);
  uint32_t acc = 0;
  int bits = 0;
  for (size_t i = 0; i < body.size(); ++i) {
    int8_t v = kDecode[static_cast<unsigned char>(body[i])];
    if (v == kInvalid) {
      throw std::invalid_argument("invalid base64: unexpected character at offset " + std::to_string(i));
    }
    acc = (acc << 6 | static_cast<uint32_t>(v)) & 0xffffff;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>(acc >> bits & 0xff);
    }
  }
  // Leftover bits of the last character must be zero: otherwise several texts decode to
  // the same bytes, and a signed envelope could be re-encoded without anyone noticing.
  if (bits > 0 && (acc & ((1u << bits) - 1)) != 0)
    throw std::invalid_argument("invalid base64: non-zero trailing bits");
  return out;
}

nlohmann::json sign_envelope(const SigningKey& key, std::string_view payload_type, std::string_view payload) {
  // DSSE signs PAE over the raw payload bytes, never over their base64 form.
  std::string sig = key.sign(pae(payload_type, payload));
  return nlohmann::json{
      {"payloadType", std::string(payload_type)},
      {"payload", base64_encode(payload)},
      {"signatures", nlohmann::json::array({{{"keyid", key.keyid()}, {"sig", base64_encode(sig)}}})},
  };
}

EnvelopeCheck verify_envelope(const nlohmann::json& envelope, const VerifyingKey& key) {
  EnvelopeCheck check;
  if (!envelope.is_object()) {
    check.failure = EnvelopeFailure::kMalformed;
    check.error = "envelope is not a JSON object";
    return check;
  }
  auto type_it = envelope.find("payloadType");
  if (type_it == envelope.end() || !type_it->is_string()) {
    check.failure = EnvelopeFailure::kMalformed;
    check.error = "envelope has no payloadType";
    return check;
  }
  auto payload_it = envelope.find("payload");
  if (payload_it == envelope.end() || !payload_it->is_string()) {
    check.failure = EnvelopeFailure::kMalformed;
    check.error = "envelope has no payload";
    return check;
  }
  std::string payload;
  try {
    payload = base64_decode(payload_it->get_ref<const std::string&>());
  } catch (const std::invalid_argument&) {
    check.failure = EnvelopeFailure::kMalformed;
    check.error = "payload is not valid base64";
    return check;
  }
  check.payload_type = type_it->get<std::string>();
  check.payload = std::move(payload);

  auto sigs_it = envelope.find("signatures");
  if (sigs_it == envelope.end() || !sigs_it->is_array() || sigs_it->empty()) {
    check.failure = EnvelopeFailure::kNoSignatures;
    check.error = "no signatures";
    return check;
  }

  const std::string want_keyid = key.keyid();
  const std::string message = pae(check.payload_type, check.payload);
  std::vector<std::string> other_keyids;
  size_t tried = 0;
  for (const auto& entry : *sigs_it) {
    if (!entry.is_object()) {
      ++tried;
      continue;
    }
    // keyid is an unauthenticated hint (protocol.md): it only lets us skip signatures that
    // are meant for another key; an absent or empty keyid is tried.
    auto keyid_it = entry.find("keyid");
    if (keyid_it != entry.end() && keyid_it->is_string()) {
      const auto& keyid = keyid_it->get_ref<const std::string&>();
      if (!keyid.empty() && keyid != want_keyid) {
        other_keyids.push_back(keyid);
        continue;
      }
    }
    ++tried;
    auto sig_it = entry.find("sig");
    if (sig_it == entry.end() || !sig_it->is_string()) continue;
    std::string sig;
    try {
      sig = base64_decode(sig_it->get_ref<const std::string&>());
    } catch (const std::invalid_argument&) {
      continue;
    }
    if (key.verify(message, sig)) {
      check.ok = true;
      check.keyid = want_keyid;
      return check;
    }
  }

  if (tried > 0) {
    check.failure = EnvelopeFailure::kBadSignature;
    check.error = "signature does not verify";
    if (!other_keyids.empty())
      check.error += " (also skipped signatures by other keys: " + join_keyids(other_keyids) + ")";
  } else {
    check.failure = EnvelopeFailure::kNotSignedByKey;
    check.error = "no signature by key " + want_keyid + "; the envelope is signed by " + join_keyids(other_keyids);
  }
  return check;
}

EnvelopeCheck verify_envelope(const nlohmann::json& envelope, const std::vector<VerifyingKey>& keys) {
  EnvelopeCheck best;
  best.failure = EnvelopeFailure::kNoTrustedKey;
  best.error = "no trusted key to verify with";
  bool have = false;
  for (const auto& k : keys) {
    EnvelopeCheck c = verify_envelope(envelope, k);
    if (c.ok || !have || c.failure != EnvelopeFailure::kNotSignedByKey) {
      best = std::move(c);
      have = true;
    }
    if (best.ok) break;
  }
  return best;
}

}  // namespace imgbake::provenance
