// fetch(): every iso_checksum form, local files verified in place, the download cache (hits
// without contacting the server, corrupt entries fetched again, two fetches of one entry at
// once), HTTP errors, mirror fallback and cancellation of a stalled download. Remote URLs are
// served by a small HTTP/1.1 server on a real socket on 127.0.0.1 that counts its requests.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "imgbake/cancel.h"
#include "imgbake/error.h"
#include "imgbake/fetch.h"

namespace {

namespace fs = std::filesystem;
using imgbake::BuildError;
using imgbake::Cancelled;
using imgbake::CancelToken;
using imgbake::checksum_syntax_error;
using imgbake::fetch;
using imgbake::FetchRequest;
using imgbake::FetchResult;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

std::string Digest(const char* algo, const std::string& data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned n = 0;
  EVP_Digest(data.data(), data.size(), md, &n, EVP_get_digestbyname(algo), nullptr);
  static const char* digits = "0123456789abcdef";
  std::string hex;
  for (unsigned i = 0; i < n; ++i) {
    hex += digits[md[i] >> 4];
    hex += digits[md[i] & 0xF];
  }
  return hex;
}

std::string Upper(std::string s) {
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

std::string ReadFile(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void WriteFile(const fs::path& p, const std::string& content) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << content;
}

// Deterministic, incompressible-looking content of `size` bytes.
std::string Payload(size_t size, unsigned seed) {
  std::string s(size, '\0');
  uint32_t x = seed * 2654435761u + 1;
  for (char& c : s) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    c = static_cast<char>(x & 0xFF);
  }
  return s;
}

std::vector<std::string> FilesIn(const fs::path& dir) {
  std::vector<std::string> names;
  if (!fs::exists(dir)) return names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

// One connection at a time, "Connection: close": enough for libcurl, and a request count per
// path tells whether the cache was used.
class TinyHttpServer {
 public:
  TinyHttpServer() {
    listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    if (bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || listen(listen_fd_, 16) != 0)
      throw std::runtime_error(std::string("test HTTP server: cannot listen: ") + std::strerror(errno));
    socklen_t len = sizeof addr;
    getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    if (pipe2(stop_pipe_, O_CLOEXEC) != 0) throw std::runtime_error("test HTTP server: pipe failed");
    thread_ = std::thread([this] { Loop(); });
  }
  ~TinyHttpServer() {
    Stop();
    close(stop_pipe_[0]);
    close(stop_pipe_[1]);
  }

  // Stops answering; new connections are refused from now on.
  void Stop() {
    if (!thread_.joinable()) return;
    [[maybe_unused]] ssize_t n = write(stop_pipe_[1], "x", 1);
    thread_.join();
    close(listen_fd_);
  }

  void Serve(const std::string& path, const std::string& body) {
    std::lock_guard lock(mu_);
    routes_[path] = Route{200, body, "", false};
  }
  void Redirect(const std::string& path, const std::string& to) {
    std::lock_guard lock(mu_);
    routes_[path] = Route{302, "", to, false};
  }
  // Announces `body` plus 100 MB, sends `body`, then sends nothing more until stopped.
  void Stall(const std::string& path, const std::string& body) {
    std::lock_guard lock(mu_);
    routes_[path] = Route{200, body, "", true};
  }
  int Requests(const std::string& path) {
    std::lock_guard lock(mu_);
    return requests_[path];
  }
  std::string Url(const std::string& path) const { return "http://127.0.0.1:" + std::to_string(port_) + path; }

 private:
  struct Route {
    int status;
    std::string body;
    std::string location;
    bool stall;
  };

  bool Stopping() {
    pollfd p{stop_pipe_[0], POLLIN, 0};
    return poll(&p, 1, 0) > 0;
  }

  void Loop() {
    while (true) {
      pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {stop_pipe_[0], POLLIN, 0}};
      if (poll(fds, 2, -1) < 0 && errno != EINTR) return;
      if (fds[1].revents) return;
      if (!(fds[0].revents & POLLIN)) continue;
      int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      Handle(fd);
      close(fd);
    }
  }

  void SendAll(int fd, const std::string& data) {
    size_t off = 0;
    while (off < data.size()) {
      ssize_t n = send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return;  // the client went away
      off += static_cast<size_t>(n);
    }
  }

  void Handle(int fd) {
    std::string request;
    char buf[4096];
    while (request.find("\r\n\r\n") == std::string::npos) {
      pollfd fds[2] = {{fd, POLLIN, 0}, {stop_pipe_[0], POLLIN, 0}};
      if (poll(fds, 2, 5000) <= 0 || fds[1].revents) return;
      ssize_t n = recv(fd, buf, sizeof buf, 0);
      if (n <= 0) return;
      request.append(buf, static_cast<size_t>(n));
    }
    size_t sp1 = request.find(' '), sp2 = request.find(' ', sp1 + 1);
    std::string path = request.substr(sp1 + 1, sp2 - sp1 - 1);
    Route route{404, "not found\n", "", false};
    {
      std::lock_guard lock(mu_);
      ++requests_[path];
      if (auto it = routes_.find(path); it != routes_.end()) route = it->second;
    }
    std::string reason = route.status == 200 ? "OK" : route.status == 302 ? "Found" : "Not Found";
    size_t length = route.body.size() + (route.stall ? 100u << 20 : 0);
    std::string head = "HTTP/1.1 " + std::to_string(route.status) + " " + reason +
                       "\r\nContent-Length: " + std::to_string(length) + "\r\nConnection: close\r\n";
    if (!route.location.empty()) head += "Location: " + route.location + "\r\n";
    SendAll(fd, head + "\r\n" + route.body);
    if (route.stall) {
      pollfd p{stop_pipe_[0], POLLIN, 0};
      poll(&p, 1, 60000);
    }
  }

  int listen_fd_ = -1;
  int port_ = 0;
  int stop_pipe_[2] = {-1, -1};
  std::thread thread_;
  std::mutex mu_;
  std::map<std::string, Route> routes_;
  std::map<std::string, int> requests_;
};

// Sets an environment variable for one test and restores it afterwards.
class ScopedEnv {
 public:
  explicit ScopedEnv(const char* name) : name_(name) {
    if (const char* v = std::getenv(name)) saved_ = v;
  }
  ~ScopedEnv() {
    if (saved_)
      setenv(name_, saved_->c_str(), 1);
    else
      unsetenv(name_);
  }
  void Set(const char* value) { setenv(name_, value, 1); }
  void Unset() { unsetenv(name_); }

