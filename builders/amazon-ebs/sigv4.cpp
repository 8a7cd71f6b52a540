#include "sigv4.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <cctype>
#include <ctime>
#include <map>
#include <stdexcept>

#include "imgbake/text_encoding.h"
#include "imgbake/util.h"

namespace imgbake::amazon {
namespace {

std::string hmac_sha256(std::string_view key, std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (!HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(data.data()),
            data.size(), out, &len))
    throw std::runtime_error("HMAC-SHA256 failed");
  return std::string(reinterpret_cast<const char*>(out), len);
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// Trims and collapses runs of whitespace (folded header lines included) into one space.
std::string canonical_header_value(std::string_view v) {
  std::string out;
  bool space = false;
  for (char c : v) {
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
      space = !out.empty();
      continue;
    }
    if (space) out += ' ';
    space = false;
    out += c;
  }
  return out;
}

std::string canonical_path(const std::string& raw, bool normalize) {
  std::vector<std::string> segments;
  bool trailing = raw.size() > 1 && raw.back() == '/';
  if (normalize) {
    for (const auto& seg : util::split(raw, '/')) {
      if (seg.empty() || seg == ".") continue;
      if (seg == "..") {
        if (!segments.empty()) segments.pop_back();
        continue;
      }
      segments.push_back(seg);
    }
    std::string out;
    for (const auto& s : segments) out += "/" + util::percent_encode(util::percent_decode(s));
    if (out.empty()) return "/";
    if (trailing) out += "/";
    return out;
  }
  std::string out;
  size_t start = 0;
  for (;;) {
    size_t slash = raw.find('/', start);
    out += util::percent_encode(
        util::percent_decode(raw.substr(start, slash == std::string::npos ? std::string::npos : slash - start)));
    if (slash == std::string::npos) break;
    out += '/';
    start = slash + 1;
  }
  return out.empty() ? "/" : out;
}

std::string canonical_query(const std::string& query) {
  std::vector<std::pair<std::string, std::string>> params;
  if (!query.empty())
    for (const auto& part : util::split(query, '&')) {
      if (part.empty()) continue;
      size_t eq = part.find('=');
      std::string k = part.substr(0, eq);
      std::string v = eq == std::string::npos ? "" : part.substr(eq + 1);
      params.emplace_back(util::percent_encode(util::percent_decode(k)), util::percent_encode(util::percent_decode(v)));
    }
  std::sort(params.begin(), params.end());
  std::string out;
  for (const auto& [k, v] : params) {
    if (!out.empty()) out += '&';
    out += k + "=" + v;
  }
  return out;
}

}  // namespace

std::string amz_date_now() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%dT%H%M%SZ", &tm);
  return buf;
}

SignedRequest sign_v4(const SigningRequest& req, const Credentials& creds, const SigningParams& p) {
  SignedRequest out;
  std::string payload_hash = util::sha256_hex(req.body);
  out.added_headers.emplace_back("X-Amz-Date", p.amz_date);
  if (p.sign_body_header) out.added_headers.emplace_back("x-amz-content-sha256", payload_hash);
  if (!creds.token.empty() && !p.omit_session_token)
    out.added_headers.emplace_back("X-Amz-Security-Token", creds.token);

  // Headers by lower-case name; repeated ones joined with commas in the order given.
  std::map<std::string, std::string> headers;
  auto add = [&](const std::string& name, const std::string& value) {
    std::string k = lower(name);
    std::string v = canonical_header_value(value);
    auto [it, fresh] = headers.emplace(k, v);
    if (!fresh) it->second += "," + v;
  };
  for (const auto& [k, v] : req.headers) {
    std::string lk = lower(k);
    if (lk == "authorization") continue;
    add(k, v);
  }
  for (const auto& [k, v] : out.added_headers) add(k, v);

  std::string canonical_headers, signed_headers;
  for (const auto& [k, v] : headers) {
    canonical_headers += k + ":" + v + "\n";
    if (!signed_headers.empty()) signed_headers += ';';
    signed_headers += k;
  }
  out.canonical_request = req.method + "\n" + canonical_path(req.path, p.normalize_path) + "\n" +
                          canonical_query(req.query) + "\n" + canonical_headers + "\n" + signed_headers + "\n" +
                          payload_hash;
  std::string date = p.amz_date.substr(0, 8);
  std::string scope = date + "/" + p.region + "/" + p.service + "/aws4_request";
  out.string_to_sign =
      "AWS4-HMAC-SHA256\n" + p.amz_date + "\n" + scope + "\n" + util::sha256_hex(out.canonical_request);
  std::string k = hmac_sha256("AWS4" + creds.secret_key, date);
  k = hmac_sha256(k, p.region);
  k = hmac_sha256(k, p.service);
  k = hmac_sha256(k, "aws4_request");
  std::string sig = hmac_sha256(k, out.string_to_sign);
  out.signature = util::to_hex(reinterpret_cast<const unsigned char*>(sig.data()), sig.size());
  if (!creds.token.empty() && p.omit_session_token) out.added_headers.emplace_back("X-Amz-Security-Token", creds.token);
  out.added_headers.emplace_back("Authorization", "AWS4-HMAC-SHA256 Credential=" + creds.access_key + "/" + scope +
                                                      ", SignedHeaders=" + signed_headers +
                                                      ", Signature=" + out.signature);
  return out;
}

}  // namespace imgbake::amazon
