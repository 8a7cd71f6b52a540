#include "ec2_client.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>

#include "imgbake/text_encoding.h"
#include "imgbake/util.h"

namespace fs = std::filesystem;

namespace imgbake::amazon {
namespace {

constexpr const char* kApiVersion = "2016-11-15";

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

fs::path home_file(const std::string& rel) {
  std::string home = env("HOME");
  return home.empty() ? fs::path() : fs::path(home) / rel;
}

// An INI file as the AWS SDKs read it: "[section]" headers, "key = value" lines, # and ; comments.
std::map<std::string, std::map<std::string, std::string>> read_ini(const fs::path& path) {
  std::map<std::string, std::map<std::string, std::string>> out;
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

std::string profile_name(const std::string& option) {
  if (!option.empty()) return option;
  std::string p = env("AWS_PROFILE");
  return p.empty() ? "default" : p;
}

fs::path config_file() {
  std::string f = env("AWS_CONFIG_FILE");
  return f.empty() ? home_file(".aws/config") : fs::path(f);
}

const std::map<std::string, std::string>* config_profile(
    const std::map<std::string, std::map<std::string, std::string>>& ini, const std::string& profile) {
  auto it = ini.find(profile == "default" ? "default" : "profile " + profile);
  if (it == ini.end()) it = ini.find(profile);
  return it == ini.end() ? nullptr : &it->second;
}

}  // namespace

Credentials resolve_credentials(const CredentialSources& s) {
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
  std::string profile = profile_name(s.profile);
  fs::path cred_file = !s.shared_credentials_file.empty()            ? fs::path(s.shared_credentials_file)
                       : !env("AWS_SHARED_CREDENTIALS_FILE").empty() ? fs::path(env("AWS_SHARED_CREDENTIALS_FILE"))
                                                                     : home_file(".aws/credentials");
  std::error_code ec;
  if (!cred_file.empty() && fs::exists(cred_file, ec)) {
    auto ini = read_ini(cred_file);
    auto it = ini.find(profile);
    if (it != ini.end()) {
      auto& p = it->second;
      if (!p["aws_access_key_id"].empty() && !p["aws_secret_access_key"].empty())
        return {p["aws_access_key_id"], p["aws_secret_access_key"], p["aws_session_token"],
                "profile '" + profile + "' in " + cred_file.string()};
      throw BuildError("profile '" + profile + "' in " + cred_file.string() +
                       " lacks aws_access_key_id or aws_secret_access_key");
    }
  }
  looked.push_back("profile '" + profile + "' in " + (cred_file.empty() ? "~/.aws/credentials" : cred_file.string()));
  fs::path cfg = config_file();
  if (!cfg.empty() && fs::exists(cfg, ec)) {
    auto ini = read_ini(cfg);
    if (const auto* p = config_profile(ini, profile)) {
      auto get = [&](const char* k) {
        auto f = p->find(k);
        return f == p->end() ? std::string() : f->second;
      };
      if (!get("aws_access_key_id").empty() && !get("aws_secret_access_key").empty())
        return {get("aws_access_key_id"), get("aws_secret_access_key"), get("aws_session_token"),
                "profile '" + profile + "' in " + cfg.string()};
      if (!get("role_arn").empty() || !get("credential_process").empty() || !get("sso_start_url").empty())
        throw BuildError("profile '" + profile + "' in " + cfg.string() +
                         " uses role_arn, credential_process or SSO, which imgbake does not support yet: give keys");
    }
  }
  looked.push_back("profile '" + profile + "' in " + (cfg.empty() ? "~/.aws/config" : cfg.string()));
  throw BuildError("no AWS credentials found; looked in " + util::join(looked, ", ") +
                   " (instance metadata and assume_role are not supported yet)");
}

std::string default_region(const std::string& profile_option) {
  for (const char* v : {"AWS_REGION", "AWS_DEFAULT_REGION"})
    if (!env(v).empty()) return env(v);
  fs::path cfg = config_file();
  std::error_code ec;
  if (cfg.empty() || !fs::exists(cfg, ec)) return "";
  auto ini = read_ini(cfg);
  if (const auto* p = config_profile(ini, profile_name(profile_option))) {
    auto f = p->find("region");
    if (f != p->end()) return f->second;
  }
  return "";
}

bool is_retryable(const std::string& code, long status) {
  static const char* const kCodes[] = {"RequestLimitExceeded",
                                       "Throttling",
                                       "ThrottlingException",
                                       "RequestThrottled",
                                       "InternalError",
                                       "InternalFailure",
                                       "ServiceUnavailable",
                                       "Unavailable",
                                       "InsufficientAddressCapacity",
                                       "EC2ThrottledException",
                                       "RequestThrottledException"};
  for (const char* c : kCodes)
    if (code == c) return true;
  return status >= 500;
}

std::string form_encode(const Params& params) {
  std::string out;
  for (const auto& [k, v] : params) {
    if (!out.empty()) out += '&';
    out += util::percent_encode(k) + "=" + util::percent_encode(v);
  }
  return out;
}

Ec2Client::Ec2Client(Credentials creds, ClientOptions options, const CancelToken& cancel)
    : creds_(std::move(creds)), options_(std::move(options)), cancel_(cancel) {
  endpoint_ = options_.endpoint.empty() ? "https://ec2." + options_.region + ".amazonaws.com" : options_.endpoint;
  if (endpoint_.find("://") == std::string::npos) endpoint_ = "https://" + endpoint_;
  while (endpoint_.size() > 8 && endpoint_.back() == '/') endpoint_.pop_back();
  http::SessionOptions so;
  so.tls_verify = options_.tls_verify;
  so.log = options_.log;
  session_ = std::make_unique<http::Session>(so);
}

Ec2Client::~Ec2Client() = default;

XmlNode Ec2Client::call(const std::string& action, const Params& params) {
  Params all = {{"Action", action}, {"Version", kApiVersion}};
  all.insert(all.end(), params.begin(), params.end());
  std::string body = form_encode(all);
  // The Host header is the endpoint's authority, the scheme's default port left out.
  std::string authority = http::authority_of(endpoint_);
  if (endpoint_.rfind("https://", 0) == 0 && authority.size() > 4 && authority.ends_with(":443"))
    authority.resize(authority.size() - 4);
  if (endpoint_.rfind("http://", 0) == 0 && authority.size() > 3 && authority.ends_with(":80"))
    authority.resize(authority.size() - 3);
  size_t path_at = endpoint_.find('/', endpoint_.find("://") + 3);
  std::string path = path_at == std::string::npos ? "/" : endpoint_.substr(path_at);
  std::string url = endpoint_ + (path_at == std::string::npos ? "/" : "");

  for (int attempt = 0;; ++attempt) {
    cancel_.throw_if_cancelled();
    SigningRequest sr;
    sr.method = "POST";
    sr.path = path;
    sr.headers = {{"Content-Type", "application/x-www-form-urlencoded; charset=utf-8"}, {"Host", authority}};
    sr.body = body;
    SigningParams sp;
    sp.region = options_.region;
    sp.service = "ec2";
    sp.amz_date = amz_date_now();
    SignedRequest signed_req = sign_v4(sr, creds_, sp);
    http::Request req;
    req.method = "POST";
    req.url = url;
    for (const auto& [k, v] : sr.headers) req.headers.push_back(k + ": " + v);
    for (const auto& [k, v] : signed_req.added_headers) req.headers.push_back(k + ": " + v);
    req.body = http::Body::of_bytes(body);
    req.cancel = &cancel_;
    req.max_redirects = 0;
    std::string code, message;
    long status = 0;
    try {
      http::Response resp = session_->send(req);
      status = resp.status;
      if (status >= 200 && status < 300) {
        try {
          return parse_xml(resp.body);
        } catch (const std::exception& e) {
          throw BuildError(action + ": the answer of " + endpoint_ + " is not EC2's XML (" + e.what() + ")");
        }
      }
      try {
        XmlNode doc = parse_xml(resp.body);
        const XmlNode* err = doc.child("Errors") ? doc.child("Errors")->child("Error") : doc.child("Error");
        if (err) {
          code = err->at("Code");
          message = err->at("Message");
        }
      } catch (const std::exception&) {
      }
      if (code.empty()) {
        code = "HTTP" + std::to_string(status);
        message = "the endpoint " + endpoint_ + " answered HTTP " + std::to_string(status) + " without an EC2 error";
      }
      if (!is_retryable(code, status) || attempt >= options_.max_retries) throw Ec2Error(action, code, message, status);
    } catch (const http::TransportError& e) {
      if (attempt >= options_.max_retries || e.tls_failed())
        throw BuildError(action + ": cannot reach " + endpoint_ + ": " + e.what());
      code = "connection";
      message = e.what();
    }
    auto delay = http::backoff_delay(attempt);
    if (options_.log)
      options_.log(action + ": " + code + " (" + message + "): trying again in " + util::format_duration(delay) +
                   " (retry " + std::to_string(attempt + 1) + " of " + std::to_string(options_.max_retries) + ")");
    cancel_.sleep_for(delay);
  }
}

}  // namespace imgbake::amazon
