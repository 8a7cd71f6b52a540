// The OCI registry client against real registries: Debian's docker-registry (distribution 2.8) on
// 127.0.0.1, one anonymous and one with htpasswd basic auth, plus a TCP proxy in the test that
// breaks or slows connections on purpose.
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "imgbake/oci_client.h"
#include "imgbake/provenance.h"
#include "imgbake/util.h"
#include "sshd_fixture.h"

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using namespace imgbake;
using namespace imgbake::registry;
using sshd_fixture::Accepts;
using sshd_fixture::Eventually;
using sshd_fixture::FreePort;
using sshd_fixture::RandomBytes;
using sshd_fixture::ReadFile;
using sshd_fixture::Shell;
using sshd_fixture::WriteFile;
using Clock = std::chrono::steady_clock;

constexpr const char* kRegistryBinary = "/usr/bin/docker-registry";

fs::path MakeTempDir(const std::string& prefix) {
  std::string tmpl = (fs::temp_directory_path() / (prefix + "-XXXXXX")).string();
  if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
  return tmpl;
}

// One `docker-registry serve` on a free port of 127.0.0.1, with its own storage directory.
class LocalRegistry {
 public:
  explicit LocalRegistry(const std::string& auth_yaml = "") {
    dir_ = MakeTempDir("imgbake-registry");
    port_ = FreePort();
    std::string config =
        "version: 0.1\nlog: {level: warn}\nstorage: {filesystem: {rootdirectory: " + (dir_ / "data").string() +
        "}, delete: {enabled: true}}\nhttp: {addr: 127.0.0.1:" + std::to_string(port_) + "}\n" + auth_yaml;
    WriteFile(dir_ / "config.yml", config, 0644);
    process_ = std::make_unique<BackgroundProcess>(
        std::vector<std::string>{kRegistryBinary, "serve", (dir_ / "config.yml").string()},
        (dir_ / "registry.log").string());
    ready_ = Eventually([&] { return Accepts(port_); }, 10s);
  }
  ~LocalRegistry() {
    process_.reset();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  bool ready() const { return ready_; }
  int port() const { return port_; }
  std::string host() const { return "127.0.0.1:" + std::to_string(port_); }
  const fs::path& dir() const { return dir_; }
  std::string log() const { return ReadFile(dir_ / "registry.log"); }

 private:
  fs::path dir_;
  int port_ = 0;
  std::unique_ptr<BackgroundProcess> process_;
  bool ready_ = false;
};

// A TCP relay to a registry that can break the connection once after `cut_after` bytes went
// upstream, or slow the upload down to about `bytes_per_tick` per 20 ms.
class TestProxy {
 public:
  TestProxy(int upstream_port, uint64_t cut_after, size_t bytes_per_tick = 0)
      : upstream_port_(upstream_port), cut_after_(cut_after), bytes_per_tick_(bytes_per_tick) {
    listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(listen_fd_, 16) != 0 ||
        getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0)
      throw std::runtime_error("proxy: cannot listen");
    port_ = ntohs(a.sin_port);
    threads_.emplace_back([this] { AcceptLoop(); });
  }
  ~TestProxy() {
    stop_ = true;
    for (auto& t : threads_) t.join();
    close(listen_fd_);
  }
  int port() const { return port_; }
  bool cut() const { return cut_done_; }

 private:
  void AcceptLoop() {
    while (!stop_) {
      pollfd p{listen_fd_, POLLIN, 0};
      if (poll(&p, 1, 50) <= 0) continue;
      int client = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (client < 0) continue;
      std::lock_guard<std::mutex> lock(mutex_);
      threads_.emplace_back([this, client] { Relay(client); });
    }
  }