 private:
  const char* name_;
  std::optional<std::string> saved_;
};

class FetchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "imgbake-fetch-XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    cache_ = dir_ / "cache";
    // A proxy from the environment must not stand between libcurl and the test server.
    no_proxy_.Set("127.0.0.1");
    server_ = std::make_unique<TinyHttpServer>();
  }
  void TearDown() override {
    server_.reset();
    fs::remove_all(dir_);
  }

  FetchResult Fetch(std::vector<std::string> urls, std::string checksum, std::string extension = "iso") {
    FetchRequest req;
    req.urls = std::move(urls);
    req.checksum = std::move(checksum);
    req.cache_dir = cache_.string();
    req.target_extension = std::move(extension);
    return fetch(req, nullptr, cancel_);
  }

  // The BuildError's message, or "" when fetch succeeded.
  std::string FetchError(std::vector<std::string> urls, std::string checksum) {
    try {
      Fetch(std::move(urls), std::move(checksum));
    } catch (const BuildError& e) {
      return e.what();
    }
    return "";
  }

  ScopedEnv no_proxy_{"no_proxy"};
  fs::path dir_;
  fs::path cache_;
  std::unique_ptr<TinyHttpServer> server_;
  CancelToken cancel_;
};

// ---------------------------------------------------------------------------
// Checksum forms, downloaded over HTTP

