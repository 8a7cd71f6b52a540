// The amazon-ebs builder's EC2 plumbing: the XML reader, the Query API client (signing, retries,
// EC2's errors) against the test HTTP server, and the credential chain (files, credential_process,
// IMDSv2 and STS AssumeRole against the test HTTP server).
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <functional>
#include <thread>

#include "amazon-ebs/credentials.h"
#include "amazon-ebs/ec2_client.h"
#include "amazon-ebs/xml.h"
#include "http_test_server.h"

namespace fs = std::filesystem;
using imgbake::amazon::Credentials;
using imgbake::amazon::CredentialSources;
using imgbake::amazon::Ec2Client;
using imgbake::amazon::Ec2Error;
using imgbake::amazon::parse_xml;
using imgbake::amazon::resolve_credentials;

TEST(AmazonXml, ReadsEc2AnswersWithListsAndEntities) {
  auto doc = parse_xml(R"(<?xml version="1.0" encoding="UTF-8"?>
<DescribeImagesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
  <requestId>r-1</requestId>
  <imagesSet>
    <item><imageId>ami-1</imageId><name>a &amp; b &#x263A;</name><imageState>available</imageState></item>
    <item><imageId>ami-2</imageId><description><![CDATA[<raw>]]></description><empty/></item>
  </imagesSet>
</DescribeImagesResponse>)");
  EXPECT_EQ(doc.name, "DescribeImagesResponse");
  auto items = doc.items("imagesSet");
  ASSERT_EQ(items.size(), 2u);
  EXPECT_EQ(items[0]->at("name"), "a & b \xE2\x98\xBA");
  EXPECT_EQ(items[0]->at("imageState"), "available");
  EXPECT_EQ(items[1]->at("description"), "<raw>");
  EXPECT_EQ(items[1]->at("missing/deeper"), "");
  EXPECT_TRUE(doc.items("nothing").empty());
}

TEST(AmazonXml, RefusesMalformedDocumentsAndDtds) {
  EXPECT_THROW(parse_xml("<a><b></a>"), std::runtime_error);
  EXPECT_THROW(parse_xml("<a>"), std::runtime_error);
  EXPECT_THROW(parse_xml("<a>&bogus;</a>"), std::runtime_error);
  EXPECT_THROW(parse_xml("<!DOCTYPE a [<!ENTITY x 'y'>]><a>&x;</a>"), std::runtime_error);
  EXPECT_THROW(parse_xml("<a/><b/>"), std::runtime_error);
}

namespace {

using http_test_server::HttpAnswer;
using http_test_server::HttpRequest;
using http_test_server::TestHttpServer;

const Credentials kCreds{"AKIDUNITTEST", "unit/secret+KEY", "", "test"};

std::string error_doc(const std::string& code, const std::string& message) {
  return "<Response><Errors><Error><Code>" + code + "</Code><Message>" + message +
         "</Message></Error></Errors><RequestID>x</RequestID></Response>";
}

imgbake::amazon::ClientOptions options(int port, int retries) {
  imgbake::amazon::ClientOptions o;
  o.region = "eu-west-1";
  o.endpoint = "http://127.0.0.1:" + std::to_string(port);
  o.max_retries = retries;
  return o;
}

}  // namespace

TEST(AmazonEc2Client, SignsPostsAndRetriesThrottling) {
  int calls = 0;
  TestHttpServer server([&](const HttpRequest&) -> std::optional<HttpAnswer> {
    if (++calls <= 2) return HttpAnswer{503, {}, error_doc("RequestLimitExceeded", "Request limit exceeded.")};
    return HttpAnswer{200,
                      {},
                      "<RunInstancesResponse><instancesSet><item><instanceId>i-1</instanceId></item>"
                      "</instancesSet></RunInstancesResponse>"};
  });
  std::vector<std::string> log;
  auto o = options(server.port(), 3);
  o.log = [&](std::string_view l) { log.emplace_back(l); };
  imgbake::CancelToken cancel;
  Ec2Client client(kCreds, o, cancel);
  auto doc = client.call("RunInstances", {{"ImageId", "ami-1"}, {"MinCount", "1"}});
  EXPECT_EQ(doc.items("instancesSet").at(0)->at("instanceId"), "i-1");
  auto reqs = server.requests();
  ASSERT_EQ(reqs.size(), 3u);
  for (const auto& r : reqs) {
    EXPECT_EQ(r.method, "POST");
    EXPECT_EQ(r.header("content-type"), "application/x-www-form-urlencoded; charset=utf-8");
    EXPECT_EQ(r.header("authorization").rfind("AWS4-HMAC-SHA256 Credential=AKIDUNITTEST/", 0), 0u);
    EXPECT_NE(
        r.header("authorization").find("/eu-west-1/ec2/aws4_request, SignedHeaders=content-type;host;x-amz-date,"),
        std::string::npos);
    for (const auto& [k, v] : r.headers) EXPECT_EQ(v.find("unit/secret"), std::string::npos) << k;
  }
  ASSERT_EQ(log.size(), 2u);
  EXPECT_NE(log[0].find("RunInstances: RequestLimitExceeded (Request limit exceeded.): trying again in"),
            std::string::npos);
}

