// Blob uploads of the OCI registry client: monolithic and chunked pushes, mounts, resumes after
// a dropped connection or a busy answer, cancellation, and progress (registry_client_fixture.h).
#include <gtest/gtest.h>

#include "registry_client_fixture.h"

namespace {

using namespace registry_client_fixture;

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

TEST_F(RegistryClientTest, ResumesAfterTheConnectionDropsMidUpload) {
  TestProxy proxy(registry_->port(), 6'000'000);
  std::vector<std::string> log;
  ClientOptions options = PlainHttp(&log);
  options.chunk_size = 4u << 20;
  Client client("127.0.0.1:" + std::to_string(proxy.port()), options, std::nullopt);
  CancelToken cancel;
  std::string big = RandomBytes(20u << 20, 23);
  WriteFile(work_ / "disk.raw", big, 0644);
  BlobPushResult r;
  try {
    r = client.push_blob("team/resume", Sha256(big), big.size(), work_ / "disk.raw", "", nullptr, cancel);
  } catch (const BuildError& e) {
    FAIL() << e.what() << "\nclient log:\n" << util::join(log, "\n") << "\nregistry log:\n" << registry_->log();
  }
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

TEST_F(RegistryClientTest, AnUploadRefusedWhileBusyContinuesWhereTheRegistrySaysItStands) {
  // The second chunk is refused once with 503, and the final PUT once with 429.
  auto patch = FailSome("PATCH", "/blobs/uploads/", 503, 1);
  auto put = FailSome("PUT", "/blobs/uploads/", 429, 1, {"Retry-After: 0"});
  auto patches = std::make_shared<std::atomic<int>>(0);
  TestHttpServer proxy(
      [&](const HttpRequest& r) -> std::optional<HttpAnswer> {
        if (r.method == "PATCH" && patches->fetch_add(1) == 1) return patch(r);
        if (r.method == "PUT") return put(r);
        return std::nullopt;
      },
      registry_->port());
  std::vector<std::string> log;
  ClientOptions options = PlainHttp(&log);
  options.chunk_size = 1u << 20;
  Client client(proxy.host(), options, std::nullopt);
  CancelToken cancel;
  std::string big = RandomBytes(3u << 20, 31);
  WriteFile(work_ / "disk.raw", big, 0644);
  BlobPushResult r = client.push_blob("team/refused", Sha256(big), big.size(), work_ / "disk.raw", "", nullptr, cancel);
  EXPECT_TRUE(r.resumed);
  EXPECT_EQ(Sha256(FetchBlob(client, "team/refused", Sha256(big), big.size())), Sha256(big));
  std::string all = Lines(log);
  EXPECT_NE(all.find("answered HTTP 503"), std::string::npos) << all;
  EXPECT_NE(all.find("answered HTTP 429"), std::string::npos) << all;
  EXPECT_NE(all.find("resume: continuing the upload of " + Sha256(big) + " at byte 1048576"), std::string::npos) << all;
}

TEST_F(RegistryClientTest, ReportsProgressPerBlobRateLimitedWithAFinalCall) {
  std::mutex mutex;
  std::vector<ProgressCall> calls;
  ClientOptions options = PlainHttp();
  options.chunk_size = 1u << 20;
  options.progress = [&](const std::string& digest, uint64_t done, uint64_t total) {
    std::lock_guard<std::mutex> lock(mutex);
    calls.push_back({digest, done, total, Clock::now()});
  };
  // Slowed down to about 3 MB/s so that the upload takes a few seconds.
  TestProxy slow(registry_->port(), 0, 64 * 1024);
  Client client("127.0.0.1:" + std::to_string(slow.port()), options, std::nullopt);
  CancelToken cancel;
  std::string big = RandomBytes(6u << 20, 37);
  WriteFile(work_ / "disk.raw", big, 0644);
  auto started = Clock::now();
  client.push_blob("team/progress", Sha256(big), big.size(), work_ / "disk.raw", "", nullptr, cancel);
  double seconds = std::chrono::duration<double>(Clock::now() - started).count();

  ASSERT_FALSE(calls.empty());
  for (const auto& c : calls) {
    EXPECT_EQ(c.digest, Sha256(big));
    EXPECT_EQ(c.total, big.size());
  }
  EXPECT_EQ(calls.back().done, big.size()) << "the last call says the blob is complete";
  for (size_t i = 1; i < calls.size(); ++i) EXPECT_GE(calls[i].done, calls[i - 1].done) << "call " << i;
  EXPECT_GE(calls.size(), 5u) << "an upload of " << seconds << " s reports as it goes";
  EXPECT_LE(static_cast<double>(calls.size()), seconds * 10 + 2) << "about 10 calls a second";
  for (size_t i = 1; i + 1 < calls.size(); ++i)
    EXPECT_GE(calls[i].at - calls[i - 1].at, 95ms) << "calls " << i - 1 << " and " << i << " (across chunks too)";

  // Downloads report too; a blob that is not sent again reports nothing.
  calls.clear();
  EXPECT_EQ(Sha256(FetchBlob(client, "team/progress", Sha256(big), big.size())), Sha256(big));
  ASSERT_FALSE(calls.empty());
  EXPECT_EQ(calls.back().done, big.size());
  EXPECT_EQ(calls.back().total, big.size());
  calls.clear();
  BlobPushResult again =
      client.push_blob("team/progress", Sha256(big), big.size(), work_ / "disk.raw", "", nullptr, cancel);
  EXPECT_TRUE(again.existed);
  EXPECT_TRUE(calls.empty());
}

TEST_F(RegistryClientTest, ProgressBecomesJsonEventLines) {
  std::vector<std::string> lines;
  ClientOptions options = PlainHttp();
  options.chunk_size = 1u << 20;
  options.progress = json_progress_events([&](const std::string& line) { lines.push_back(line); });
  Client client(registry_->host(), options, std::nullopt);
  CancelToken cancel;
  std::string config = "{\"config\":{}}";
  std::string big = RandomBytes(3u << 20, 41);
  WriteFile(work_ / "disk.raw", big, 0644);
  client.push_blob_bytes("team/json-progress", Sha256(config), config, cancel);
  client.push_blob("team/json-progress", Sha256(big), big.size(), work_ / "disk.raw", "", nullptr, cancel);
  ASSERT_GE(lines.size(), 2u);
  std::map<std::string, nlohmann::json> last;
  for (const std::string& line : lines) {
    nlohmann::json event = nlohmann::json::parse(line);
    EXPECT_EQ(event["event"], "progress") << line;
    last[event["digest"].get<std::string>()] = event;
  }
  ASSERT_EQ(last.size(), 2u);
  EXPECT_EQ(last[Sha256(big)]["done"], big.size());
  EXPECT_EQ(last[Sha256(big)]["total"], big.size());
  EXPECT_EQ(last[Sha256(config)]["done"], config.size());
}

}  // namespace
