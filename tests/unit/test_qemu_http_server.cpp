// The http_directory / http_content server, exercised over real sockets on 127.0.0.1 with
// libcurl as the client (the same kind of client an installer uses).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "imgbake/error.h"
#include "imgbake/util.h"
#include "qemu/http_server.h"

namespace {

namespace fs = std::filesystem;
using imgbake::BuildError;
using imgbake::qemu::HttpServer;
using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::Not;
using namespace std::chrono_literals;

struct Response {
  long status = 0;
  std::string body;
  std::string headers;
  std::string error;  // curl's, when the transfer failed
};

size_t Append(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

Response Fetch(const std::string& url, const std::string& method = "GET") {
  Response r;
  CURL* curl = curl_easy_init();
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_PATH_AS_IS, 1L);  // send "/../" as it is, as an attacker would
  curl_easy_setopt(curl, CURLOPT_TIMEOUT, 30L);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, Append);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &r.body);
  curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, Append);
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, &r.headers);
  if (method == "HEAD")
    curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
  else if (method != "GET")
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method.c_str());
  CURLcode rc = curl_easy_perform(curl);
  if (rc != CURLE_OK) r.error = curl_easy_strerror(rc);
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &r.status);
  curl_easy_cleanup(curl);
  return r;
}

// A TCP connection that sends nothing: a stalled client.
int ConnectIdle(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

class QemuHttpServer : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "imgbake-http-XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    root_ = tmpl;
    www_ = root_ / "www";
    fs::create_directories(www_ / "sub");
    Write(www_ / "preseed.cfg", "d-i debian-installer/locale string en_US\n");
    Write(www_ / "user-data", "#cloud-config\n");
    Write(www_ / "with space.txt", "spaced\n");
    Write(www_ / "sub" / "index.html", "<html>sub</html>\n");
    fs::create_directories(www_ / "empty");
    Write(root_ / "secret.txt", "do not serve\n");
  }
  void TearDown() override { fs::remove_all(root_); }

  static void Write(const fs::path& p, const std::string& text) { std::ofstream(p, std::ios::binary) << text; }

  std::unique_ptr<HttpServer> Start(std::map<std::string, std::string> content = {}) {
    auto server = HttpServer::start(www_.string(), std::move(content), "127.0.0.1", 0, 0);
    server->log = [this](std::string_view line) {
      std::lock_guard lock(log_mutex_);
      log_.emplace_back(line);
    };
    return server;
  }
  std::string Url(const HttpServer& s, const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(s.port()) + path;
  }
  std::vector<std::string> Log() {
    std::lock_guard lock(log_mutex_);
    return log_;
  }

  fs::path root_, www_;
  std::mutex log_mutex_;
  std::vector<std::string> log_;
};

TEST_F(QemuHttpServer, ServesFilesWithLengthAndType) {
  auto server = Start();
  Response r = Fetch(Url(*server, "/preseed.cfg"));
  EXPECT_EQ(r.error, "");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "d-i debian-installer/locale string en_US\n");
  EXPECT_THAT(r.headers, HasSubstr("Content-Length: 41\r\n"));
  EXPECT_THAT(r.headers, HasSubstr("Content-Type: text/plain; charset=utf-8\r\n"));
  // no extension: the start of the file decides, as in Go's file server
  EXPECT_THAT(Fetch(Url(*server, "/user-data")).headers, HasSubstr("Content-Type: text/plain"));
  EXPECT_EQ(Fetch(Url(*server, "/with%20space.txt")).body, "spaced\n");
  EXPECT_EQ(Fetch(Url(*server, "/preseed.cfg?x=1")).status, 200);
  EXPECT_THAT(Log(), Contains("GET /preseed.cfg 200 41 bytes"));
}

TEST_F(QemuHttpServer, ContentWinsOverFiles) {
  auto server = Start({{"/preseed.cfg", "from content\n"}, {"meta-data", "instance-id: x\n"}});
  EXPECT_EQ(Fetch(Url(*server, "/preseed.cfg")).body, "from content\n");
  EXPECT_EQ(Fetch(Url(*server, "/meta-data")).body, "instance-id: x\n");  // leading '/' added
  EXPECT_EQ(Fetch(Url(*server, "/user-data")).body, "#cloud-config\n");   // files still served
}

TEST_F(QemuHttpServer, ContentOnlyWithoutDirectory) {
  auto server = HttpServer::start("", {{"/ks.cfg", "text\n"}}, "127.0.0.1", 0, 0);
  EXPECT_EQ(Fetch(Url(*server, "/ks.cfg")).body, "text\n");
  EXPECT_EQ(Fetch(Url(*server, "/preseed.cfg")).status, 404);
}