TEST(AmazonEc2Client, ShowsEc2sErrorCodeAndMessageWithoutRetrying) {
  TestHttpServer server([&](const HttpRequest&) -> std::optional<HttpAnswer> {
    return HttpAnswer{400, {}, error_doc("InvalidAMIID.NotFound", "The image id '[ami-x]' does not exist")};
  });
  imgbake::CancelToken cancel;
  Ec2Client client(kCreds, options(server.port(), 3), cancel);
  try {
    client.call("DescribeImages", {{"ImageId.1", "ami-x"}});
    FAIL() << "no error";
  } catch (const Ec2Error& e) {
    EXPECT_EQ(e.code(), "InvalidAMIID.NotFound");
    EXPECT_STREQ(e.what(), "DescribeImages: InvalidAMIID.NotFound: The image id '[ami-x]' does not exist");
  }
  EXPECT_EQ(server.requests().size(), 1u);
}

TEST(AmazonEc2Client, FormEncodingIsRfc3986) {
  EXPECT_EQ(imgbake::amazon::form_encode({{"Filter.1.Value.1", "a b/*"}, {"K", "~_-."}}),
            "Filter.1.Value.1=a%20b%2F%2A&K=~_-.");
}

namespace {

class AmazonCredentials : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* v : kVars) {
      if (const char* old = getenv(v)) saved_[v] = old;
      unsetenv(v);
    }
    home_ = fs::temp_directory_path() / ("imgbake-aws-" + std::to_string(getpid()));
    fs::create_directories(home_ / ".aws");
    setenv("HOME", home_.c_str(), 1);
    // The chain ends at the instance metadata service: never 169.254.169.254 from a test.
    setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
  }
  void TearDown() override {
    for (const char* v : kVars) unsetenv(v);
    for (const auto& [k, v] : saved_) setenv(k.c_str(), v.c_str(), 1);
    fs::remove_all(home_);
  }
  void write(const std::string& rel, const std::string& text) { std::ofstream(home_ / rel) << text; }

  static constexpr const char* kVars[] = {"HOME",
                                          "AWS_ACCESS_KEY_ID",
                                          "AWS_SECRET_ACCESS_KEY",
                                          "AWS_ACCESS_KEY",
                                          "AWS_SECRET_KEY",
                                          "AWS_SESSION_TOKEN",
                                          "AWS_PROFILE",
                                          "AWS_SHARED_CREDENTIALS_FILE",
                                          "AWS_CONFIG_FILE",
                                          "AWS_REGION",
                                          "AWS_DEFAULT_REGION",
                                          "AWS_EC2_METADATA_SERVICE_ENDPOINT",
                                          "AWS_EC2_METADATA_DISABLED",
                                          "AWS_ENDPOINT_URL_STS"};
  std::map<std::string, std::string> saved_;
  fs::path home_;
};

}  // namespace