  void Relay(int client) {
    int upstream = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<uint16_t>(upstream_port_));
    if (connect(upstream, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      close(client);
      close(upstream);
      return;
    }
    std::vector<char> buf(64 * 1024);
    bool open = true;
    while (open && !stop_) {
      pollfd fds[2] = {{client, POLLIN, 0}, {upstream, POLLIN, 0}};
      if (poll(fds, 2, 50) <= 0) continue;
      for (int i = 0; i < 2 && open; ++i) {
        if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
        int from = i == 0 ? client : upstream, to = i == 0 ? upstream : client;
        size_t want = i == 0 && bytes_per_tick_ ? std::min(buf.size(), bytes_per_tick_) : buf.size();
        ssize_t n = read(from, buf.data(), want);
        if (n <= 0) {
          open = false;
          break;
        }
        size_t forward = static_cast<size_t>(n);
        bool cut_now = false;
        if (i == 0 && cut_after_ && !cut_done_) {
          uint64_t before = upstream_bytes_.fetch_add(forward);
          if (before + forward >= cut_after_) {
            forward = static_cast<size_t>(cut_after_ > before ? cut_after_ - before : 0);
            cut_now = true;
          }
        }
        for (size_t off = 0; off < forward;) {
          ssize_t w = write(to, buf.data() + off, forward - off);
          if (w <= 0) {
            open = false;
            break;
          }
          off += static_cast<size_t>(w);
        }
        if (cut_now) {
          cut_done_ = true;
          open = false;
        }
        if (i == 0 && bytes_per_tick_) std::this_thread::sleep_for(20ms);  // the throttle itself
      }
    }
    shutdown(client, SHUT_RDWR);
    shutdown(upstream, SHUT_RDWR);
    close(client);
    close(upstream);
  }

  int upstream_port_;
  uint64_t cut_after_;
  size_t bytes_per_tick_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<bool> cut_done_{false};
  std::atomic<uint64_t> upstream_bytes_{0};
  std::mutex mutex_;
  std::vector<std::thread> threads_;
};

std::string Sha256(std::string_view data) { return "sha256:" + util::sha256_hex(data); }

ClientOptions PlainHttp(std::vector<std::string>* log = nullptr) {
  ClientOptions o;
  o.plain_http = true;
  if (log) o.log = [log](std::string_view line) { log->emplace_back(line); };
  return o;
}

std::string FetchBlob(Client& client, const std::string& repo, const std::string& digest, uint64_t size) {
  std::string out;
  CancelToken cancel;
  client.get_blob(
      repo, digest, size, [&](const char* d, size_t n) { out.append(d, n); }, nullptr, cancel);
  return out;
}

// A minimal image: config blob + one layer, as an OCI manifest (optionally with a subject).
struct PushedImage {
  std::string manifest;
  std::string digest;
};

PushedImage PushImage(Client& client, const std::string& repo, const std::string& tag, const std::string& layer,
                      const nlohmann::json& subject = nullptr, const std::string& artifact_type = "") {
  CancelToken cancel;
  std::string config = "{}";
  client.push_blob_bytes(repo, Sha256(config), config, cancel);
  client.push_blob_bytes(repo, Sha256(layer), layer, cancel);
  nlohmann::ordered_json m;
  m["schemaVersion"] = 2;
  m["mediaType"] = store::kManifestMediaType;
  if (!artifact_type.empty()) m["artifactType"] = artifact_type;
  m["config"] = {{"mediaType", artifact_type.empty() ? store::kConfigMediaType : store::kEmptyMediaType},
                 {"digest", Sha256(config)},
                 {"size", config.size()}};
  m["layers"] = nlohmann::json::array(
      {{{"mediaType", "application/octet-stream"}, {"digest", Sha256(layer)}, {"size", layer.size()}}});
  if (!subject.is_null()) m["subject"] = subject;
  PushedImage image;
  image.manifest = m.dump();
  // No tag: PUT by digest, as a referrer is stored.
  image.digest =
      client.put_manifest(repo, tag.empty() ? Sha256(image.manifest) : tag, store::kManifestMediaType, image.manifest);
  return image;
}

class RegistryClientTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (access(kRegistryBinary, X_OK) != 0) return;
    registry_ = new LocalRegistry();
  }
  static void TearDownTestSuite() {
    delete registry_;
    registry_ = nullptr;
  }
  void SetUp() override {
    if (!registry_) GTEST_SKIP() << kRegistryBinary << " is missing (Debian: apt-get install docker-registry)";
    if (!registry_->ready()) GTEST_SKIP() << "docker-registry did not start: " << registry_->log();
    work_ = MakeTempDir("imgbake-registry-test");
  }
  void TearDown() override {
    std::error_code ec;
    if (!work_.empty()) fs::remove_all(work_, ec);
  }

  static LocalRegistry* registry_;
  fs::path work_;
};

LocalRegistry* RegistryClientTest::registry_ = nullptr;

TEST_F(RegistryClientTest, PingAnswers) {
  Client client(registry_->host(), PlainHttp(), std::nullopt);
  EXPECT_NO_THROW(client.ping());
  EXPECT_EQ(client.registry(), registry_->host());
}

TEST_F(RegistryClientTest, PushesSmallAndChunkedBlobsAndReadsThemBack) {
  ClientOptions options = PlainHttp();
  options.chunk_size = 4u << 20;
  Client client(registry_->host(), options, std::nullopt);
  CancelToken cancel;

  std::string small = "hello registry\n";
  BlobPushResult first_small = client.push_blob_bytes("team/blobs", Sha256(small), small, cancel);
  EXPECT_FALSE(first_small.existed);
  EXPECT_EQ(first_small.bytes_sent, small.size());

  std::string big = RandomBytes(20u << 20, 7);
  WriteFile(work_ / "disk.raw", big, 0644);
  uint64_t last_done = 0, last_total = 0;
  BlobPushResult first_big = client.push_blob(
      "team/blobs", Sha256(big), big.size(), work_ / "disk.raw", "",
      [&](uint64_t done, uint64_t total) {
        last_done = done;
        last_total = total;
      },
      cancel);
  EXPECT_FALSE(first_big.existed);
  EXPECT_FALSE(first_big.resumed);
  EXPECT_EQ(first_big.bytes_sent, big.size());
  EXPECT_EQ(last_total, big.size());
  EXPECT_GT(last_done, 0u);

  EXPECT_TRUE(client.has_blob("team/blobs", Sha256(small)));
  EXPECT_TRUE(client.has_blob("team/blobs", Sha256(big)));
  EXPECT_FALSE(client.has_blob("team/blobs", Sha256("never pushed")));
  EXPECT_EQ(Sha256(FetchBlob(client, "team/blobs", Sha256(small), small.size())), Sha256(small));
  EXPECT_EQ(Sha256(FetchBlob(client, "team/blobs", Sha256(big), big.size())), Sha256(big));

  uint64_t sent_before = client.blob_bytes_sent();
  BlobPushResult again =
      client.push_blob("team/blobs", Sha256(big), big.size(), work_ / "disk.raw", "", nullptr, cancel);
  EXPECT_TRUE(again.existed);
  EXPECT_EQ(again.bytes_sent, 0u);
  EXPECT_EQ(client.blob_bytes_sent(), sent_before);
}

TEST_F(RegistryClientTest, GetBlobRejectsAWrongExpectedSize) {
  Client client(registry_->host(), PlainHttp(), std::nullopt);
  CancelToken cancel;
  std::string data = "sized blob";
  client.push_blob_bytes("team/sizes", Sha256(data), data, cancel);
  try {
    FetchBlob(client, "team/sizes", Sha256(data), data.size() - 1);
    FAIL() << "a blob longer than expected was accepted";
  } catch (const BuildError& e) {
    EXPECT_NE(std::string(e.what()).find("more than"), std::string::npos) << e.what();
  }
}

