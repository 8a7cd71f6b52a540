// The amazon-ebs builder's EC2 plumbing: the XML reader, the Query API client (signing, retries,
// EC2's errors) against the test HTTP server, and the credential chain.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>

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
                                          "AWS_DEFAULT_REGION"};
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
  }
}