TEST_F(AmazonCredentials, OptionsThenEnvironmentThenCredentialsFileThenConfigFile) {
  write(".aws/credentials",
        "[default]\naws_access_key_id = AKFILE\naws_secret_access_key = sfile\n"
        "[ci]\naws_access_key_id=AKCI\naws_secret_access_key=sci\naws_session_token=tci\n");
  write(".aws/config",
        "[default]\nregion = eu-north-1\n[profile cfg]\naws_access_key_id = AKCFG\n"
        "aws_secret_access_key = scfg\nregion = ap-south-1\n");
  EXPECT_EQ(resolve_credentials({"AKOPT", "sopt", "", "", ""}).access_key, "AKOPT");
  EXPECT_THROW(resolve_credentials({"AKOPT", "", "", "", ""}), imgbake::BuildError);
  EXPECT_EQ(resolve_credentials({}).access_key, "AKFILE");
  auto ci = resolve_credentials({"", "", "", "ci", ""});
  EXPECT_EQ(ci.access_key, "AKCI");
  EXPECT_EQ(ci.token, "tci");
  EXPECT_EQ(ci.source, "profile 'ci' in " + (home_ / ".aws/credentials").string());
  setenv("AWS_PROFILE", "cfg", 1);
  EXPECT_EQ(resolve_credentials({}).access_key, "AKCFG");
  EXPECT_EQ(imgbake::amazon::default_region(""), "ap-south-1");
  setenv("AWS_ACCESS_KEY_ID", "AKENV", 1);
  setenv("AWS_SECRET_ACCESS_KEY", "senv", 1);
  EXPECT_EQ(resolve_credentials({}).access_key, "AKENV");
  setenv("AWS_REGION", "us-east-2", 1);
  EXPECT_EQ(imgbake::amazon::default_region(""), "us-east-2");
}

TEST_F(AmazonCredentials, NoneFoundNamesEveryPlaceLooked) {
  try {
    resolve_credentials({"", "", "", "missing", ""});
    FAIL() << "no error";
  } catch (const imgbake::BuildError& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("no AWS credentials found; looked in the options access_key/secret_key, the environment"),
              std::string::npos)
        << m;
    EXPECT_NE(m.find("profile 'missing' in " + (home_ / ".aws/credentials").string()), std::string::npos) << m;
    EXPECT_NE(m.find("profile 'missing' in " + (home_ / ".aws/config").string()), std::string::npos) << m;
    EXPECT_NE(m.find("not the instance metadata service (AWS_EC2_METADATA_DISABLED is true)"), std::string::npos) << m;
  }
}

TEST_F(AmazonCredentials, CredentialProcessPrintsVersion1Json) {
  write("print-creds.sh",
        "#!/bin/sh\necho \"called with $1\" >&2\n"
        "printf '{\"Version\": 1, \"AccessKeyId\": \"AKPROC\", \"SecretAccessKey\": \"sproc\", "
        "\"SessionToken\": \"tproc\", \"Expiration\": \"2030-01-01T00:00:00Z\"}'\n");
  write("fail.sh", "#!/bin/sh\necho 'no session: run login first' >&2\nexit 3\n");
  write("old.sh", "#!/bin/sh\necho '{\"Version\": 2, \"AccessKeyId\": \"a\", \"SecretAccessKey\": \"leaked?\"}'\n");
  std::string sh = "sh " + home_.string() + "/";
  write(".aws/config", "[profile proc]\ncredential_process = " + sh + "print-creds.sh arg\n[profile fail]\n" +
                           "credential_process = " + sh + "fail.sh\n[profile old]\ncredential_process = " + sh +
                           "old.sh\n[profile sso]\nsso_start_url = https://x\n");
  auto c = resolve_credentials({"", "", "", "proc", ""});
  EXPECT_EQ(c.access_key, "AKPROC");
  EXPECT_EQ(c.secret_key, "sproc");
  EXPECT_EQ(c.token, "tproc");
  EXPECT_EQ(c.source, "credential_process of profile 'proc' in " + (home_ / ".aws/config").string());
  auto message = [](const std::function<void()>& f) -> std::string {
    try {
      f();
    } catch (const imgbake::BuildError& e) {
      return e.what();
    }
    return "no error";
  };
  EXPECT_EQ(message([] {
              resolve_credentials({"", "", "", "fail", ""});
            }),
            "credential_process of profile 'fail' in " + (home_ / ".aws/config").string() +
                " exited with status 3: no session: run login first");
  std::string old = message([] { resolve_credentials({"", "", "", "old", ""}); });
  EXPECT_NE(old.find("printed JSON without \"Version\": 1"), std::string::npos) << old;
  EXPECT_EQ(old.find("leaked?"), std::string::npos) << old;
  EXPECT_NE(message([] {
              resolve_credentials({"", "", "", "sso", ""});
            }).find("uses role_arn or SSO"),
            std::string::npos);
  EXPECT_THROW(imgbake::amazon::parse_credential_process_output("not json", "x"), imgbake::BuildError);
}

