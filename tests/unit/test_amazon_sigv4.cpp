// AWS SigV4: aws-c-auth's signing test suite (../shared/vectors/aws-sigv4, 38 cases), byte for byte:
// the canonical request, the string to sign, the signature and the Authorization header.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "amazon-ebs/sigv4.h"

namespace fs = std::filesystem;
using imgbake::amazon::Credentials;
using imgbake::amazon::sign_v4;
using imgbake::amazon::SigningParams;
using imgbake::amazon::SigningRequest;

namespace {

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// request.txt: "METHOD PATH HTTP/1.1", header lines (a line starting with a space continues the
// previous one), an empty line, the body.
SigningRequest parse_request(const std::string& text) {
  SigningRequest r;
  size_t pos = text.find('\n');
  std::string first = text.substr(0, pos);
  size_t sp1 = first.find(' ');
  size_t sp2 = first.rfind(' ');
  r.method = first.substr(0, sp1);
  std::string target = first.substr(sp1 + 1, sp2 - sp1 - 1);
  size_t q = target.find('?');
  r.path = target.substr(0, q);
  if (q != std::string::npos) r.query = target.substr(q + 1);
  size_t at = pos == std::string::npos ? text.size() : pos + 1;
  while (at < text.size()) {
    size_t end = text.find('\n', at);
    std::string line = text.substr(at, end == std::string::npos ? std::string::npos : end - at);
    at = end == std::string::npos ? text.size() : end + 1;
    if (line.empty()) {
      r.body = text.substr(at);
      break;
    }
    if ((line[0] == ' ' || line[0] == '\t') && !r.headers.empty()) {
      r.headers.back().second += "\n" + line;
      continue;
    }
    size_t colon = line.find(':');
    r.headers.emplace_back(line.substr(0, colon), line.substr(colon + 1));
  }
  return r;
}

std::string amz_date(const std::string& iso) {  // 2015-08-30T12:36:00Z -> 20150830T123600Z
  std::string out;
  for (char c : iso)
    if (c != '-' && c != ':') out += c;
  return out;
}

}  // namespace

TEST(AmazonSigV4, SigningTestSuitePassesByteForByte) {
  fs::path dir = IMGBAKE_SIGV4_VECTORS;
  ASSERT_TRUE(fs::is_directory(dir)) << dir << " is missing (the shared test vectors, ../shared beside the repo)";
  int cases = 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (!entry.is_directory()) continue;
    fs::path d = entry.path();
    SCOPED_TRACE(d.filename().string());
    auto ctx = nlohmann::json::parse(slurp(d / "context.json"));
    Credentials creds;
    creds.access_key = ctx["credentials"]["access_key_id"];
    creds.secret_key = ctx["credentials"]["secret_access_key"];
    creds.token = ctx["credentials"].value("token", "");
    SigningParams p;
    p.region = ctx["region"];
    p.service = ctx["service"];
    p.amz_date = amz_date(ctx["timestamp"]);
    p.normalize_path = ctx.value("normalize", true);
    p.sign_body_header = ctx.value("sign_body", false);
    p.omit_session_token = ctx.value("omit_session_token", false);
    auto signed_req = sign_v4(parse_request(slurp(d / "request.txt")), creds, p);
    EXPECT_EQ(signed_req.canonical_request, slurp(d / "header-canonical-request.txt"));
    EXPECT_EQ(signed_req.string_to_sign, slurp(d / "header-string-to-sign.txt"));
    EXPECT_EQ(signed_req.signature, slurp(d / "header-signature.txt"));
    std::string sreq = slurp(d / "header-signed-request.txt");
    ASSERT_FALSE(signed_req.added_headers.empty());
    EXPECT_EQ(signed_req.added_headers.back().first, "Authorization");
    EXPECT_NE(sreq.find("\nAuthorization:" + signed_req.added_headers.back().second + "\n"), std::string::npos);
    for (const auto& [k, v] : signed_req.added_headers)
      EXPECT_NE(sreq.find("\n" + k + ":" + v + "\n"), std::string::npos) << k;
    ++cases;
  }
  EXPECT_EQ(cases, 38);
}
