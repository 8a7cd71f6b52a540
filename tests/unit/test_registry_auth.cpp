// Authentication of the OCI registry client: basic auth, credentials from docker's config and
// helpers, bearer tokens per scope, and no credentials after a redirect to another host.
#include <gtest/gtest.h>

#include "registry_client_fixture.h"

namespace {

using namespace registry_client_fixture;

TEST_F(RegistryClientAuthTest, AWrongPasswordIsAClearErrorWithoutThePassword) {
  Client anonymous(registry_->host(), PlainHttp(), std::nullopt);
  try {
    anonymous.ping();
    FAIL() << "an anonymous client got in";
  } catch (const RegistryError& e) {
    EXPECT_EQ(e.status(), 401);
    EXPECT_NE(std::string(e.what()).find("imgbake login"), std::string::npos) << e.what();
  }

  Client wrong(registry_->host(), PlainHttp(), Credentials{"user", "not-the-Secret-42", ""});
  try {
    wrong.ping();
    FAIL() << "a wrong password was accepted";
  } catch (const RegistryError& e) {
    std::string what = e.what();
    EXPECT_EQ(e.status(), 401);
    EXPECT_EQ(e.code(), "UNAUTHORIZED");
    EXPECT_NE(what.find("HTTP 401"), std::string::npos) << what;
    EXPECT_NE(what.find("refused"), std::string::npos) << what;
    EXPECT_EQ(what.find("not-the-Secret-42"), std::string::npos) << what;
    EXPECT_EQ(what.find(provenance::base64_encode("user:not-the-Secret-42")), std::string::npos) << what;
  }
}

TEST_F(RegistryClientAuthTest, TheRightPasswordWorksAndNeverReachesTheLog) {
  std::vector<std::string> log;
  Client client(registry_->host(), PlainHttp(&log), Credentials{"user", "pass", ""});
  EXPECT_NO_THROW(client.ping());
  PushedImage image = PushImage(client, "team/private", "v1", "private layer");
  auto m = client.get_manifest("team/private", "v1");
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->digest, image.digest);
  for (const std::string& line : log) {
    EXPECT_EQ(line.find("pass"), std::string::npos) << line;
    EXPECT_EQ(line.find(provenance::base64_encode("user:pass")), std::string::npos) << line;
  }
}

TEST_F(RegistryClientAuthTest, CredentialsComeFromDockerConfigAuths) {
  EXPECT_FALSE(find_credentials(registry_->host()).has_value());
  nlohmann::json config = {
      {"auths", {{"http://" + registry_->host(), {{"auth", provenance::base64_encode("user:pass")}}}}}};
  WriteFile(work_ / "docker" / "config.json", config.dump(), 0600);
  auto found = find_credentials(registry_->host());
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->username, "user");
  EXPECT_EQ(found->password, "pass");
  EXPECT_FALSE(find_credentials("other.example:5000").has_value());
  Client client(registry_->host(), PlainHttp(), found);
  EXPECT_NO_THROW(client.ping());
}

TEST_F(RegistryClientAuthTest, CredentialsComeFromACredentialHelper) {
  fs::create_directories(work_ / "bin");
  // docker-credential-test: reads the server URL on stdin, answers only for the test registry.
  WriteFile(work_ / "bin" / "docker-credential-test",
            "#!/bin/sh\n"
            "[ \"$1\" = get ] || exit 2\n"
            "read -r server\n"
            "if [ \"$server\" = \"" +
                registry_->host() +
                "\" ]; then\n"
                "  printf '{\"ServerURL\":\"%s\",\"Username\":\"user\",\"Secret\":\"pass\"}\\n' \"$server\"\n"
                "else\n"
                "  echo 'credentials not found in native keychain'; exit 1\n"
                "fi\n",
            0755);
  setenv("PATH", ((work_ / "bin").string() + ":" + std::getenv("PATH")).c_str(), 1);
  nlohmann::json config = {{"credHelpers", {{registry_->host(), "test"}, {"other.example", "test"}}},
                           {"auths", {{registry_->host(), {{"auth", provenance::base64_encode("user:stale")}}}}}};
  WriteFile(work_ / "docker" / "config.json", config.dump(), 0600);

  auto found = find_credentials(registry_->host());
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->username, "user");
  EXPECT_EQ(found->password, "pass") << "credHelpers come before auths";
  EXPECT_FALSE(find_credentials("other.example").has_value());
  Client client(registry_->host(), PlainHttp(), found);
  EXPECT_NO_THROW(client.ping());

  nlohmann::json missing = {{"credHelpers", {{registry_->host(), "absent"}}}};
  WriteFile(work_ / "docker" / "config.json", missing.dump(), 0600);
  try {
    find_credentials(registry_->host());
    FAIL() << "a missing credential helper went unnoticed";
  } catch (const BuildError& e) {
    EXPECT_NE(std::string(e.what()).find("docker-credential-absent"), std::string::npos) << e.what();
  }
}