TEST_F(RegistryClientTest, MountsABlobFromAnotherRepository) {
  std::vector<std::string> log;
  Client client(registry_->host(), PlainHttp(&log), std::nullopt);
  CancelToken cancel;
  std::string data = RandomBytes(100000, 11);
  WriteFile(work_ / "layer", data, 0644);
  client.push_blob("team/source", Sha256(data), data.size(), work_ / "layer", "", nullptr, cancel);
  BlobPushResult mounted =
      client.push_blob("team/target", Sha256(data), data.size(), work_ / "layer", "team/source", nullptr, cancel);
  EXPECT_TRUE(mounted.mounted);
  EXPECT_FALSE(mounted.existed);
  EXPECT_EQ(mounted.bytes_sent, 0u);
  EXPECT_TRUE(client.has_blob("team/target", Sha256(data)));
  EXPECT_EQ(Sha256(FetchBlob(client, "team/target", Sha256(data), data.size())), Sha256(data));
}

TEST_F(RegistryClientTest, ManifestsAndTagsRoundTrip) {
  Client client(registry_->host(), PlainHttp(), std::nullopt);
  PushedImage image = PushImage(client, "team/app", "v1", "layer one");
  EXPECT_EQ(image.digest, Sha256(image.manifest));

  auto by_tag = client.get_manifest("team/app", "v1");
  ASSERT_TRUE(by_tag.has_value());
  EXPECT_EQ(by_tag->bytes, image.manifest);
  EXPECT_EQ(by_tag->digest, image.digest);
  EXPECT_EQ(by_tag->media_type, store::kManifestMediaType);
  auto by_digest = client.get_manifest("team/app", image.digest);
  ASSERT_TRUE(by_digest.has_value());
  EXPECT_EQ(by_digest->bytes, image.manifest);

  client.put_manifest("team/app", "latest", store::kManifestMediaType, image.manifest);
  auto tags = client.tags("team/app");
  std::sort(tags.begin(), tags.end());
  EXPECT_EQ(tags, (std::vector<std::string>{"latest", "v1"}));

  EXPECT_FALSE(client.get_manifest("team/app", "no-such-tag").has_value());
  EXPECT_FALSE(client.get_manifest("team/no-such-repo", "v1").has_value());
}

TEST_F(RegistryClientTest, AnInvalidManifestNamesTheRegistrysErrorCode) {
  Client client(registry_->host(), PlainHttp(), std::nullopt);
  nlohmann::json m = {{"schemaVersion", 2},
                      {"mediaType", store::kManifestMediaType},
                      {"config", {{"mediaType", store::kConfigMediaType}, {"digest", Sha256("absent")}, {"size", 6}}},
                      {"layers", nlohmann::json::array()}};
  try {
    client.put_manifest("team/bad", "v1", store::kManifestMediaType, m.dump());
    FAIL() << "a manifest with a missing config blob was accepted";
  } catch (const RegistryError& e) {
    std::string what = e.what();
    EXPECT_EQ(e.status(), 400);
    EXPECT_TRUE(e.code() == "MANIFEST_BLOB_UNKNOWN" || e.code() == "MANIFEST_INVALID") << e.code();
    EXPECT_NE(what.find(e.code()), std::string::npos) << what;
    EXPECT_NE(what.find("HTTP 400"), std::string::npos) << what;
    EXPECT_NE(what.find("/v2/team/bad/manifests/v1"), std::string::npos) << what;
  }
}