TEST_F(AmazonCredentials, InstanceMetadataV2IsLastWithATokenOnEveryRead) {
  std::atomic<bool> has_role = true;
  TestHttpServer imds([&](const HttpRequest& r) -> std::optional<HttpAnswer> {
    if (r.method == "PUT" && r.target == "/latest/api/token")
      return r.header("x-aws-ec2-metadata-token-ttl-seconds") == "21600" ? HttpAnswer{200, {}, "TOKEN-1"}
                                                                         : HttpAnswer{400, {}, ""};
    if (r.header("x-aws-ec2-metadata-token") != "TOKEN-1") return HttpAnswer{401, {}, ""};
    if (r.target == "/latest/meta-data/iam/security-credentials/")
      return has_role ? HttpAnswer{200, {}, "builder-role\n"} : HttpAnswer{404, {}, ""};
    if (r.target == "/latest/meta-data/iam/security-credentials/builder-role")
      return HttpAnswer{200,
                        {},
                        R"({"Code": "Success", "Type": "AWS-HMAC", "AccessKeyId": "ASIAIMDS",
                            "SecretAccessKey": "simds", "Token": "timds", "Expiration": "2030-01-01T00:00:00Z"})"};
    return HttpAnswer{404, {}, ""};
  });
  unsetenv("AWS_EC2_METADATA_DISABLED");
  std::string endpoint = "http://127.0.0.1:" + std::to_string(imds.port());
  setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", endpoint.c_str(), 1);
  auto c = resolve_credentials({});
  EXPECT_EQ(c.access_key, "ASIAIMDS");
  EXPECT_EQ(c.token, "timds");
  EXPECT_EQ(c.source, "role 'builder-role' from the instance metadata (IMDSv2) at " + endpoint);
  EXPECT_EQ(c.expires, imgbake::amazon::parse_aws_time("2030-01-01T00:00:00Z"));
  auto reqs = imds.requests();
  ASSERT_EQ(reqs.size(), 3u);
  EXPECT_EQ(reqs[0].method, "PUT");
  // Anything earlier in the chain wins without asking the metadata service.
  setenv("AWS_ACCESS_KEY_ID", "AKENV", 1);
  setenv("AWS_SECRET_ACCESS_KEY", "senv", 1);
  EXPECT_EQ(resolve_credentials({}).access_key, "AKENV");
  EXPECT_EQ(imds.requests().size(), 3u);
  unsetenv("AWS_ACCESS_KEY_ID");
  has_role = false;
  try {
    resolve_credentials({});
    FAIL() << "no error";
  } catch (const imgbake::BuildError& e) {
    EXPECT_NE(std::string(e.what()).find("instance metadata (IMDSv2) at " + endpoint +
                                         ": the instance has no IAM role (instance profile)"),
              std::string::npos)
        << e.what();
  }
}

TEST_F(AmazonCredentials, InstanceMetadataThatDoesNotAnswerMeansNotOnEc2) {
  int port = 0;
  int fd = http_test_server::ListenOnLoopback(port);
  close(fd);  // nothing listens there now
  unsetenv("AWS_EC2_METADATA_DISABLED");
  std::string endpoint = "http://127.0.0.1:" + std::to_string(port);
  setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", endpoint.c_str(), 1);
  try {
    resolve_credentials({});
    FAIL() << "no error";
  } catch (const imgbake::BuildError& e) {
    EXPECT_NE(std::string(e.what()).find("instance metadata (IMDSv2) at " + endpoint + ": no answer (not on EC2?)"),
              std::string::npos)
        << e.what();
  }
}

TEST_F(AmazonCredentials, AssumeRoleSignsForStsAndReturnsTheSessionCredentials) {
  TestHttpServer sts([&](const HttpRequest&) -> std::optional<HttpAnswer> {
    return HttpAnswer{200,
                      {},
                      "<AssumeRoleResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><AssumeRoleResult>"
                      "<Credentials><AccessKeyId>ASIAROLE</AccessKeyId><SecretAccessKey>srole</SecretAccessKey>"
                      "<SessionToken>trole/+=</SessionToken><Expiration>2030-01-01T00:00:00Z</Expiration>"
                      "</Credentials></AssumeRoleResult></AssumeRoleResponse>"};
  });
  imgbake::amazon::AssumeRoleConfig role;
  role.role_arn = "arn:aws:iam::123456789012:role/builder";
  imgbake::amazon::StsOptions o;
  o.region = "eu-west-1";
  std::string endpoint = "http://127.0.0.1:" + std::to_string(sts.port());
  setenv("AWS_ENDPOINT_URL_STS", endpoint.c_str(), 1);
  imgbake::CancelToken cancel;
  Credentials base{"AKBASE", "sbase", "tbase", "the environment"};
  auto c = imgbake::amazon::assume_role(base, role, o, cancel);
  EXPECT_EQ(c.access_key, "ASIAROLE");
  EXPECT_EQ(c.token, "trole/+=");
  EXPECT_EQ(c.source, "role arn:aws:iam::123456789012:role/builder assumed with the environment");
  EXPECT_EQ(c.expires, imgbake::amazon::parse_aws_time("2030-01-01T00:00:00Z"));
  auto reqs = sts.requests();
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_NE(reqs[0].header("authorization").find("Credential=AKBASE/"), std::string::npos);
  EXPECT_NE(reqs[0].header("authorization").find("/eu-west-1/sts/aws4_request"), std::string::npos);
  EXPECT_EQ(reqs[0].header("x-amz-security-token"), "tbase");
}