TEST_F(FetchTest, DownloadsIntoCacheNamedByChecksumWithExtension) {
  const std::string body = Payload(300000, 1);
  server_->Serve("/os.iso", body);
  const std::string sha = Digest("sha256", body);
  FetchResult r = Fetch({server_->Url("/os.iso")}, "sha256:" + sha);
  EXPECT_EQ(r.path, (cache_ / (sha + ".iso")).string());
  EXPECT_EQ(ReadFile(r.path), body);
  EXPECT_EQ(r.checksum_type, "sha256");
  EXPECT_EQ(r.checksum, sha);
  EXPECT_EQ(r.url, server_->Url("/os.iso"));
  EXPECT_FALSE(r.from_cache);
  // Only the entry remains: no partial download, no lock file.
  EXPECT_EQ(FilesIn(cache_), std::vector<std::string>{sha + ".iso"});
}

TEST_F(FetchTest, EveryPrefixedChecksumTypeIsVerified) {
  const std::string body = Payload(5000, 2);
  server_->Serve("/os.iso", body);
  for (const char* algo : {"md5", "sha1", "sha256", "sha512"}) {
    SCOPED_TRACE(algo);
    const std::string hex = Digest(algo, body);
    FetchResult r = Fetch({server_->Url("/os.iso")}, std::string(algo) + ":" + hex, "");
    EXPECT_EQ(r.checksum_type, algo);
    EXPECT_EQ(r.checksum, hex);
    EXPECT_EQ(r.path, (cache_ / hex).string());  // no extension requested
    EXPECT_EQ(ReadFile(r.path), body);
  }
}

TEST_F(FetchTest, BareAndUpperCaseChecksumsTakeTheirTypeFromTheLength) {
  const std::string body = Payload(5000, 3);
  server_->Serve("/os.iso", body);
  for (const char* algo : {"md5", "sha1", "sha256", "sha512"}) {
    SCOPED_TRACE(algo);
    const std::string hex = Digest(algo, body);
    FetchResult r = Fetch({server_->Url("/os.iso")}, Upper(hex));
    EXPECT_EQ(r.checksum_type, algo);
    EXPECT_EQ(r.checksum, hex);
  }
  FetchResult r = Fetch({server_->Url("/os.iso")}, "SHA256:" + Upper(Digest("sha256", body)));
  EXPECT_EQ(r.checksum_type, "sha256");
  EXPECT_EQ(r.checksum, Digest("sha256", body));
}

TEST_F(FetchTest, SumsFileInGnuFormOverHttp) {
  const std::string body = Payload(7000, 4);
  server_->Serve("/dist/os.iso", body);
  server_->Serve("/dist/SHA256SUMS",
                 Digest("sha256", "other") + "  other.iso\n" + Digest("sha256", body) + " *os.iso\n");
  FetchResult r = Fetch({server_->Url("/dist/os.iso")}, "file:" + server_->Url("/dist/SHA256SUMS"));
  EXPECT_EQ(r.checksum_type, "sha256");
  EXPECT_EQ(r.checksum, Digest("sha256", body));
  EXPECT_EQ(ReadFile(r.path), body);
}

TEST_F(FetchTest, SumsFileInBsdFormAsLocalPathWithQueryStringInUrl) {
  const std::string body = Payload(7000, 5);
  server_->Serve("/os.iso?mirror=1", body);
  WriteFile(dir_ / "CHECKSUM",
            "SHA512 (other.iso) = " + Digest("sha512", "x") + "\nSHA512 (os.iso) = " + Digest("sha512", body) + "\n");
  FetchResult r = Fetch({server_->Url("/os.iso?mirror=1")}, "file:" + (dir_ / "CHECKSUM").string());
  EXPECT_EQ(r.checksum_type, "sha512");
  EXPECT_EQ(r.checksum, Digest("sha512", body));
}