TEST_F(RegistryClientTest, ResumesAfterTheConnectionDropsMidUpload) {
  TestProxy proxy(registry_->port(), 6'000'000);
  std::vector<std::string> log;
  ClientOptions options = PlainHttp(&log);
  options.chunk_size = 4u << 20;
  Client client("127.0.0.1:" + std::to_string(proxy.port()), options, std::nullopt);
  CancelToken cancel;
  std::string big = RandomBytes(20u << 20, 23);
  WriteFile(work_ / "disk.raw", big, 0644);
  BlobPushResult r = client.push_blob("team/resume", Sha256(big), big.size(), work_ / "disk.raw", "", nullptr, cancel);
  EXPECT_TRUE(proxy.cut());
  EXPECT_TRUE(r.resumed);
  EXPECT_GT(r.bytes_sent, big.size()) << "the interrupted part is sent again";
  EXPECT_EQ(Sha256(FetchBlob(client, "team/resume", Sha256(big), big.size())), Sha256(big));
  std::string all = util::join(log, "\n");
  EXPECT_NE(all.find("resume:"), std::string::npos) << all;
}

TEST_F(RegistryClientTest, CancellationStopsASlowUploadPromptly) {
  TestProxy proxy(registry_->port(), 0, 16 * 1024);  // about 800 KB/s
  ClientOptions options = PlainHttp();
  options.chunk_size = 4u << 20;
  Client client("127.0.0.1:" + std::to_string(proxy.port()), options, std::nullopt);
  CancelToken cancel;
  std::string big = RandomBytes(8u << 20, 29);
  WriteFile(work_ / "disk.raw", big, 0644);
  Clock::time_point cancelled_at;
  std::thread canceller([&] {
    std::this_thread::sleep_for(700ms);  // mid-upload: the whole upload takes about 10 s
    cancelled_at = Clock::now();
    cancel.cancel(SIGINT);
  });
  bool threw_cancelled = false;
  try {
    client.push_blob("team/cancel", Sha256(big), big.size(), work_ / "disk.raw", "", nullptr, cancel);
  } catch (const Cancelled&) {
    threw_cancelled = true;
  }
  auto stopped_at = Clock::now();
  canceller.join();
  EXPECT_TRUE(threw_cancelled);
  EXPECT_LT(stopped_at - cancelled_at, 2s);
}

TEST_F(RegistryClientTest, FindsReferrersThroughTheTagSchema) {
  Client client(registry_->host(), PlainHttp(), std::nullopt);
  EXPECT_FALSE(client.has_referrers_api("team/signed"));
  PushedImage image = PushImage(client, "team/signed", "v1", "the image");
  nlohmann::json subject = {
      {"mediaType", store::kManifestMediaType}, {"digest", image.digest}, {"size", image.manifest.size()}};
  PushedImage provenance =
      PushImage(client, "team/signed", "", "an attestation", subject, store::kProvenanceArtifactType);
  nlohmann::ordered_json index;
  index["schemaVersion"] = 2;
  index["mediaType"] = "application/vnd.oci.image.index.v1+json";
  index["manifests"] = nlohmann::json::array({{{"mediaType", store::kManifestMediaType},
                                               {"digest", provenance.digest},
                                               {"size", provenance.manifest.size()},
                                               {"artifactType", store::kProvenanceArtifactType},
                                               {"annotations", {{"org.example.kind", "provenance"}}}}});
  std::string hex = image.digest.substr(7);
  client.put_manifest("team/signed", "sha256-" + hex, "application/vnd.oci.image.index.v1+json", index.dump());

  auto all = client.referrers("team/signed", image.digest);
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].digest, provenance.digest);
  EXPECT_EQ(all[0].size, provenance.manifest.size());
  EXPECT_EQ(all[0].annotations["org.example.kind"], "provenance");
  EXPECT_EQ(client.referrers("team/signed", image.digest, store::kProvenanceArtifactType).size(), 1u);
  EXPECT_TRUE(client.referrers("team/signed", image.digest, "application/vnd.other").empty());
  EXPECT_TRUE(client.referrers("team/signed", provenance.digest).empty());
}

