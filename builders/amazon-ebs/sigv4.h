// AWS Signature Version 4 (header form), written from AWS's "Create a signed AWS API request"
// and checked byte for byte against aws-c-auth's signing test suite (test_amazon_sigv4.cpp).
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace imgbake::amazon {

struct Credentials {
  std::string access_key;
  std::string secret_key;
  std::string token;   // a session token, may be empty
  std::string source;  // where they came from, for messages ("environment", "profile dev in ~/.aws/credentials")
  // When temporary credentials stop working (STS's, IMDS's or a credential_process's Expiration);
  // nullopt for long-term keys.
  std::optional<std::chrono::system_clock::time_point> expires = std::nullopt;
};

struct SigningRequest {
  std::string method = "POST";
  std::string path = "/";                                    // as sent, not yet encoded
  std::string query;                                         // as sent (name=value&…, possibly percent-encoded)
  std::vector<std::pair<std::string, std::string>> headers;  // as sent; Host must be among them
  std::string body;
};

struct SigningParams {
  std::string region;
  std::string service;
  std::string amz_date;             // "20150830T123600Z"
  bool normalize_path = true;       // remove "." and ".." segments and empty ones (not S3)
  bool sign_body_header = false;    // add and sign x-amz-content-sha256
  bool omit_session_token = false;  // add X-Amz-Security-Token after signing (not signed)
};

struct SignedRequest {
  std::string canonical_request;
  std::string string_to_sign;
  std::string signature;  // hex
  // Headers to add to the request: X-Amz-Date, [X-Amz-Content-Sha256], [X-Amz-Security-Token],
  // Authorization (in that order).
  std::vector<std::pair<std::string, std::string>> added_headers;
};

SignedRequest sign_v4(const SigningRequest& req, const Credentials& creds, const SigningParams& params);

// The current time as SigV4 wants it ("YYYYMMDDTHHMMSSZ", UTC).
std::string amz_date_now();

}  // namespace imgbake::amazon