TEST_F(FetchTest, SumsFileEntryWithDotSlashAndFileUrlToTheSumsFile) {
  const std::string body = Payload(7000, 6);
  server_->Serve("/os.iso", body);
  WriteFile(dir_ / "MD5SUMS", Digest("md5", body) + "  ./os.iso\r\n");
  FetchResult r = Fetch({server_->Url("/os.iso")}, "file:file://" + (dir_ / "MD5SUMS").string());
  EXPECT_EQ(r.checksum_type, "md5");
  EXPECT_EQ(r.checksum, Digest("md5", body));
  // "file:///abs" is a file:// URL as a whole.
  r = Fetch({server_->Url("/os.iso")}, "file://" + (dir_ / "MD5SUMS").string());
  EXPECT_EQ(r.checksum, Digest("md5", body));
}

TEST_F(FetchTest, SumsFileWithoutEntryNamesTheFileAndTheName) {
  server_->Serve("/os.iso", "data");
  WriteFile(dir_ / "SHA256SUMS", Digest("sha256", "data") + "  another.iso\n");
  std::string error = FetchError({server_->Url("/os.iso")}, "file:" + (dir_ / "SHA256SUMS").string());
  EXPECT_THAT(error, HasSubstr("the checksum file " + (dir_ / "SHA256SUMS").string() + " has no entry for 'os.iso'"));
  EXPECT_EQ(server_->Requests("/os.iso"), 0);
}

TEST_F(FetchTest, MissingSumsFileIsReportedOnce) {
  server_->Serve("/os.iso", "data");
  std::string error =
      FetchError({server_->Url("/os.iso"), server_->Url("/os.iso")}, "file:" + server_->Url("/SHA256SUMS"));
  EXPECT_THAT(error, HasSubstr("cannot read the checksum file " + server_->Url("/SHA256SUMS")));
  EXPECT_THAT(error, HasSubstr("HTTP 404"));
  EXPECT_EQ(server_->Requests("/SHA256SUMS"), 1);
}

TEST_F(FetchTest, NoneIsCachedUnderTheUrlsHash) {
  const std::string body = Payload(4000, 7);
  server_->Serve("/os.iso", body);
  FetchResult first = Fetch({server_->Url("/os.iso")}, "none");
  EXPECT_EQ(first.checksum_type, "none");
  EXPECT_EQ(first.checksum, "");
  EXPECT_EQ(first.path, (cache_ / (Digest("sha256", server_->Url("/os.iso")) + ".iso")).string());
  EXPECT_EQ(ReadFile(first.path), body);
  FetchResult second = Fetch({server_->Url("/os.iso")}, "none");
  EXPECT_TRUE(second.from_cache);
  EXPECT_EQ(second.path, first.path);
  EXPECT_EQ(server_->Requests("/os.iso"), 1);
}

// ---------------------------------------------------------------------------
// Local files

TEST_F(FetchTest, LocalFileIsVerifiedInPlaceNotCopied) {
  const std::string body = Payload(20000, 8);
  fs::path iso = dir_ / "local.iso";
  WriteFile(iso, body);
  for (const std::string& url : {iso.string(), "file://" + iso.string()}) {
    SCOPED_TRACE(url);
    FetchResult r = Fetch({url}, "sha1:" + Digest("sha1", body));
    EXPECT_EQ(r.path, iso.string());
    EXPECT_EQ(r.url, url);
    EXPECT_EQ(r.checksum_type, "sha1");
    EXPECT_EQ(r.checksum, Digest("sha1", body));
    EXPECT_FALSE(r.from_cache);
  }
  EXPECT_THAT(FilesIn(cache_), IsEmpty());
  FetchResult unchecked = Fetch({iso.string()}, "none");
  EXPECT_EQ(unchecked.path, iso.string());
}

TEST_F(FetchTest, RelativePathIsResolvedAgainstTheCurrentDirectory) {
  WriteFile(dir_ / "rel.iso", "relative");
  fs::path before = fs::current_path();
  fs::current_path(dir_);
  FetchResult r;
  EXPECT_NO_THROW(r = Fetch({"rel.iso"}, Digest("md5", "relative")));
  fs::current_path(before);
  EXPECT_EQ(r.path, (dir_ / "rel.iso").string());
}