TEST_F(AmazonCredentials, TemporaryCredentialsSayWhenTheyExpire) {
  auto t = imgbake::amazon::parse_aws_time("2030-01-01T00:00:00Z");
  ASSERT_TRUE(t);
  EXPECT_EQ(std::chrono::duration_cast<std::chrono::seconds>(t->time_since_epoch()).count(), 1893456000);
  EXPECT_TRUE(imgbake::amazon::parse_aws_time("2030-01-01T00:00:00.123Z"));
  EXPECT_FALSE(imgbake::amazon::parse_aws_time("tomorrow"));
  auto proc = imgbake::amazon::parse_credential_process_output(
      R"({"Version": 1, "AccessKeyId": "a", "SecretAccessKey": "s", "Expiration": "2030-01-01T00:00:00Z"})", "p");
  EXPECT_EQ(proc.expires, t);
  EXPECT_FALSE(imgbake::amazon::parse_credential_process_output(
                   R"({"Version": 1, "AccessKeyId": "a", "SecretAccessKey": "s"})", "p")
                   .expires);
  EXPECT_THROW(imgbake::amazon::parse_credential_process_output(
                   R"({"Version": 1, "AccessKeyId": "a", "SecretAccessKey": "s", "Expiration": "soon"})", "p"),
               imgbake::BuildError);
}

TEST(AmazonCredentialProvider, ResolvesAgainShortlyBeforeTheCredentialsExpire) {
  int resolved = 0;
  std::chrono::seconds lifetime(3600);
  std::vector<std::string> log;
  imgbake::amazon::CredentialProvider p(
      [&](const imgbake::CancelToken&) {
        ++resolved;
        Credentials c{"ASIA" + std::to_string(resolved), "s", "t", "a role"};
        c.expires = std::chrono::system_clock::now() + lifetime;
        return c;
      },
      [&](std::string_view l) { log.emplace_back(l); });
  imgbake::CancelToken cancel;
  EXPECT_EQ(p.current(cancel).access_key, "ASIA1");
  EXPECT_EQ(p.current(cancel).access_key, "ASIA1");  // an hour left: kept
  EXPECT_EQ(resolved, 1);
  // Refused as expired (a revoked session, a skewed clock): resolved again on the next call.
  EXPECT_TRUE(p.invalidate(p.current(cancel)));
  EXPECT_EQ(p.current(cancel).access_key, "ASIA2");
  // Another client's refusal of the old ones does not throw the new ones away.
  EXPECT_TRUE(p.invalidate(Credentials{"ASIA1", "s", "t", "a role"}));
  EXPECT_EQ(p.current(cancel).access_key, "ASIA2");
  // Short-lived credentials are refreshed at half their lifetime (5 minutes before, for long ones).
  lifetime = std::chrono::seconds(1);
  p.invalidate(p.current(cancel));
  EXPECT_EQ(p.current(cancel).access_key, "ASIA3");
  EXPECT_EQ(p.current(cancel).access_key, "ASIA3");
  std::this_thread::sleep_for(std::chrono::milliseconds(600));
  EXPECT_EQ(p.current(cancel).access_key, "ASIA4");
  ASSERT_EQ(log.size(), 1u);
  EXPECT_NE(log[0].find("the credentials from a role expire at "), std::string::npos) << log[0];
  // Long-term keys never expire: a refusal is final.
  auto fixed = imgbake::amazon::CredentialProvider::fixed(kCreds);
  EXPECT_FALSE(fixed->invalidate(fixed->current(cancel)));
}

