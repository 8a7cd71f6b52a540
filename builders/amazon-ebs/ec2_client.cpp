#include "ec2_client.h"

#include "credentials.h"

#include "imgbake/text_encoding.h"
#include "imgbake/util.h"

namespace imgbake::amazon {

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

std::string default_endpoint(const std::string& service, const std::string& region) {
  return "https://" + service + "." + region + (region.starts_with("cn-") ? ".amazonaws.com.cn" : ".amazonaws.com");
}

bool is_expired_credentials(const std::string& code) {
  return code == "RequestExpired" || code == "ExpiredToken" || code == "ExpiredTokenException";
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
    : Ec2Client(CredentialProvider::fixed(std::move(creds)), std::move(options), cancel) {}

Ec2Client::Ec2Client(std::shared_ptr<CredentialProvider> credentials, ClientOptions options, const CancelToken& cancel)
    : credentials_(std::move(credentials)), options_(std::move(options)), cancel_(cancel) {
  endpoint_ = options_.endpoint.empty() ? default_endpoint(options_.service, options_.region) : options_.endpoint;
  if (endpoint_.find("://") == std::string::npos) endpoint_ = "https://" + endpoint_;
  while (endpoint_.size() > 8 && endpoint_.back() == '/') endpoint_.pop_back();
  http::SessionOptions so;
  so.tls_verify = options_.tls_verify;
  so.log = options_.log;
  session_ = std::make_unique<http::Session>(so);
}

Ec2Client::~Ec2Client() = default;

XmlNode Ec2Client::call(const std::string& action, const Params& params) {
  Params all = {{"Action", action}, {"Version", options_.api_version}};
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

  bool refreshed = false;  // the credentials were refused as expired once and refreshed
  for (int attempt = 0;; ++attempt) {
    cancel_.throw_if_cancelled();
    Credentials creds = credentials_->current(cancel_);
    SigningRequest sr;
    sr.method = "POST";
    sr.path = path;
    sr.headers = {{"Content-Type", "application/x-www-form-urlencoded; charset=utf-8"}, {"Host", authority}};
    sr.body = body;
    SigningParams sp;
    sp.region = options_.region;
    sp.service = options_.service;
    sp.amz_date = amz_date_now();
    SignedRequest signed_req = sign_v4(sr, creds, sp);
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
      if (is_expired_credentials(code) && !refreshed && credentials_->invalidate(creds)) {
        refreshed = true;
        if (options_.log)
          options_.log(action + ": " + code + ": the credentials from " + creds.source +
                       " have expired: trying again with fresh ones");
        continue;
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