TEST_F(FetchTest, LocalFileMismatchKeepsTheFile) {
  fs::path iso = dir_ / "local.iso";
  WriteFile(iso, "actual");
  const std::string wrong = Digest("sha256", "expected");
  std::string error = FetchError({iso.string()}, "sha256:" + wrong);
  EXPECT_EQ(error, "checksum mismatch for " + iso.string() + ": expected sha256:" + wrong +
                       " got sha256:" + Digest("sha256", "actual"));
  EXPECT_TRUE(fs::exists(iso));  // the user's file is never removed
}

TEST_F(FetchTest, MissingLocalFileNamesThePath) {
  fs::path missing = dir_ / "nowhere.iso";
  EXPECT_THAT(FetchError({missing.string()}, "none"), HasSubstr("file " + missing.string() + " does not exist"));
  EXPECT_THAT(FetchError({"file://" + missing.string()}, "none"),
              HasSubstr(missing.string() + " (from file://" + missing.string() + ") does not exist"));
}

// ---------------------------------------------------------------------------
// The cache

TEST_F(FetchTest, CacheHitNeedsNoServer) {
  const std::string body = Payload(50000, 9);
  server_->Serve("/os.iso", body);
  const std::string sha = Digest("sha256", body);
  FetchResult first = Fetch({server_->Url("/os.iso")}, sha);
  EXPECT_FALSE(first.from_cache);
  const std::string url = server_->Url("/os.iso");
  server_->Stop();
  FetchResult second = Fetch({url}, sha);
  EXPECT_TRUE(second.from_cache);
  EXPECT_EQ(second.path, first.path);
  EXPECT_EQ(second.checksum, sha);
  EXPECT_EQ(ReadFile(second.path), body);
}

TEST_F(FetchTest, SameChecksumFromAnotherMirrorHitsTheCache) {
  const std::string body = Payload(50000, 10);
  server_->Serve("/a/os.iso", body);
  server_->Serve("/b/os.iso", body);
  Fetch({server_->Url("/a/os.iso")}, Digest("sha256", body));
  FetchResult r = Fetch({server_->Url("/b/os.iso")}, Digest("sha256", body));
  EXPECT_TRUE(r.from_cache);
  EXPECT_EQ(server_->Requests("/b/os.iso"), 0);
}

TEST_F(FetchTest, CorruptCacheEntryIsDownloadedAgain) {
  const std::string body = Payload(50000, 11);
  server_->Serve("/os.iso", body);
  const std::string sha = Digest("sha256", body);
  FetchResult first = Fetch({server_->Url("/os.iso")}, sha);
  WriteFile(first.path, "bit rot");
  FetchResult second = Fetch({server_->Url("/os.iso")}, sha);
  EXPECT_FALSE(second.from_cache);
  EXPECT_EQ(second.path, first.path);
  EXPECT_EQ(ReadFile(second.path), body);
  EXPECT_EQ(server_->Requests("/os.iso"), 2);
}

TEST_F(FetchTest, ConcurrentFetchesOfOneEntryDownloadOnce) {
  const std::string body = Payload(8u << 20, 12);
  server_->Serve("/big.iso", body);
  const std::string sha = Digest("sha256", body);
  auto one = [&] {
    FetchRequest req{{server_->Url("/big.iso")}, sha, cache_.string(), "iso"};
    return fetch(req, nullptr, cancel_);
  };
  auto a = std::async(std::launch::async, one);
  auto b = std::async(std::launch::async, one);
  FetchResult ra = a.get(), rb = b.get();
  EXPECT_EQ(ra.path, rb.path);
  EXPECT_NE(ra.from_cache, rb.from_cache);  // one downloaded, the other waited and reused it
  EXPECT_EQ(ReadFile(ra.path), body);
  EXPECT_EQ(server_->Requests("/big.iso"), 1);
  EXPECT_EQ(FilesIn(cache_), std::vector<std::string>{sha + ".iso"});
}

// ---------------------------------------------------------------------------
// Failures

