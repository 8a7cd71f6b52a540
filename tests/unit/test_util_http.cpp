// The HTTP transport (http.h) against small servers on 127.0.0.1 (http_test_server.h): retries of
// busy answers and none of client errors, redirects that keep the Authorization header on the
// request's own host only, bodies from memory, files and streams, progress, cancellation.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <stdlib.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "http_test_server.h"
#include "imgbake/http.h"
#include "imgbake/unique_fd.h"
#include "sshd_fixture.h"
#include "tls_test_server.h"

namespace {

namespace fs = std::filesystem;
namespace http = imgbake::http;
using namespace std::chrono_literals;
using http_test_server::HttpAnswer;
using http_test_server::HttpRequest;
using http_test_server::TestHttpServer;
using imgbake::CancelToken;
using Clock = std::chrono::steady_clock;

size_t Count(const TestHttpServer& server, const std::string& target) {
  size_t n = 0;
  for (const auto& r : server.requests())
    if (r.target == target) ++n;
  return n;
}

// A server that answers `target` with `status` `times` times, then with 200 "ok".
std::unique_ptr<TestHttpServer> FailingServer(const std::string& target, int status, int times,
                                              std::vector<std::string> headers = {}) {
  auto left = std::make_shared<std::atomic<int>>(times);
  return std::make_unique<TestHttpServer>([=](const HttpRequest& r) -> std::optional<HttpAnswer> {
    if (r.target != target) return HttpAnswer{404, {}, "no such path"};
    if (left->fetch_sub(1) > 0) return HttpAnswer{status, headers, "busy"};
    return HttpAnswer{200, {}, "ok"};
  });
}

TEST(HttpTransport, RetriesBusyAnswersThenReturnsTheAnswer) {
  auto server = FailingServer("/busy", 503, 2, {"Retry-After: 0"});
  std::vector<std::string> log;
  http::Session session({true, [&](std::string_view line) { log.emplace_back(line); }});
  http::Request req;
  req.url = "http://" + server->host() + "/busy";
  req.max_retries = 4;
  http::Response resp = session.send(req);
  EXPECT_EQ(resp.status, 200);
  EXPECT_EQ(resp.body, "ok");
  EXPECT_EQ(Count(*server, "/busy"), 3u);
  ASSERT_EQ(log.size(), 2u);
  EXPECT_NE(log[0].find("retry: GET /busy answered HTTP 503"), std::string::npos) << log[0];
  EXPECT_NE(log[1].find("(retry 2 of 4)"), std::string::npos) << log[1];
}

TEST(HttpTransport, GivesUpAfterItsRetriesWithTheLastAnswer) {
  auto server = FailingServer("/down", 502, 100, {"Retry-After: 0"});
  http::Session session;
  http::Request req;
  req.url = "http://" + server->host() + "/down";
  req.max_retries = 2;
  http::Response resp = session.send(req);
  EXPECT_EQ(resp.status, 502);
  EXPECT_EQ(resp.body, "busy");
  EXPECT_EQ(Count(*server, "/down"), 3u);
}

TEST(HttpTransport, BacksOffBeforeARetryWithoutRetryAfter) {
  auto server = FailingServer("/once", 500, 1);
  http::Session session;
  http::Request req;
  req.url = "http://" + server->host() + "/once";
  req.max_retries = 1;
  auto start = Clock::now();
  EXPECT_EQ(session.send(req).status, 200);
  EXPECT_GE(Clock::now() - start, 450ms) << "the first backoff is 500 ms";
}

TEST(HttpTransport, DoesNotRetryClientErrors) {
  for (int status : {400, 401, 403, 404}) {
    auto server = FailingServer("/refused", status, 100, {"Retry-After: 0"});
    http::Session session;
    http::Request req;
    req.url = "http://" + server->host() + "/refused";
    req.max_retries = 4;
    EXPECT_EQ(session.send(req).status, status);
    EXPECT_EQ(Count(*server, "/refused"), 1u) << "HTTP " << status << " was sent again";
  }
}

TEST(HttpTransport, AStreamBodyIsNeverSentTwice) {
  auto server = FailingServer("/upload", 503, 100, {"Retry-After: 0"});
  std::string data(1000, 'x');
  size_t at = 0;
  http::Reader reader = [&](char* buf, size_t cap) {
    size_t n = std::min(cap, data.size() - at);
    std::memcpy(buf, data.data() + at, n);
    at += n;
    return n;
  };
  http::Session session;
  http::Request req;
  req.method = "PUT";
  req.url = "http://" + server->host() + "/upload";
  req.body = http::Body::of_stream(&reader, data.size());
  req.max_retries = 4;
  EXPECT_EQ(session.send(req).status, 503);
  EXPECT_EQ(Count(*server, "/upload"), 1u);
  EXPECT_EQ(session.bytes_sent(), data.size());
}

TEST(HttpTransport, AuthorizationDoesNotFollowARedirectToAnotherHost) {
  TestHttpServer elsewhere([](const HttpRequest&) -> std::optional<HttpAnswer> { return HttpAnswer{200, {}, "far"}; });
  TestHttpServer origin([&](const HttpRequest& r) -> std::optional<HttpAnswer> {
    if (r.target == "/away") return HttpAnswer{307, {"Location: http://" + elsewhere.host() + "/object?sig=x"}, ""};
    if (r.target == "/hop") return HttpAnswer{302, {"Location: /final"}, ""};
    if (r.target == "/final") return HttpAnswer{200, {}, "near"};
    return HttpAnswer{404, {}, ""};
  });
  std::vector<std::string> log;
  http::Session session({true, [&](std::string_view line) { log.emplace_back(line); }});
  http::Request req;
  req.url = "http://" + origin.host() + "/away";
  req.headers = {"Authorization: Bearer s3cret", "X-Other: kept"};
  http::Response far = session.send(req);
  EXPECT_EQ(far.status, 200);
  EXPECT_EQ(far.body, "far");
  EXPECT_EQ(far.url, "http://" + elsewhere.host() + "/object?sig=x");
  ASSERT_EQ(elsewhere.requests().size(), 1u);
  EXPECT_EQ(elsewhere.requests()[0].header("authorization"), "") << "credentials went to another host";
  EXPECT_EQ(elsewhere.requests()[0].header("x-other"), "kept");
  EXPECT_EQ(origin.requests()[0].header("authorization"), "Bearer s3cret");
  ASSERT_EQ(log.size(), 1u);
  EXPECT_EQ(log[0], "redirect: GET /away → " + elsewhere.host() + " (no credentials sent there)");

  req.url = "http://" + origin.host() + "/hop";
  http::Response near = session.send(req);
  EXPECT_EQ(near.body, "near");
  for (const auto& r : origin.requests()) {
    if (r.target == "/final") {
      EXPECT_EQ(r.header("authorization"), "Bearer s3cret") << "same host keeps it";
    }
  }
}

TEST(HttpTransport, RedirectsToOtherSchemesAndEndlessRedirectsAreErrors) {
  TestHttpServer server([](const HttpRequest& r) -> std::optional<HttpAnswer> {
    if (r.target == "/file") return HttpAnswer{302, {"Location: file:///etc/passwd"}, ""};
    return HttpAnswer{302, {"Location: /loop"}, ""};
  });
  http::Session session;
  http::Request req;
  req.url = "http://" + server.host() + "/file";
  EXPECT_THROW(session.send(req), imgbake::BuildError);
  req.url = "http://" + server.host() + "/loop";
  req.max_redirects = 3;
  try {
    session.send(req);
    FAIL() << "an endless redirect was followed";
  } catch (const imgbake::BuildError& e) {
    EXPECT_NE(std::string(e.what()).find("more than 3 times"), std::string::npos) << e.what();
  }
}

// A hostile registry on one port that speaks TLS and plain HTTP: https://H/blob redirects to
// http://H/blob (same host and port), http://H/up redirects to https://H/landed.
std::string DowngradingAnswer(const tls_test_server::SeenRequest& r, const std::string& host) {
  auto answer = [](const std::string& status, const std::string& more) {
    return "HTTP/1.1 " + status + "\r\nContent-Length: 5\r\nConnection: close\r\n" + more + "\r\nclear";
  };
  if (r.tls && r.head.starts_with("GET /blob "))
    return answer("307 Temporary Redirect", "Location: http://" + host + "/blob\r\n");
  if (!r.tls && r.head.starts_with("GET /up ")) return answer("302 Found", "Location: https://" + host + "/landed\r\n");
  return answer("200 OK", "");
}

TEST(HttpTransport, AnHttpsRequestIsNeverRedirectedToPlainHttp) {
  std::string host;
  tls_test_server::DualProtocolServer server([&](const auto& r) { return DowngradingAnswer(r, host); });
  host = server.host();
  http::Session session({false, nullptr});  // the self-signed certificate is not the point here
  http::Request req;
  req.url = "https://" + host + "/blob";
  req.headers = {"Authorization: Basic dXNlcjpwYXNz"};
  try {
    session.send(req);
    FAIL() << "a redirect from https:// to http:// was followed";
  } catch (const imgbake::BuildError& e) {
    EXPECT_EQ(std::string(e.what()), "GET /blob on https://" + host + " was redirected to plain http://" + host +
                                         "/blob; refusing to leave TLS (nothing was sent there)");
  }
  std::vector<tls_test_server::SeenRequest> seen = server.requests();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_TRUE(seen[0].tls);
  EXPECT_EQ(seen[0].header("authorization"), "Basic dXNlcjpwYXNz");
}

TEST(HttpTransport, AnotherSchemeOnTheSameHostAndPortIsAnotherOrigin) {
  std::string host;
  tls_test_server::DualProtocolServer server([&](const auto& r) { return DowngradingAnswer(r, host); });
  host = server.host();
  std::vector<std::string> log;
  http::Session session({false, [&](std::string_view line) { log.emplace_back(line); }});
  http::Request req;
  req.url = "http://" + host + "/up";
  req.headers = {"Authorization: Basic dXNlcjpwYXNz"};
  http::Response resp = session.send(req);
  EXPECT_EQ(resp.status, 200);
  EXPECT_EQ(resp.url, "https://" + host + "/landed");
  std::vector<tls_test_server::SeenRequest> seen = server.requests();
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_FALSE(seen[0].tls);
  EXPECT_TRUE(seen[1].tls);
  EXPECT_EQ(seen[1].header("authorization"), "") << "credentials followed a redirect to another origin";
  ASSERT_EQ(log.size(), 1u);
  EXPECT_EQ(log[0], "redirect: GET /up → https://" + host + " (no credentials sent there)");
}

TEST(HttpTransport, StreamsA2xxBodyAndCollectsAnErrorPage) {
  std::string big = sshd_fixture::RandomBytes(3u << 20, 7);
  TestHttpServer server([&](const HttpRequest& r) -> std::optional<HttpAnswer> {
    if (r.target == "/big") return HttpAnswer{200, {}, big};
    return HttpAnswer{404, {}, "no such thing"};
  });
  std::string streamed;
  std::vector<std::pair<uint64_t, uint64_t>> calls;
  http::Session session;
  http::Request req;
  req.url = "http://" + server.host() + "/big";
  req.sink = [&](const char* d, size_t n) { streamed.append(d, n); };
  req.progress = [&](uint64_t done, uint64_t total) { calls.emplace_back(done, total); };
  http::Response resp = session.send(req);
  EXPECT_EQ(resp.status, 200);
  EXPECT_TRUE(resp.body.empty());
  EXPECT_EQ(streamed == big, true);
  for (const auto& [done, total] : calls) {
    EXPECT_LE(done, big.size());
    EXPECT_EQ(total, big.size());
  }

  streamed.clear();
  req.url = "http://" + server.host() + "/missing";
  resp = session.send(req);
  EXPECT_EQ(resp.status, 404);
  EXPECT_EQ(resp.body, "no such thing");
  EXPECT_TRUE(streamed.empty()) << "an error page went to the sink";
}

TEST(HttpTransport, UploadsFromAFileAndReportsProgress) {
  fs::path dir = fs::temp_directory_path() / ("imgbake-http-" + std::to_string(getpid()));
  fs::create_directories(dir);
  std::string data = sshd_fixture::RandomBytes(2u << 20, 11);
  sshd_fixture::WriteFile(dir / "blob", data, 0644);
  imgbake::util::UniqueFd fd(open((dir / "blob").c_str(), O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(fd.valid());
  TestHttpServer server([](const HttpRequest& r) -> std::optional<HttpAnswer> {
    return HttpAnswer{201, {}, r.header("content-length")};
  });
  std::vector<std::pair<uint64_t, uint64_t>> calls;
  http::Session session;
  http::Request req;
  req.method = "PUT";
  req.url = "http://" + server.host() + "/upload";
  req.body = http::Body::of_file(fd.get(), 1000, data.size() - 1000);
  req.progress = [&](uint64_t done, uint64_t total) { calls.emplace_back(done, total); };
  http::Response resp = session.send(req);
  EXPECT_EQ(resp.status, 201);
  EXPECT_EQ(resp.body, std::to_string(data.size() - 1000));
  EXPECT_EQ(session.bytes_sent(), data.size() - 1000);
  ASSERT_FALSE(calls.empty());
  for (const auto& [done, total] : calls) {
    EXPECT_LE(done, total);
    EXPECT_EQ(total, data.size() - 1000);
  }
  fs::remove_all(dir);
}

TEST(HttpTransport, CancellingAStalledRequestStopsItPromptly) {
  std::atomic<bool> release{false};
  TestHttpServer server([&](const HttpRequest&) -> std::optional<HttpAnswer> {
    for (auto until = Clock::now() + 20s; !release && Clock::now() < until;) std::this_thread::sleep_for(10ms);
    return HttpAnswer{200, {}, "late"};
  });
  CancelToken cancel;
  http::Session session;
  http::Request req;
  req.url = "http://" + server.host() + "/slow";
  req.cancel = &cancel;
  std::thread canceller([&] {
    std::this_thread::sleep_for(300ms);
    cancel.cancel(SIGINT);
  });
  auto start = Clock::now();
  EXPECT_THROW(session.send(req), imgbake::Cancelled);
  EXPECT_LT(Clock::now() - start, 3s);
  canceller.join();
  release = true;
}

TEST(HttpTransport, AnExceptionFromTheSinkStopsTheTransfer) {
  TestHttpServer server([](const HttpRequest&) -> std::optional<HttpAnswer> {
    return HttpAnswer{200, {}, std::string(100000, 'y')};
  });
  http::Session session;
  http::Request req;
  req.url = "http://" + server.host() + "/x";
  req.sink = [](const char*, size_t) { throw std::runtime_error("sink is full"); };
  req.max_retries = 3;
  EXPECT_THROW(session.send(req), std::runtime_error);
  EXPECT_EQ(server.requests().size(), 1u);
}

TEST(HttpTransport, ARefusedConnectionIsATransportError) {
  int port = sshd_fixture::FreePort();
  http::Session session;
  http::Request req;
  req.url = "http://127.0.0.1:" + std::to_string(port) + "/";
  try {
    session.send(req);
    FAIL() << "nothing listens there";
  } catch (const http::TransportError& e) {
    EXPECT_TRUE(e.couldnt_connect()) << e.what();
    EXPECT_EQ(e.url(), req.url);
  }
}

TEST(HttpTransport, UrlHelpers) {
  EXPECT_EQ(http::origin_of("https://Host/v2/x"), "https://host:443");
  EXPECT_EQ(http::origin_of("http://h:5000/v2/"), "http://h:5000");
  EXPECT_EQ(http::origin_of("HTTP://[::1]/x"), "http://[::1]:80");
  EXPECT_NE(http::origin_of("https://h:5000/"), http::origin_of("http://h:5000/"));
  EXPECT_EQ(http::authority_of("https://Host:5000/v2/x?y"), "host:5000");
  EXPECT_EQ(http::authority_of("http://h?q"), "h");
  EXPECT_EQ(http::path_of("https://h/v2/x?state=secret"), "/v2/x");
  EXPECT_EQ(http::resolve_url("http://h:1/a/b?q", "c"), "http://h:1/a/c");
  EXPECT_EQ(http::resolve_url("http://h:1/a/b", "/d"), "http://h:1/d");
  EXPECT_EQ(http::resolve_url("https://h/a", "//o/p"), "https://o/p");
  EXPECT_EQ(http::resolve_url("https://h/a", "http://o/p"), "http://o/p");
}

}  // namespace
