// The EC2 Query API over the project's HTTP transport: form-encoded POSTs signed with SigV4,
// XML answers, EC2's errors (code and message) as Ec2Error, throttling and 5xx retried with
// backoff. STS speaks the same Query protocol: the client serves it too (service "sts").
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "imgbake/cancel.h"
#include "imgbake/error.h"
#include "imgbake/http.h"
#include "sigv4.h"
#include "xml.h"

namespace imgbake::amazon {

// EC2 (or STS) answered with an error document: code ("InvalidAMIID.NotFound") and message, as
// the service wrote them.
class Ec2Error : public BuildError {
 public:
  Ec2Error(std::string action, std::string code, std::string message, long status)
      : BuildError(action + ": " + code + ": " + message),
        action_(std::move(action)),
        code_(std::move(code)),
        message_(std::move(message)),
        status_(status) {}
  const std::string& code() const { return code_; }
  const std::string& ec2_message() const { return message_; }
  long status() const { return status_; }

 private:
  std::string action_, code_, message_;
  long status_;
};

using Params = std::vector<std::pair<std::string, std::string>>;

class CredentialProvider;

struct ClientOptions {
  std::string service = "ec2";             // the signing name, and the default endpoint's first label
  std::string api_version = "2016-11-15";  // the Version parameter
  std::string region;
  std::string endpoint;  // "" = default_endpoint(service, region)
  bool tls_verify = true;
  int max_retries = 8;                        // throttling, 5xx and dropped connections
  std::function<void(std::string_view)> log;  // retries; never secrets
};

class Ec2Client {
 public:
  // Signs every attempt with the provider's current credentials; when EC2 or STS refuses them as
  // expired, asks the provider for fresh ones and tries once more.
  Ec2Client(std::shared_ptr<CredentialProvider> credentials, ClientOptions options, const CancelToken& cancel);
  Ec2Client(Credentials creds, ClientOptions options, const CancelToken& cancel);
  ~Ec2Client();
  Ec2Client(const Ec2Client&) = delete;
  Ec2Client& operator=(const Ec2Client&) = delete;

  // Calls Action with the given (already flattened: "Filter.1.Name") parameters. Throws
  // Ec2Error, Cancelled, or BuildError (transport, unreadable answer).
  XmlNode call(const std::string& action, const Params& params);
  const std::string& region() const { return options_.region; }
  const std::string& endpoint() const { return endpoint_; }

 private:
  std::shared_ptr<CredentialProvider> credentials_;
  ClientOptions options_;
  std::string endpoint_;
  const CancelToken& cancel_;
  std::unique_ptr<http::Session> session_;
};

// Whether an EC2 error is worth another try (throttling, EC2's transient server errors).
bool is_retryable(const std::string& code, long status);
// https://SERVICE.REGION.amazonaws.com, or .amazonaws.com.cn in the China regions (cn-*).
std::string default_endpoint(const std::string& service, const std::string& region);

// Whether EC2 or STS refused the request's credentials as expired.
bool is_expired_credentials(const std::string& code);

// application/x-www-form-urlencoded, as the Query API wants it.
std::string form_encode(const Params& params);

}  // namespace imgbake::amazon