TEST_F(RegistryClientAuthTest, StoredCredentialsAreFoundAndPrivate) {
  store_credentials(registry_->host(), Credentials{"user", "pass", ""});
  fs::path file = work_ / "imgbake" / "auth.json";
  EXPECT_EQ(sshd_fixture::ModeOf(file), 0600u);
  auto found = find_credentials(registry_->host());
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->password, "pass");
}

TEST_F(RegistryClientTokenTest, PushesAndPullsWithATokenPerRepositoryScope) {
  // A busy answer to one chunk puts retry and resume lines into the log, with tokens in use.
  auto patches = std::make_shared<std::atomic<int>>(0);
  auto busy = FailSome("PATCH", "/blobs/uploads/", 503, 1);
  TestHttpServer proxy(
      [&](const HttpRequest& r) -> std::optional<HttpAnswer> {
        if (r.method == "PATCH" && patches->fetch_add(1) == 1) return busy(r);
        return std::nullopt;
      },
      registry_->port());
  std::vector<std::string> log;
  ClientOptions options = PlainHttp(&log);
  options.chunk_size = 1u << 20;
  Client client(proxy.host(), options, Credentials{"user", "pass", ""});
  CancelToken cancel;

  EXPECT_NO_THROW(client.ping());
  PushedImage image = PushImage(client, "team/tokened", "v1", "token layer");
  std::string big = RandomBytes(3u << 20, 43);
  WriteFile(work_ / "disk.raw", big, 0644);
  BlobPushResult pushed =
      client.push_blob("team/tokened", Sha256(big), big.size(), work_ / "disk.raw", "", nullptr, cancel);
  EXPECT_TRUE(pushed.resumed);
  auto m = client.get_manifest("team/tokened", "v1");
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->digest, image.digest);
  EXPECT_EQ(Sha256(FetchBlob(client, "team/tokened", Sha256(big), big.size())), Sha256(big));
  // Another client (anonymous registry access) sees nothing without a token: the registry checks.
  Client anonymous(registry_->host(), PlainHttp(), std::nullopt);
  EXPECT_THROW(anonymous.get_manifest("team/tokened", "v1"), RegistryError);

  std::vector<TokenService::Grant> grants = tokens_->grants();
  std::vector<std::string> scopes;
  for (const auto& g : grants) {
    if (g.user.empty()) continue;  // the anonymous client's
    EXPECT_EQ(g.service, TokenService::kService);
    EXPECT_EQ(g.user, "user");
    scopes.push_back(util::join(g.scopes, " "));
  }
  std::vector<std::string> unique = scopes;
  std::sort(unique.begin(), unique.end());
  unique.erase(std::unique(unique.begin(), unique.end()), unique.end());
  EXPECT_EQ(unique.size(), scopes.size()) << "a token is asked for once per scope: " << util::join(scopes, " | ");
  EXPECT_NE(std::find(scopes.begin(), scopes.end(), "repository:team/tokened:pull,push"), scopes.end())
      << util::join(scopes, " | ");
  EXPECT_NE(std::find(scopes.begin(), scopes.end(), "repository:team/tokened:pull"), scopes.end())
      << util::join(scopes, " | ");

  std::string all = Lines(log);
  EXPECT_NE(all.find("resume:"), std::string::npos) << all;
  ExpectNoSecretIn(all);
}

TEST_F(RegistryClientTokenTest, ATokenForAnotherScopeIsRefusedClearly) {
  tokens_->set_policy([](const std::string& scope) {
    return scope.find("team/forbidden") != std::string::npos ? std::string("repository:team/other:pull,push") : scope;
  });
  std::vector<std::string> log;
  Client client(registry_->host(), PlainHttp(&log), Credentials{"user", "pass", ""});
  EXPECT_NO_THROW(client.ping());
  CancelToken cancel;
  std::string data = "not allowed here";
  try {
    client.push_blob_bytes("team/forbidden", Sha256(data), data, cancel);
    FAIL() << "a token without the repository's scope was accepted";
  } catch (const RegistryError& e) {
    std::string what = e.what();
    EXPECT_EQ(e.status(), 401);
    EXPECT_NE(what.find("HTTP 401"), std::string::npos) << what;
    EXPECT_NE(what.find("does not grant repository:team/forbidden:pull"), std::string::npos) << what;
    ExpectNoSecretIn(what);
  }
  size_t asked = 0;
  for (const auto& g : tokens_->grants())
    if (util::join(g.scopes, " ").find("team/forbidden") != std::string::npos) ++asked;
  EXPECT_EQ(asked, 2u) << "refused: asked again once, not in a loop";
  ExpectNoSecretIn(Lines(log));
}

