// The AWS credential chain as the SDKs resolve it: the builder's options, the environment, the
// shared credentials and config files (keys or credential_process), EC2's instance metadata
// (IMDSv2); and AssumeRole through STS on top of whichever of these was found.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "imgbake/cancel.h"
#include "sigv4.h"

namespace imgbake::amazon {

struct CredentialSources {
  std::string access_key, secret_key, token;  // the builder's options
  std::string profile;                        // option "profile", else AWS_PROFILE, else "default"
  std::string shared_credentials_file;        // option, else AWS_SHARED_CREDENTIALS_FILE, else ~/.aws/credentials
  bool skip_metadata_api_check = false;       // Packer's option: never the instance metadata service
};

// The first complete set of: the options, the environment (AWS_ACCESS_KEY_ID,
// AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN), the profile in the shared credentials file, the
// profile in the shared config file (AWS_CONFIG_FILE, else ~/.aws/config) — its keys, else its
// credential_process — and last the instance metadata service (IMDSv2 at
// AWS_EC2_METADATA_SERVICE_ENDPOINT, else http://169.254.169.254; not when
// AWS_EC2_METADATA_DISABLED is true). Throws BuildError naming every place it looked, and why
// each said no, when none has credentials.
Credentials resolve_credentials(const CredentialSources& sources, const CancelToken& cancel = global_cancel());

// The region from AWS_REGION / AWS_DEFAULT_REGION, else the profile's "region" in the config
// file; "" when none.
std::string default_region(const std::string& profile);

// An RFC 3339 UTC time as AWS writes an Expiration ("2026-12-06T08:00:00Z", fractions allowed);
// nullopt when it does not parse.
std::optional<std::chrono::system_clock::time_point> parse_aws_time(std::string_view text);

// The build's credentials, resolved once and again shortly before they expire, as the SDKs do
// (temporary credentials from STS, IMDS or a credential_process that gives an Expiration; long-term
// keys never expire). One provider serves every EC2 client of a build, the cleanup clients too, so
// that a build that outlives its first credentials still cleans up after itself.
class CredentialProvider {
 public:
  using Resolve = std::function<Credentials(const CancelToken&)>;
  explicit CredentialProvider(Resolve resolve, std::function<void(std::string_view)> log = {});
  // Credentials that never change (tests, and STS's own client).
  static std::shared_ptr<CredentialProvider> fixed(Credentials creds);

  // The credentials to sign with now: resolved again when none are known yet or they expire within
  // the refresh margin (5 minutes, or half their lifetime when that is shorter).
  Credentials current(const CancelToken& cancel);
  // EC2 or STS refused `rejected` as expired: the next current() resolves again. False when there
  // is nothing to refresh (long-term keys: the refusal is final).
  bool invalidate(const Credentials& rejected);

 private:
  std::mutex mu_;
  Resolve resolve_;
  std::function<void(std::string_view)> log_;
  std::optional<Credentials> creds_;
  std::chrono::system_clock::time_point refresh_at_;
};

// Packer's assume_role block.
struct AssumeRoleConfig {
  std::string role_arn, session_name, external_id, policy;
  int64_t duration_seconds = 0;  // 0: STS's default (an hour)
  std::vector<std::string> policy_arns, transitive_tag_keys;
  std::map<std::string, std::string> tags;
};

struct StsOptions {
  std::string region;    // the build's region: the regional STS endpoint, and the signing region
  std::string endpoint;  // "" = AWS_ENDPOINT_URL_STS, else https://sts.REGION.amazonaws.com
  bool tls_verify = true;
  int max_retries = 8;
  std::function<void(std::string_view)> log;
};

// The region an STS request to `endpoint` is signed for: us-east-1 for the global endpoint
// (https://sts.amazonaws.com accepts no other), else the build's region.
std::string sts_signing_region(const std::string& endpoint, const std::string& region);

// STS AssumeRole signed with `base`: the role's temporary credentials (key, secret, session
// token). STS's errors arrive as Ec2Error (code and message as STS wrote them).
Credentials assume_role(const Credentials& base, const AssumeRoleConfig& role, const StsOptions& options,
                        const CancelToken& cancel);

// What one credential_process printed (the SDKs' format, Version 1); throws BuildError saying
// what is wrong with it, never quoting it (it holds the secret).
Credentials parse_credential_process_output(std::string_view json, const std::string& source);

}  // namespace imgbake::amazon