// The registry with htpasswd basic auth (user "user", password "pass").
class RegistryClientAuthTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (access(kRegistryBinary, X_OK) != 0 || access("/usr/bin/htpasswd", X_OK) != 0) return;
    auth_dir_ = new fs::path(MakeTempDir("imgbake-htpasswd"));
    if (Shell("htpasswd -Bbn user pass > " + (*auth_dir_ / "htpasswd").string()) != 0) return;
    registry_ =
        new LocalRegistry("auth: {htpasswd: {realm: test, path: " + (*auth_dir_ / "htpasswd").string() + "}}\n");
  }
  static void TearDownTestSuite() {
    delete registry_;
    registry_ = nullptr;
    if (auth_dir_) fs::remove_all(*auth_dir_);
    delete auth_dir_;
    auth_dir_ = nullptr;
  }
  void SetUp() override {
    if (!registry_)
      GTEST_SKIP() << kRegistryBinary << " or /usr/bin/htpasswd is missing (Debian: apt-get install "
                   << "docker-registry apache2-utils)";
    if (!registry_->ready()) GTEST_SKIP() << "docker-registry did not start: " << registry_->log();
    work_ = MakeTempDir("imgbake-registry-auth-test");
    for (const char* name : {"DOCKER_CONFIG", "IMGBAKE_CONFIG_HOME", "PATH"}) {
      const char* v = std::getenv(name);
      saved_env_.emplace_back(name, v ? std::optional<std::string>(v) : std::nullopt);
    }
    setenv("DOCKER_CONFIG", (work_ / "docker").c_str(), 1);
    setenv("IMGBAKE_CONFIG_HOME", (work_ / "imgbake").c_str(), 1);
    fs::create_directories(work_ / "docker");
  }
  void TearDown() override {
    for (const auto& [name, value] : saved_env_) {
      if (value)
        setenv(name.c_str(), value->c_str(), 1);
      else
        unsetenv(name.c_str());
    }
    std::error_code ec;
    if (!work_.empty()) fs::remove_all(work_, ec);
  }

  static LocalRegistry* registry_;
  static fs::path* auth_dir_;
  fs::path work_;
  std::vector<std::pair<std::string, std::optional<std::string>>> saved_env_;
};

LocalRegistry* RegistryClientAuthTest::registry_ = nullptr;
fs::path* RegistryClientAuthTest::auth_dir_ = nullptr;

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

TEST(RegistryReference, ParsesTheSpellingsOfDockerAndSkopeo) {
  Reference r = Reference::parse("docker://127.0.0.1:5000/team/app:v1");
  EXPECT_EQ(r.registry, "127.0.0.1:5000");
  EXPECT_EQ(r.repository, "team/app");
  EXPECT_EQ(r.tag, "v1");
  EXPECT_EQ(r.str(), "127.0.0.1:5000/team/app:v1");

  Reference hub = Reference::parse("debian");
  EXPECT_EQ(hub.registry, "registry-1.docker.io");
  EXPECT_EQ(hub.repository, "library/debian");
  EXPECT_EQ(Reference::parse("docker.io/team/app").repository, "team/app");

  std::string digest = "sha256:" + std::string(64, 'a');
  Reference pinned = Reference::parse("localhost/app:1.0@" + digest);
  EXPECT_EQ(pinned.registry, "localhost");
  EXPECT_EQ(pinned.tag, "1.0");
  EXPECT_EQ(pinned.digest, digest);
  EXPECT_EQ(pinned.str(), "localhost/app:1.0@" + digest);

  EXPECT_THROW(Reference::parse(""), UsageError);
  EXPECT_THROW(Reference::parse("ghcr.io/Team/App"), UsageError);
  EXPECT_THROW(Reference::parse("ghcr.io/team/app@sha256:abc"), UsageError);
  EXPECT_THROW(Reference::parse("ghcr.io/team/app:-bad"), UsageError);
  try {
    Reference::parse("ghcr.io/team//app");
    FAIL() << "an empty repository part was accepted";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("ghcr.io/team//app"), std::string::npos) << e.what();
  }
}

}  // namespace