TEST_F(RegistryClientTokenTest, AnExpiredTokenIsRenewedOnce) {
  Client client(registry_->host(), PlainHttp(), Credentials{"user", "pass", ""});
  EXPECT_NO_THROW(client.ping());
  tokens_->hand_out_expired_tokens(1);
  PushedImage image = PushImage(client, "team/renewed", "v1", "renewed layer");
  auto m = client.get_manifest("team/renewed", image.digest);
  ASSERT_TRUE(m.has_value());
  size_t pull_tokens = 0;
  for (const auto& g : tokens_->grants())
    if (util::join(g.scopes, " ") == "repository:team/renewed:pull") ++pull_tokens;
  EXPECT_EQ(pull_tokens, 2u) << "the expired token was refused and asked for again, once";
}

TEST_F(RegistryClientTokenTest, AWrongPasswordIsRefusedByTheTokenService) {
  Client client(registry_->host(), PlainHttp(), Credentials{"user", "wrong-Secret-77", ""});
  try {
    client.ping();
    FAIL() << "a wrong password got a token";
  } catch (const RegistryError& e) {
    std::string what = e.what();
    EXPECT_EQ(e.status(), 401);
    EXPECT_NE(what.find("token service"), std::string::npos) << what;
    EXPECT_NE(what.find("incorrect username or password"), std::string::npos) << what;
    EXPECT_NE(what.find("imgbake login"), std::string::npos) << what;
    EXPECT_EQ(what.find("wrong-Secret-77"), std::string::npos) << what;
  }
}

TEST_F(RegistryClientTokenTest, ARedirectToAnotherHostCarriesNoCredentials) {
  Client direct(registry_->host(), PlainHttp(), Credentials{"user", "pass", ""});
  CancelToken cancel;
  std::string far = RandomBytes(300000, 47), near = RandomBytes(200000, 53);
  direct.push_blob_bytes("team/redirected", Sha256(far), far, cancel);
  direct.push_blob_bytes("team/redirected", Sha256(near), near, cancel);

  // The "object storage" on another port serves the far blob to whoever asks.
  TestHttpServer storage([&](const HttpRequest& r) -> std::optional<HttpAnswer> {
    if (r.target.starts_with("/objects/" + Sha256(far))) return HttpAnswer{200, {}, far};
    return HttpAnswer{404, {}, "no such object"};
  });
  TestHttpServer front(
      [&](const HttpRequest& r) -> std::optional<HttpAnswer> {
        if (r.method == "GET" && r.target == "/v2/team/redirected/blobs/" + Sha256(far))
          return HttpAnswer{
              307, {"Location: http://" + storage.host() + "/objects/" + Sha256(far) + "?sig=s3cr3t"}, ""};
        if (r.method == "GET" && r.target == "/v2/team/redirected/blobs/" + Sha256(near))
          return HttpAnswer{307, {"Location: /v2/team/redirected/blobs/" + Sha256(near) + "?hop=1"}, ""};
        return std::nullopt;
      },
      registry_->port());
  std::vector<std::string> log;
  Client client(front.host(), PlainHttp(&log), Credentials{"user", "pass", ""});

  EXPECT_EQ(Sha256(FetchBlob(client, "team/redirected", Sha256(far), far.size())), Sha256(far));
  auto at_storage = storage.requests();
  ASSERT_EQ(at_storage.size(), 1u);
  EXPECT_EQ(at_storage[0].header("authorization"), "") << "credentials went to another host";
  EXPECT_NE(at_storage[0].target.find("sig=s3cr3t"), std::string::npos) << "the Location is used as given";

  EXPECT_EQ(Sha256(FetchBlob(client, "team/redirected", Sha256(near), near.size())), Sha256(near));
  bool hop_had_token = false;
  for (const auto& r : front.requests())
    if (r.target.find("?hop=1") != std::string::npos && r.header("authorization").starts_with("Bearer "))
      hop_had_token = true;
  EXPECT_TRUE(hop_had_token) << "a redirect to the registry's own host keeps the token";

  std::string all = Lines(log);
  EXPECT_NE(all.find("redirect: GET /v2/team/redirected/blobs/" + Sha256(far) + " → " + storage.host()),
            std::string::npos)
      << all;
  EXPECT_EQ(all.find("s3cr3t"), std::string::npos) << all;
  ExpectNoSecretIn(all);
}

}  // namespace