TEST(AmazonEc2Client, RefusedAsExpiredSignsAgainWithFreshCredentials) {
  TestHttpServer server([&](const HttpRequest& r) -> std::optional<HttpAnswer> {
    if (r.header("authorization").find("Credential=ASIAOLD/") != std::string::npos)
      return HttpAnswer{400, {}, error_doc("RequestExpired", "Request has expired.")};
    return HttpAnswer{200, {}, "<DescribeImagesResponse><imagesSet/></DescribeImagesResponse>"};
  });
  int resolved = 0;
  auto provider = std::make_shared<imgbake::amazon::CredentialProvider>([&](const imgbake::CancelToken&) {
    Credentials c{++resolved == 1 ? "ASIAOLD" : "ASIANEW", "s", "t", "a role"};
    c.expires = std::chrono::system_clock::now() + std::chrono::hours(1);
    return c;
  });
  std::vector<std::string> log;
  auto o = options(server.port(), 3);
  o.log = [&](std::string_view l) { log.emplace_back(l); };
  imgbake::CancelToken cancel;
  Ec2Client client(provider, o, cancel);
  client.call("DescribeImages", {});
  auto reqs = server.requests();
  ASSERT_EQ(reqs.size(), 2u);
  EXPECT_NE(reqs[1].header("authorization").find("Credential=ASIANEW/"), std::string::npos);
  ASSERT_EQ(log.size(), 1u);
  EXPECT_NE(log[0].find("DescribeImages: RequestExpired: the credentials from a role have expired"), std::string::npos)
      << log[0];
  // Long-term keys refused as expired: EC2's error, at once.
  TestHttpServer always([&](const HttpRequest&) -> std::optional<HttpAnswer> {
    return HttpAnswer{400, {}, error_doc("RequestExpired", "Request has expired.")};
  });
  Ec2Client fixed(kCreds, options(always.port(), 3), cancel);
  EXPECT_THROW(fixed.call("DescribeImages", {}), Ec2Error);
  EXPECT_EQ(always.requests().size(), 1u);
}

TEST_F(AmazonCredentials, SkipMetadataApiCheckNeverAsksTheInstanceMetadataService) {
  TestHttpServer imds([&](const HttpRequest&) -> std::optional<HttpAnswer> { return HttpAnswer{200, {}, "TOKEN"}; });
  unsetenv("AWS_EC2_METADATA_DISABLED");
  std::string endpoint = "http://127.0.0.1:" + std::to_string(imds.port());
  setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", endpoint.c_str(), 1);
  CredentialSources s;
  s.skip_metadata_api_check = true;
  try {
    resolve_credentials(s);
    FAIL() << "no error";
  } catch (const imgbake::BuildError& e) {
    EXPECT_NE(std::string(e.what()).find("not the instance metadata service (skip_metadata_api_check)"),
              std::string::npos)
        << e.what();
  }
  EXPECT_EQ(imds.requests().size(), 0u);
}

TEST(AmazonSts, TheGlobalEndpointIsSignedForUsEast1AndChinaHasItsOwnDomain) {
  using imgbake::amazon::sts_signing_region;
  EXPECT_EQ(sts_signing_region("https://sts.amazonaws.com", "eu-west-1"), "us-east-1");
  EXPECT_EQ(sts_signing_region("https://sts.amazonaws.com/", "eu-west-1"), "us-east-1");
  EXPECT_EQ(sts_signing_region("sts.amazonaws.com", "eu-west-1"), "us-east-1");
  EXPECT_EQ(sts_signing_region("https://sts.eu-west-1.amazonaws.com", "eu-west-1"), "eu-west-1");
  EXPECT_EQ(sts_signing_region("", "eu-west-1"), "eu-west-1");
  EXPECT_EQ(imgbake::amazon::default_endpoint("sts", "cn-north-1"), "https://sts.cn-north-1.amazonaws.com.cn");
  EXPECT_EQ(imgbake::amazon::default_endpoint("ec2", "eu-west-1"), "https://ec2.eu-west-1.amazonaws.com");
}

TEST_F(AmazonCredentials, AProfileWithoutKeysInTheCredentialsFileFallsThroughToTheConfigFile) {
  write("proc.sh", "#!/bin/sh\nprintf '{\"Version\": 1, \"AccessKeyId\": \"AKMERGED\", \"SecretAccessKey\": \"s\"}'\n");
  write(".aws/credentials", "[ci]\nregion = eu-west-1\n");
  write(".aws/config", "[profile ci]\ncredential_process = sh " + home_.string() + "/proc.sh\n");
  EXPECT_EQ(resolve_credentials({"", "", "", "ci", ""}).access_key, "AKMERGED");
}