TEST_F(FetchTest, MismatchNamesBothChecksumsAndLeavesNoFile) {
  server_->Serve("/os.iso", "tampered");
  const std::string wrong = Digest("sha256", "genuine");
  std::string error = FetchError({server_->Url("/os.iso")}, "sha256:" + wrong);
  EXPECT_EQ(error, "checksum mismatch for " + server_->Url("/os.iso") + ": expected sha256:" + wrong +
                       " got sha256:" + Digest("sha256", "tampered"));
  EXPECT_THAT(FilesIn(cache_), IsEmpty());
}

TEST_F(FetchTest, HttpErrorNamesStatusAndUrl) {
  std::string error = FetchError({server_->Url("/missing.iso")}, "none");
  EXPECT_THAT(error, HasSubstr(server_->Url("/missing.iso")));
  EXPECT_THAT(error, HasSubstr("HTTP 404"));
  EXPECT_THAT(FilesIn(cache_), IsEmpty());
}

TEST_F(FetchTest, FallsBackToTheNextUrl) {
  const std::string body = Payload(10000, 13);
  server_->Serve("/mirror2/os.iso", body);
  FetchResult r =
      Fetch({server_->Url("/mirror1/os.iso"), server_->Url("/mirror2/os.iso")}, "sha256:" + Digest("sha256", body));
  EXPECT_EQ(r.url, server_->Url("/mirror2/os.iso"));
  EXPECT_EQ(ReadFile(r.path), body);
  EXPECT_EQ(server_->Requests("/mirror1/os.iso"), 1);
}

TEST_F(FetchTest, FollowsRedirects) {
  server_->Serve("/new/os.iso", "moved");
  server_->Redirect("/old/os.iso", server_->Url("/new/os.iso"));
  FetchResult r = Fetch({server_->Url("/old/os.iso")}, "md5:" + Digest("md5", "moved"));
  EXPECT_EQ(ReadFile(r.path), "moved");
}

TEST_F(FetchTest, WhenEveryUrlFailsEachIsListedWithItsReason) {
  server_->Serve("/bad.iso", "tampered");
  fs::path missing = dir_ / "missing.iso";
  std::string error =
      FetchError({server_->Url("/gone.iso"), server_->Url("/bad.iso"), missing.string(), "ftp://example.org/os.iso"},
                 Digest("sha256", "genuine"));
  EXPECT_THAT(error, HasSubstr("none of the 4 URLs could be fetched"));
  EXPECT_THAT(error, HasSubstr("cannot download " + server_->Url("/gone.iso") + ": the server answered HTTP 404"));
  EXPECT_THAT(error, HasSubstr("checksum mismatch for " + server_->Url("/bad.iso")));
  EXPECT_THAT(error, HasSubstr(missing.string() + " does not exist"));
  EXPECT_THAT(error, HasSubstr("scheme 'ftp'"));
}

TEST_F(FetchTest, ProgressReportsBytesAndEndsComplete) {
  const std::string body = Payload(3u << 20, 14);
  server_->Serve("/os.iso", body);
  std::vector<std::pair<uint64_t, uint64_t>> calls;
  FetchRequest req{{server_->Url("/os.iso")}, Digest("sha256", body), cache_.string(), ""};
  fetch(
      req, [&](uint64_t done, uint64_t total) { calls.emplace_back(done, total); }, cancel_);
  ASSERT_FALSE(calls.empty());
  EXPECT_EQ(calls.back(), std::make_pair(uint64_t{body.size()}, uint64_t{body.size()}));
  for (const auto& [done, total] : calls) EXPECT_LE(done, total);
}

