// What a hostile or broken registry answers, against pull_image: a malformed manifest is an error
// that names the manifest and the field, never the JSON library's own message.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "http_test_server.h"
#include "imgbake/cancel.h"
#include "imgbake/error.h"
#include "imgbake/oci_client.h"
#include "imgbake/store.h"
#include "imgbake/transfer.h"
#include "imgbake/util.h"

namespace {

namespace fs = std::filesystem;
namespace registry = imgbake::registry;
namespace util = imgbake::util;
using http_test_server::HttpAnswer;
using http_test_server::HttpRequest;
using http_test_server::TestHttpServer;

// Pulls REGISTRY/team/app:v1 from a server that serves `manifest` for it (and nothing else);
// returns the error's text, or "" when the pull succeeded.
std::string PullError(const std::string& manifest) {
  TestHttpServer server([&](const HttpRequest& r) -> std::optional<HttpAnswer> {
    if (r.target == "/v2/team/app/manifests/v1")
      return HttpAnswer{200, {"Content-Type: application/vnd.oci.image.manifest.v1+json"}, manifest};
    return HttpAnswer{404, {"Content-Type: application/json"}, R"({"errors":[{"code":"NOT_FOUND"}]})"};
  });
  fs::path home = fs::temp_directory_path() / ("imgbake-hostile-" + util::uuid_v4());
  std::string error;
  {
    imgbake::store::Store st(home);
    registry::ClientOptions options;
    options.plain_http = true;
    registry::Client client(server.host(), options, std::nullopt);
    try {
      registry::pull_image(st, client, registry::Reference::parse(server.host() + "/team/app:v1"), "", "", {}, nullptr,
                           imgbake::global_cancel());
    } catch (const std::exception& e) {
      error = e.what();
    }
  }
  fs::remove_all(home);
  return error;
}

TEST(HostileRegistry, AMalformedManifestNamesTheManifestAndTheField) {
  const std::string digest_is_a_number =
      R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",)"
      R"("config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":5,"size":1},"layers":[]})";
  std::string error = PullError(digest_is_a_number);
  EXPECT_EQ(error.find("json.exception"), std::string::npos) << error;
  EXPECT_NE(error.find(": the manifest sha256:" + util::sha256_hex(digest_is_a_number) +
                       ": config: 'digest' is a number, not a string"),
            std::string::npos)
      << error;

  const std::string layers_not_a_list =
      R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",)"
      R"("config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:)" +
      std::string(64, '0') + R"(","size":1},"layers":{"a":1}})";
  error = PullError(layers_not_a_list);
  EXPECT_NE(error.find(": the manifest sha256:" + util::sha256_hex(layers_not_a_list) +
                       ": 'layers' is an object, not a list"),
            std::string::npos)
      << error;

  error = PullError("{not json");
  EXPECT_EQ(error.find("json.exception"), std::string::npos) << error;
  EXPECT_NE(error.find(": the manifest sha256:" + util::sha256_hex("{not json") + " is not JSON: "), std::string::npos)
      << error;
}

}  // namespace
