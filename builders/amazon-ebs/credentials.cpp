#include "credentials.h"

#include <cctype>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>

#include <nlohmann/json.hpp>

#include "ec2_client.h"
#include "imgbake/error.h"
#include "imgbake/http.h"
#include "imgbake/process.h"
#include "imgbake/util.h"

namespace fs = std::filesystem;

namespace imgbake::amazon {
namespace {

using Ini = std::map<std::string, std::map<std::string, std::string>>;
using Section = std::map<std::string, std::string>;

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

fs::path home_file(const std::string& rel) {
  std::string home = env("HOME");
  return home.empty() ? fs::path() : fs::path(home) / rel;
}

// An INI file as the AWS SDKs read it: "[section]" headers, "key = value" lines, # and ; comments.
Ini read_ini(const fs::path& path) {
  Ini out;
  std::ifstream in(path);
  std::string line, section;
  while (std::getline(in, line)) {
    std::string t = util::trim(line);
    if (t.empty() || t[0] == '#' || t[0] == ';') continue;
    if (t.front() == '[' && t.back() == ']') {
      section = util::trim(t.substr(1, t.size() - 2));
      continue;
    }
    size_t eq = t.find('=');
    if (eq == std::string::npos) continue;
    out[section][util::trim(t.substr(0, eq))] = util::trim(t.substr(eq + 1));
  }
  return out;
}

std::string get(const Section& s, const char* key) {
  auto f = s.find(key);
  return f == s.end() ? std::string() : f->second;
}

std::string profile_name(const std::string& option) {
  if (!option.empty()) return option;
  std::string p = env("AWS_PROFILE");
  return p.empty() ? "default" : p;
}

fs::path config_file() {
  std::string f = env("AWS_CONFIG_FILE");
  return f.empty() ? home_file(".aws/config") : fs::path(f);
}

const Section* config_profile(const Ini& ini, const std::string& profile) {
  auto it = ini.find(profile == "default" ? "default" : "profile " + profile);
  if (it == ini.end()) it = ini.find(profile);
  return it == ini.end() ? nullptr : &it->second;
}

// The SDKs' credential_process: the command runs through the shell (as the Go SDK, Packer's,
// runs it), its standard output is the credentials as JSON, its standard error is shown on failure.
Credentials run_credential_process(const std::string& command, const std::string& where, const CancelToken& cancel) {
  ProcessSpec spec;
  spec.argv = {"/bin/sh", "-c", command};
  spec.timeout = std::chrono::minutes(5);
  std::string out;
  std::vector<std::string> err;
  int status = run_process(
      spec, [&](std::string_view line) { out.append(line).push_back('\n'); },
      [&](std::string_view line) {
        if (err.size() < 20) err.emplace_back(line);
      },
      cancel);
  if (status != 0)
    throw BuildError("credential_process of " + where + " exited with status " + std::to_string(status) +
                     (err.empty() ? "" : ": " + util::join(err, " | ")));
  return parse_credential_process_output(out, "credential_process of " + where);
}

// EC2's instance metadata service, version 2: a session token from PUT /latest/api/token, then the
// role's name and its credentials. Each request has a second, as the SDKs give it; nothing
// answering means "not on EC2". Returns nullopt with `why` set when it has none to give.
std::optional<Credentials> imds_credentials(const CancelToken& cancel, std::string& why) {
  std::string base = env("AWS_EC2_METADATA_SERVICE_ENDPOINT");
  if (base.empty()) base = "http://169.254.169.254";
  while (base.size() > 8 && base.back() == '/') base.pop_back();
  http::SessionOptions so;
  so.timeout = std::chrono::seconds(1);
  http::Session session(so);
  auto send = [&](const std::string& method, const std::string& path, const std::string& header) {
    http::Request req;
    req.method = method;
    req.url = base + path;
    req.headers.push_back(header);
    if (method == "PUT") req.body = http::Body::of_bytes("");
    req.cancel = &cancel;
    req.max_redirects = 0;
    return session.send(req);
  };
  const std::string where = "instance metadata (IMDSv2) at " + base;
  try {
    http::Response tok = send("PUT", "/latest/api/token", "X-aws-ec2-metadata-token-ttl-seconds: 21600");
    if (tok.status != 200) {
      why = where + ": a session token was refused (HTTP " + std::to_string(tok.status) + ")";
      return std::nullopt;
    }
    std::string header = "X-aws-ec2-metadata-token: " + util::trim(tok.body);
    http::Response roles = send("GET", "/latest/meta-data/iam/security-credentials/", header);
    std::string role = util::trim(roles.body.substr(0, roles.body.find('\n')));
    if (roles.status == 404 || (roles.status == 200 && role.empty())) {
      why = where + ": the instance has no IAM role (instance profile)";
      return std::nullopt;
    }
    if (roles.status != 200) {
      why = where + ": the role's name could not be read (HTTP " + std::to_string(roles.status) + ")";
      return std::nullopt;
    }
    http::Response creds = send("GET", "/latest/meta-data/iam/security-credentials/" + role, header);
    if (creds.status != 200) {
      why = where + ": the credentials of role '" + role + "' could not be read (HTTP " + std::to_string(creds.status) +
            ")";
      return std::nullopt;
    }
    nlohmann::json j = nlohmann::json::parse(creds.body, nullptr, false);
    if (!j.is_object() || j.value("Code", "") != "Success" || !j.contains("AccessKeyId") ||
        !j.contains("SecretAccessKey") || !j["AccessKeyId"].is_string() || !j["SecretAccessKey"].is_string())
      throw BuildError(where + ": the credentials of role '" + role + "' are not the JSON EC2 gives" +
                       (j.is_object() && j.contains("Code") && j["Code"].is_string()
                            ? " (Code " + j["Code"].get<std::string>() + ")"
                            : ""));
    Credentials out{j["AccessKeyId"].get<std::string>(), j["SecretAccessKey"].get<std::string>(),
                    j.contains("Token") && j["Token"].is_string() ? j["Token"].get<std::string>() : "",
                    "role '" + role + "' from the " + where};
    if (j.contains("Expiration") && j["Expiration"].is_string())
      out.expires = parse_aws_time(j["Expiration"].get<std::string>());
    return out;
  } catch (const http::TransportError& e) {
    why = where + ": no answer (not on EC2?): " + e.what();
    return std::nullopt;
  }
}

}  // namespace

Credentials parse_credential_process_output(std::string_view text, const std::string& source) {
  nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (!j.is_object()) throw BuildError(source + " did not print a JSON object on its standard output");
  if (!j.contains("Version") || j["Version"] != 1)
    throw BuildError(source + " printed JSON without \"Version\": 1 (the only version the AWS SDKs know)");
  auto str = [&](const char* k) { return j.contains(k) && j[k].is_string() ? j[k].get<std::string>() : std::string(); };
  if (str("AccessKeyId").empty() || str("SecretAccessKey").empty())
    throw BuildError(source + " printed JSON without AccessKeyId or SecretAccessKey");
  Credentials out{str("AccessKeyId"), str("SecretAccessKey"), str("SessionToken"), source};
  // Optional: without it the credentials are taken as long-lived, as the SDKs take them.
  if (!str("Expiration").empty()) {
    out.expires = parse_aws_time(str("Expiration"));
    if (!out.expires) throw BuildError(source + " printed an Expiration that is not an RFC 3339 time");
  }
  return out;
}

std::optional<std::chrono::system_clock::time_point> parse_aws_time(std::string_view text) {
  auto secs = util::parse_rfc3339_seconds(text);
  if (!secs) return std::nullopt;
  return std::chrono::system_clock::time_point(std::chrono::seconds(*secs));
}

CredentialProvider::CredentialProvider(Resolve resolve, std::function<void(std::string_view)> log)
    : resolve_(std::move(resolve)), log_(std::move(log)) {}

std::shared_ptr<CredentialProvider> CredentialProvider::fixed(Credentials creds) {
  return std::make_shared<CredentialProvider>([creds](const CancelToken&) { return creds; });
}

Credentials CredentialProvider::current(const CancelToken& cancel) {
  std::lock_guard lock(mu_);
  auto now = std::chrono::system_clock::now();
  if (creds_ && creds_->expires && now >= refresh_at_) {
    if (log_)
      log_("the credentials from " + creds_->source + " expire at " + util::format_rfc3339(*creds_->expires) +
           ": resolving them again");
    creds_.reset();
  }
  if (!creds_) {
    creds_ = resolve_(cancel);
    if (creds_->expires) {
      auto left = *creds_->expires - std::chrono::system_clock::now();
      refresh_at_ = *creds_->expires - std::min<std::chrono::system_clock::duration>(std::chrono::minutes(5), left / 2);
    }
  }
  return *creds_;
}

bool CredentialProvider::invalidate(const Credentials& rejected) {
  std::lock_guard lock(mu_);
  if (!creds_) return true;
  if (creds_->access_key != rejected.access_key) return true;  // another client refreshed them already
  if (!creds_->expires) return false;
  creds_.reset();
  return true;
}

Credentials resolve_credentials(const CredentialSources& s, const CancelToken& cancel) {
  std::vector<std::string> looked;
  if (!s.access_key.empty() || !s.secret_key.empty()) {
    if (s.access_key.empty() || s.secret_key.empty())
      throw BuildError("give both access_key and secret_key, or neither (to use the environment or a profile)");
    return {s.access_key, s.secret_key, s.token, "the builder's access_key/secret_key"};
  }
  looked.emplace_back("the options access_key/secret_key");
  std::string ak = env("AWS_ACCESS_KEY_ID"), sk = env("AWS_SECRET_ACCESS_KEY");
  if (ak.empty()) ak = env("AWS_ACCESS_KEY");
  if (sk.empty()) sk = env("AWS_SECRET_KEY");
  if (!ak.empty() && !sk.empty()) return {ak, sk, env("AWS_SESSION_TOKEN"), "the environment (AWS_ACCESS_KEY_ID)"};
  looked.emplace_back("the environment (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)");

  // A profile's keys, else its credential_process; nullopt when it has neither.
  auto from_profile = [&](const Section& p, const std::string& where) -> std::optional<Credentials> {
    if (!get(p, "aws_access_key_id").empty() && !get(p, "aws_secret_access_key").empty())
      return Credentials{get(p, "aws_access_key_id"), get(p, "aws_secret_access_key"), get(p, "aws_session_token"),
                         where};
    if (!get(p, "credential_process").empty())
      return run_credential_process(get(p, "credential_process"), where, cancel);
    if (!get(p, "role_arn").empty() || !get(p, "sso_start_url").empty() || !get(p, "sso_session").empty())
      throw BuildError(where +
                       " uses role_arn or SSO, which imgbake does not support: give keys or a "
                       "credential_process there, or the builder's assume_role block");
    return std::nullopt;
  };

  std::string profile = profile_name(s.profile);
  fs::path cred_file = !s.shared_credentials_file.empty()            ? fs::path(s.shared_credentials_file)
                       : !env("AWS_SHARED_CREDENTIALS_FILE").empty() ? fs::path(env("AWS_SHARED_CREDENTIALS_FILE"))
                                                                     : home_file(".aws/credentials");
  std::error_code ec;
  std::string cred_where =
      "profile '" + profile + "' in " + (cred_file.empty() ? "~/.aws/credentials" : cred_file.string());
  // The SDKs merge a profile's settings from both files, the credentials file's winning: keys
  // there, else (keys or credential_process) in the merged profile.
  Section from_credentials_file;
  if (!cred_file.empty() && fs::exists(cred_file, ec)) {
    auto ini = read_ini(cred_file);
    auto it = ini.find(profile);
    if (it != ini.end()) {
      from_credentials_file = it->second;
      if (!get(it->second, "aws_access_key_id").empty() || !get(it->second, "credential_process").empty())
        if (auto c = from_profile(it->second, cred_where)) return *c;
    }
  }
  looked.push_back(cred_where);
  fs::path cfg = config_file();
  std::string cfg_where = "profile '" + profile + "' in " + (cfg.empty() ? "~/.aws/config" : cfg.string());
  Section merged;
  if (!cfg.empty() && fs::exists(cfg, ec)) {
    auto ini = read_ini(cfg);
    if (const auto* p = config_profile(ini, profile)) merged = *p;
  }
  for (const auto& [k, v] : from_credentials_file) merged[k] = v;
  if (!merged.empty())
    if (auto c = from_profile(merged, cfg_where)) return *c;
  looked.push_back(cfg_where);

  std::string disabled = env("AWS_EC2_METADATA_DISABLED");
  for (char& ch : disabled) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  if (s.skip_metadata_api_check) {
    looked.emplace_back("not the instance metadata service (skip_metadata_api_check)");
  } else if (disabled == "true") {
    looked.emplace_back("not the instance metadata service (AWS_EC2_METADATA_DISABLED is true)");
  } else {
    std::string why;
    if (auto c = imds_credentials(cancel, why)) return *c;
    looked.push_back(why);
  }
  throw BuildError("no AWS credentials found; looked in " + util::join(looked, ", "));
}

std::string default_region(const std::string& profile_option) {
  for (const char* v : {"AWS_REGION", "AWS_DEFAULT_REGION"})
    if (!env(v).empty()) return env(v);
  fs::path cfg = config_file();
  std::error_code ec;
  if (cfg.empty() || !fs::exists(cfg, ec)) return "";
  auto ini = read_ini(cfg);
  if (const auto* p = config_profile(ini, profile_name(profile_option))) return get(*p, "region");
  return "";
}

std::string sts_signing_region(const std::string& endpoint, const std::string& region) {
  std::string url = endpoint.find("://") == std::string::npos ? "https://" + endpoint : endpoint;
  std::string host = http::authority_of(url);
  if (host.ends_with(":443")) host.resize(host.size() - 4);
  return host == "sts.amazonaws.com" ? "us-east-1" : region;
}

Credentials assume_role(const Credentials& base, const AssumeRoleConfig& role, const StsOptions& o,
                        const CancelToken& cancel) {
  ClientOptions co;
  co.service = "sts";
  co.api_version = "2011-06-15";
  co.endpoint = o.endpoint.empty() ? env("AWS_ENDPOINT_URL_STS") : o.endpoint;
  co.region = sts_signing_region(co.endpoint, o.region);
  co.tls_verify = o.tls_verify;
  co.max_retries = o.max_retries;
  co.log = o.log;
  Ec2Client sts(base, co, cancel);
  std::string session = role.session_name;
  if (session.empty())
    session = "imgbake-" + std::to_string(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                              std::chrono::system_clock::now().time_since_epoch())
                                              .count());
  Params p = {{"RoleArn", role.role_arn}, {"RoleSessionName", session}};
  if (role.duration_seconds > 0) p.emplace_back("DurationSeconds", std::to_string(role.duration_seconds));
  if (!role.external_id.empty()) p.emplace_back("ExternalId", role.external_id);
  if (!role.policy.empty()) p.emplace_back("Policy", role.policy);
  int i = 1;
  for (const auto& arn : role.policy_arns) p.emplace_back("PolicyArns.member." + std::to_string(i++) + ".arn", arn);
  i = 1;
  for (const auto& [k, v] : role.tags) {
    p.emplace_back("Tags.member." + std::to_string(i) + ".Key", k);
    p.emplace_back("Tags.member." + std::to_string(i++) + ".Value", v);
  }
  i = 1;
  for (const auto& k : role.transitive_tag_keys) p.emplace_back("TransitiveTagKeys.member." + std::to_string(i++), k);
  XmlNode doc = sts.call("AssumeRole", p);
  Credentials out{
      doc.at("AssumeRoleResult/Credentials/AccessKeyId"), doc.at("AssumeRoleResult/Credentials/SecretAccessKey"),
      doc.at("AssumeRoleResult/Credentials/SessionToken"), "role " + role.role_arn + " assumed with " + base.source};
  if (out.access_key.empty() || out.secret_key.empty() || out.token.empty())
    throw BuildError("AssumeRole: the answer of " + sts.endpoint() + " holds no credentials");
  out.expires = parse_aws_time(doc.at("AssumeRoleResult/Credentials/Expiration"));
  // STS always says when; without it, an hour (its default) is the safe guess.
  if (!out.expires)
    out.expires = std::chrono::system_clock::now() +
                  std::chrono::seconds(role.duration_seconds > 0 ? role.duration_seconds : 3600);
  return out;
}

}  // namespace imgbake::amazon