TEST_F(FetchTest, CancellingAStalledDownloadStopsPromptlyAndLeavesNoPartFile) {
  server_->Stall("/slow.iso", Payload(64 * 1024, 15));
  std::atomic<bool> started{false};
  auto download = std::async(std::launch::async, [&] {
    FetchRequest req{{server_->Url("/slow.iso")}, "none", cache_.string(), "iso"};
    return fetch(
        req, [&](uint64_t done, uint64_t) { started = done > 0; }, cancel_);
  });
  auto deadline = Clock::now() + 10s;
  while (!started && Clock::now() < deadline) std::this_thread::sleep_for(10ms);
  ASSERT_TRUE(started) << "the download never started";
  // A .part file is being written while the server stalls.
  std::vector<std::string> during = FilesIn(cache_);
  EXPECT_TRUE(std::any_of(during.begin(), during.end(),
                          [](const std::string& n) { return n.find(".part-") != std::string::npos; }));
  auto cancelled_at = Clock::now();
  cancel_.cancel(SIGINT);
  ASSERT_EQ(download.wait_for(5s), std::future_status::ready) << "fetch did not stop within 5 s of cancel";
  EXPECT_LT(Clock::now() - cancelled_at, 3s);
  EXPECT_THROW(download.get(), Cancelled);
  EXPECT_THAT(FilesIn(cache_), IsEmpty());
}

// ---------------------------------------------------------------------------
// Validation and the default cache directory

TEST(FetchChecksumSyntax, AcceptsEveryPackerForm) {
  const std::string sha256(64, 'a'), sha1(40, 'b'), md5(32, 'c'), sha512(128, 'd');
  const std::vector<std::string> well_formed = {"none",
                                                "sha256:" + sha256,
                                                "SHA256:" + Upper(sha256),
                                                "sha1:" + sha1,
                                                "md5:" + md5,
                                                "sha512:" + sha512,
                                                sha256,
                                                sha1,
                                                md5,
                                                sha512,
                                                std::string("file:./SHA256SUMS"),
                                                std::string("file:https://example.org/SUMS"),
                                                std::string("file:///srv/SHA256SUMS")};
  for (const std::string& ok : well_formed) EXPECT_EQ(checksum_syntax_error(ok), std::nullopt) << ok;
}

TEST(FetchChecksumSyntax, ExplainsWhatIsWrong) {
  EXPECT_THAT(checksum_syntax_error("").value_or(""), HasSubstr("empty"));
  EXPECT_THAT(checksum_syntax_error("sha256:abc").value_or(""),
              HasSubstr("a sha256 checksum has 64 hex digits, this one has 3"));
  EXPECT_THAT(checksum_syntax_error("sha265:" + std::string(64, 'a')).value_or(""),
              HasSubstr("'sha265' is not supported (did you mean 'sha256'?)"));
  EXPECT_THAT(checksum_syntax_error("sha256:" + std::string(63, 'a') + "g").value_or(""), HasSubstr("hex digits only"));
  EXPECT_THAT(checksum_syntax_error(std::string(30, 'a')).value_or(""),
              HasSubstr("has 30 hex digits; a bare checksum must have 32 (md5), 40 (sha1), 64 (sha256) or 128"));
  EXPECT_THAT(checksum_syntax_error("file:").value_or(""), HasSubstr("names no SUMS file"));
  EXPECT_THAT(checksum_syntax_error("latest").value_or(""), HasSubstr("neither hex digits nor TYPE:HEX"));
}

TEST_F(FetchTest, MalformedChecksumFailsBeforeAnyRequest) {
  std::string error = FetchError({server_->Url("/os.iso")}, "sha256:abc");
  EXPECT_THAT(error, HasSubstr("64 hex digits"));
  EXPECT_EQ(server_->Requests("/os.iso"), 0);
}

TEST(FetchCacheDir, FollowsImgbakeThenXdgThenHome) {
  ScopedEnv imgbake("IMGBAKE_CACHE_DIR"), xdg("XDG_CACHE_HOME"), home("HOME");
  imgbake.Set("/srv/imgbake-cache");
  xdg.Set("/xdg");
  home.Set("/home/u");
  EXPECT_EQ(imgbake::default_download_cache_dir(), "/srv/imgbake-cache/downloads");
  imgbake.Unset();
  EXPECT_EQ(imgbake::default_download_cache_dir(), "/xdg/imgbake/downloads");
  xdg.Set("");
  EXPECT_EQ(imgbake::default_download_cache_dir(), "/home/u/.cache/imgbake/downloads");
}

}  // namespace