TEST_F(QemuHttpServer, NotFoundHeadAndMethodNotAllowed) {
  auto server = Start();
  EXPECT_EQ(Fetch(Url(*server, "/missing.cfg")).status, 404);
  EXPECT_EQ(Fetch(Url(*server, "/empty/")).status, 404);  // a directory without index.html
  EXPECT_EQ(Fetch(Url(*server, "/sub/")).body, "<html>sub</html>\n");

  Response head = Fetch(Url(*server, "/preseed.cfg"), "HEAD");
  EXPECT_EQ(head.status, 200);
  EXPECT_EQ(head.body, "");
  EXPECT_THAT(head.headers, HasSubstr("Content-Length: 41\r\n"));

  Response post = Fetch(Url(*server, "/preseed.cfg"), "POST");
  EXPECT_EQ(post.status, 405);
  EXPECT_THAT(post.headers, HasSubstr("Allow: GET, HEAD\r\n"));
  EXPECT_THAT(Log(), Contains("HEAD /preseed.cfg 200 41 bytes"));
}

TEST_F(QemuHttpServer, DotDotCannotEscapeTheDirectory) {
  auto server = Start();
  for (const char* path : {"/../secret.txt", "/sub/../../secret.txt", "/%2e%2e/secret.txt", "/..%2fsecret.txt"}) {
    Response r = Fetch(Url(*server, path));
    EXPECT_EQ(r.status, 403) << path;
    EXPECT_THAT(r.body, Not(HasSubstr("do not serve"))) << path;
  }
  EXPECT_EQ(Fetch(Url(*server, "/%zz")).status, 400);
}

TEST_F(QemuHttpServer, TakesTheFirstFreePortOfTheRange) {
  // Hold a port, then ask for a range that starts with it.
  int taken = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  ASSERT_EQ(bind(taken, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(listen(taken, 1), 0);
  socklen_t len = sizeof addr;
  getsockname(taken, reinterpret_cast<sockaddr*>(&addr), &len);
  int port = ntohs(addr.sin_port);
  if (port > 65000) GTEST_SKIP() << "the kernel gave a port too close to the top for a range";

  auto server = HttpServer::start(www_.string(), {}, "127.0.0.1", port, port + 20);
  EXPECT_GT(server->port(), port);
  EXPECT_LE(server->port(), port + 20);
  EXPECT_EQ(Fetch(Url(*server, "/preseed.cfg")).status, 200);

  try {
    HttpServer::start(www_.string(), {}, "127.0.0.1", port, port);
    FAIL() << "expected no free port";
  } catch (const BuildError& e) {
    EXPECT_THAT(e.what(), HasSubstr("no free port for the HTTP server on 127.0.0.1 between " + std::to_string(port)));
  }
  close(taken);
}

TEST_F(QemuHttpServer, BadSettingsAreErrors) {
  EXPECT_THROW(HttpServer::start((root_ / "nope").string(), {}, "127.0.0.1", 0, 0), BuildError);
  EXPECT_THROW(HttpServer::start(www_.string(), {}, "localhost", 0, 0), BuildError);
  EXPECT_THROW(HttpServer::start(www_.string(), {}, "127.0.0.1", 9000, 8000), BuildError);
}

TEST_F(QemuHttpServer, StalledClientNeitherBlocksOthersNorTheDestructor) {
  auto server = Start();
  int idle = ConnectIdle(server->port());
  ASSERT_GE(idle, 0);
  int half = ConnectIdle(server->port());
  ASSERT_GE(half, 0);
  ASSERT_EQ(write(half, "GET /pre", 8), 8);  // half a request, then silence

  auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(Fetch(Url(*server, "/preseed.cfg")).status, 200);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);

  start = std::chrono::steady_clock::now();
  server.reset();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1s);
  close(idle);
  close(half);
}

TEST_F(QemuHttpServer, LargeFileArrivesIntact) {
  std::string big(20 * 1024 * 1024, '\0');
  std::mt19937_64 random(42);
  for (size_t i = 0; i + 8 <= big.size(); i += 8) {
    uint64_t v = random();
    std::memcpy(&big[i], &v, 8);
  }
  Write(www_ / "big.iso", big);
  auto server = Start();
  Response r = Fetch(Url(*server, "/big.iso"));
  EXPECT_EQ(r.error, "");
  EXPECT_EQ(r.status, 200);
  EXPECT_THAT(r.headers, HasSubstr("Content-Type: application/octet-stream\r\n"));
  ASSERT_EQ(r.body.size(), big.size());
  EXPECT_EQ(imgbake::util::sha256_hex(r.body), imgbake::util::sha256_hex(big));
  EXPECT_THAT(Log(), Contains("GET /big.iso 200 20971520 bytes"));
}

}  // namespace
