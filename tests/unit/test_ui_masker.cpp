// Masker and Ui: sensitive values never reach the terminal or the JSON event stream.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "imgbake/artifact.h"
#include "imgbake/ui.h"
#include "imgbake/util.h"

namespace {

using imgbake::Masker;
using imgbake::OutputMode;
using imgbake::Stream;
using imgbake::Ui;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

const char* kMasked = "<sensitive>";

// ---------------------------------------------------------------- Masker

TEST(Masker, NothingRegistered) {
  Masker m;
  EXPECT_TRUE(m.empty());
  EXPECT_EQ(m.mask("nothing to hide"), "nothing to hide");
  EXPECT_EQ(m.mask(""), "");
}

TEST(Masker, SingleSecretEveryOccurrence) {
  Masker m;
  m.add("hunter2");
  EXPECT_FALSE(m.empty());
  EXPECT_EQ(m.mask("password=hunter2!"), "password=<sensitive>!");
  EXPECT_EQ(m.mask("hunter2 and hunter2hunter2"), "<sensitive> and <sensitive><sensitive>");
  EXPECT_EQ(m.mask("hunter"), "hunter");
  EXPECT_EQ(m.mask("HUNTER2"), "HUNTER2");  // exact bytes only
}

TEST(Masker, MultipleSecrets) {
  Masker m;
  m.add("s3cr3t-token");
  m.add("p@ssw0rd");
  EXPECT_EQ(m.mask("token=s3cr3t-token pw=p@ssw0rd"), "token=<sensitive> pw=<sensitive>");
  EXPECT_EQ(m.mask("p@ssw0rds3cr3t-token"), "<sensitive><sensitive>");
}

TEST(Masker, SecretContainingAnotherIsMaskedWhole) {
  // Whatever the order they were added in, the longer one wins: no "<sensitive>123" remains.
  for (bool short_first : {true, false}) {
    Masker m;
    if (short_first) {
      m.add("password");
      m.add("password123");
    } else {
      m.add("password123");
      m.add("password");
    }
    EXPECT_EQ(m.mask("a password123 b password c"), "a <sensitive> b <sensitive> c") << short_first;
  }
}

TEST(Masker, PartlyOverlappingSecretsLeaveNoFragment) {
  // "abcd" and "cdef" overlap in "abcdef": no character of either secret may remain visible.
  Masker m;
  m.add("abcd1111");
  m.add("1111wxyz");
  const std::string out = m.mask("key=abcd1111wxyz;");
  EXPECT_THAT(out, Not(HasSubstr("abcd")));
  EXPECT_THAT(out, Not(HasSubstr("wxyz")));
  EXPECT_THAT(out, Not(HasSubstr("1111")));
  EXPECT_THAT(out, HasSubstr("key="));
  EXPECT_THAT(out, HasSubstr(";"));
}

TEST(Masker, MaskingIsStableWhenASecretLooksLikeThePlaceholder) {
  // The placeholder itself must not be masked again by a shorter secret.
  Masker m;
  m.add("hunter2-long-secret");
  m.add("sensit");  // shorter, so applied after the longer secret was replaced
  EXPECT_EQ(m.mask("hunter2-long-secret"), kMasked);
  EXPECT_EQ(m.mask("a sensit b"), "a <sensitive> b");
}

TEST(Masker, EmptySecretIsIgnored) {
  Masker m;
  m.add("");
  EXPECT_TRUE(m.empty());
  EXPECT_EQ(m.mask("abc"), "abc");
  m.add("xyz1");
  m.add("");
  EXPECT_EQ(m.mask("abc xyz1"), "abc <sensitive>");
}

TEST(Masker, AddingTheSameSecretTwice) {
  Masker m;
  m.add("hunter2");
  m.add("hunter2");
  EXPECT_EQ(m.mask("hunter2"), kMasked);
}

TEST(Masker, MultiLineSecretMaskedAsAWhole) {
  Masker m;
  m.add("first-line\nsecond-line\nthird-line");
  EXPECT_EQ(m.mask("key: first-line\nsecond-line\nthird-line end"), "key: <sensitive> end");
}

TEST(Masker, MultiLineSecretMaskedLineByLine) {
  const std::string pem =
      "-----BEGIN RSA PRIVATE KEY-----\n"
      "MIIEowIBAAKCAQEAx8hWd3kDq0vQ7yZ+fake+key+material+line+one\n"
      "ZmFrZSBrZXkgbWF0ZXJpYWwgbGluZSB0d28gZm9yIHRoZSB0ZXN0cw==\n"
      "-----END RSA PRIVATE KEY-----\n";
  Masker m;
  m.add(pem);
  // A script that cats the key prints it one line at a time; each line must be caught.
  for (const auto& line : imgbake::util::split(pem, '\n')) {
    if (line.empty()) continue;
    EXPECT_EQ(m.mask(line), kMasked) << line;
    EXPECT_EQ(m.mask("    " + line + "  "), std::string("    ") + kMasked + "  ") << line;
  }
  // And the whole key printed at once is one mask.
  EXPECT_EQ(m.mask("key=" + pem), std::string("key=") + kMasked);
}

TEST(Masker, MultiLineSecretWithCrLfLines) {
  Masker m;
  m.add("abcd1234\r\nefgh5678\r\n");
  EXPECT_EQ(m.mask("abcd1234"), kMasked);
  EXPECT_EQ(m.mask("efgh5678"), kMasked);
}

TEST(Masker, VeryShortLinesOfAMultiLineSecretAreNotMaskedAlone) {
  // A JSON key file: the lone braces must not turn every "{" in the log into a mask.
  Masker m;
  m.add("{\n  \"private_key\": \"XYZSECRETXYZ\"\n}");
  EXPECT_EQ(m.mask("}"), "}");
  EXPECT_EQ(m.mask("{ a }"), "{ a }");
  EXPECT_EQ(m.mask("  \"private_key\": \"XYZSECRETXYZ\""), kMasked);
}

// ---------------------------------------------------------------- Ui, JSON mode

class UiJsonTest : public ::testing::Test {
 protected:
  UiJsonTest() : file_(std::tmpfile()), masker_(std::make_shared<Masker>()) {
    masker_->add("hunter2");
    masker_->add("-----BEGIN KEY-----\nAAAABBBBCCCC\n-----END KEY-----");
  }
  ~UiJsonTest() override {
    if (file_) std::fclose(file_);
  }

  std::unique_ptr<Ui> MakeUi(OutputMode mode = OutputMode::Json) {
    return std::make_unique<Ui>(mode, file_, file_, false, masker_);
  }

  std::string Contents() {
    std::fflush(file_);
    std::rewind(file_);
    std::string out;
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, file_)) > 0) out.append(buf, n);
    std::fseek(file_, 0, SEEK_END);
    return out;
  }

  std::vector<nlohmann::json> Events() {
    std::vector<nlohmann::json> out;
    const std::string text = Contents();
    EXPECT_TRUE(text.empty() || text.back() == '\n');
    for (const auto& line : imgbake::util::split(text, '\n')) {
      if (line.empty()) continue;
      try {
        out.push_back(nlohmann::json::parse(line));
      } catch (const std::exception& e) {
        ADD_FAILURE() << "not one JSON object per line: " << line << ": " << e.what();
      }
    }
    return out;
  }

  FILE* file_;
  std::shared_ptr<Masker> masker_;
};

TEST_F(UiJsonTest, OneJsonObjectPerLineWithMaskedText) {
  ASSERT_NE(file_, nullptr);
  auto ui = MakeUi();
  EXPECT_EQ(ui->mode(), OutputMode::Json);

  imgbake::Artifact art;
  art.builder_type = "file";
  art.id = "sha256:0123";
  art.files.push_back({"out/disk.img", 13, "abcd", ""});

  imgbake::BuildSummary sum;
  sum.name = "web";
  sum.type = "null";
  sum.ok = false;
  sum.duration = std::chrono::milliseconds(1500);
  sum.error = "step failed: password hunter2 rejected";
  sum.artifacts.push_back(std::make_shared<imgbake::Artifact>(art));

  ui->build_start("web", "null");
  ui->step_start("web", "provision", "sha256:abc");
  ui->output("web", Stream::Stdout, "echo hunter2");
  ui->output("web", Stream::Stderr, "AAAABBBBCCCC");
  ui->say("web", "connecting with hunter2");
  ui->message("web", "multi\nline hunter2");
  ui->error("web", "auth failed for hunter2");
  ui->artifact("web", art);
  ui->step_end("web", "provision", false, std::chrono::milliseconds(250), "sha256:abc");
  ui->build_end(sum);
  ui->summary({sum});

  const std::string raw = Contents();
  EXPECT_THAT(raw, Not(HasSubstr("hunter2")));
  EXPECT_THAT(raw, Not(HasSubstr("AAAABBBBCCCC")));

  auto ev = Events();
  ASSERT_EQ(ev.size(), 11u) << raw;
  std::vector<std::string> names;
  for (const auto& e : ev) {
    ASSERT_TRUE(e.is_object());
    ASSERT_TRUE(e.contains("event")) << e.dump();
    EXPECT_TRUE(e.contains("time")) << e.dump();
    names.push_back(e["event"].get<std::string>());
  }
  EXPECT_THAT(names, ElementsAre("build_start", "step_start", "log", "log", "message", "message", "error", "artifact",
                                 "step_end", "build_end", "summary"));

  EXPECT_EQ(ev[0]["build"], "web");
  EXPECT_EQ(ev[0]["builder_type"], "null");

  EXPECT_EQ(ev[1]["step"], "provision");
  EXPECT_EQ(ev[1]["key"], "sha256:abc");

  EXPECT_EQ(ev[2]["stream"], "stdout");
  EXPECT_EQ(ev[2]["text"], "echo <sensitive>");
  EXPECT_EQ(ev[3]["stream"], "stderr");
  EXPECT_EQ(ev[3]["text"], "<sensitive>");

  EXPECT_EQ(ev[4]["text"], "connecting with <sensitive>");
  EXPECT_EQ(ev[5]["text"], "multi\nline <sensitive>");  // a newline stays inside one event
  EXPECT_EQ(ev[6]["text"], "auth failed for <sensitive>");

  EXPECT_EQ(ev[7]["id"], "sha256:0123");
  EXPECT_EQ(ev[7]["builder_type"], "file");
  ASSERT_EQ(ev[7]["files"].size(), 1u);
  EXPECT_EQ(ev[7]["files"][0]["path"], "out/disk.img");
  EXPECT_EQ(ev[7]["files"][0]["size"], 13);

  EXPECT_EQ(ev[8]["status"], "failed");
  EXPECT_DOUBLE_EQ(ev[8]["duration_s"].get<double>(), 0.25);

  EXPECT_EQ(ev[9]["status"], "failed");
  EXPECT_EQ(ev[9]["error"], "step failed: password <sensitive> rejected");
  EXPECT_DOUBLE_EQ(ev[9]["duration_s"].get<double>(), 1.5);

  ASSERT_EQ(ev[10]["builds"].size(), 1u);
  EXPECT_EQ(ev[10]["builds"][0]["build"], "web");
  EXPECT_EQ(ev[10]["builds"][0]["status"], "failed");
  EXPECT_EQ(ev[10]["builds"][0]["artifacts"][0], "sha256:0123");
}

TEST_F(UiJsonTest, StatusValues) {
  auto ui = MakeUi();
  imgbake::BuildSummary ok;
  ok.name = "a";
  ok.ok = true;
  imgbake::BuildSummary cancelled;
  cancelled.name = "b";
  cancelled.cancelled = true;
  ui->step_end("a", "s", true, std::chrono::seconds(2), "k");
  ui->build_end(ok);
  ui->build_end(cancelled);
  ui->summary({ok, cancelled});
  auto ev = Events();
  ASSERT_EQ(ev.size(), 4u);
  EXPECT_EQ(ev[0]["status"], "ok");
  EXPECT_EQ(ev[1]["status"], "ok");
  EXPECT_FALSE(ev[1].contains("error"));
  EXPECT_EQ(ev[2]["status"], "cancelled");
  EXPECT_EQ(ev[3]["builds"][0]["status"], "ok");
  EXPECT_EQ(ev[3]["builds"][1]["status"], "cancelled");
}

TEST_F(UiJsonTest, WarningsAndNotes) {
  auto ui = MakeUi();
  ui->warn("web", "careful with hunter2");
  ui->note("validation passed hunter2");
  auto ev = Events();
  ASSERT_EQ(ev.size(), 2u);
  EXPECT_EQ(ev[0]["text"], "careful with <sensitive>");
  EXPECT_EQ(ev[1]["event"], "message");
  EXPECT_EQ(ev[1]["text"], "validation passed <sensitive>");
}

TEST_F(UiJsonTest, InvalidUtf8StillGivesValidJson) {
  auto ui = MakeUi();
  ui->output("web", Stream::Stdout, "bad \xFF\xFE bytes");
  auto ev = Events();
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0]["event"], "log");
}

// The Ui promises that every string goes through the Masker. Build names and output paths
// may be made from user variables ("name": "{{user `x`}}"), so they are masked too.
TEST_F(UiJsonTest, EveryFieldIsMasked) {
  auto ui = MakeUi();
  imgbake::Artifact art;
  art.builder_type = "file";
  art.id = "sha256:ff";
  art.files.push_back({"/out/hunter2/disk.img", 1, "ab", ""});
  imgbake::BuildSummary sum;
  sum.name = "build-hunter2";
  sum.ok = true;
  ui->build_start("build-hunter2", "null");
  ui->step_start("build-hunter2", "step hunter2", "k");
  ui->artifact("build-hunter2", art);
  ui->step_end("build-hunter2", "step hunter2", true, std::chrono::seconds(1), "k");
  ui->build_end(sum);
  ui->summary({sum});
  EXPECT_THAT(Contents(), Not(HasSubstr("hunter2")));
}

TEST_F(UiJsonTest, SecretsLearntWhileBuildingAreMaskedFromThenOn) {
  auto ui = MakeUi(OutputMode::Human);
  ui->message("b", "token ASIA/session+token== before");
  ui->add_secret("ASIA/session+token==");
  ui->message("b", "token ASIA/session+token== after, URL-encoded ASIA%2Fsession%2Btoken%3D%3D");
  std::string out = Contents();
  EXPECT_THAT(out, HasSubstr("before"));
  EXPECT_THAT(out, HasSubstr("token <sensitive> after, URL-encoded <sensitive>"));
  EXPECT_EQ(imgbake::util::split(out, '\n').size(), 3u) << out;
}

TEST(Masker, AddingWhileOtherThreadsMask) {
  Masker m;
  std::atomic<bool> stop = false;
  // Without the Masker's lock, add() reallocating its list while mask() walks it is a
  // use-after-free that ASan reports.
  std::thread reader([&] {
    while (!stop) {
      std::string masked = m.mask("x secret-0 y");
      EXPECT_TRUE(masked == "x secret-0 y" || masked == "x <sensitive> y") << masked;
    }
  });
  for (int i = 0; i < 200; ++i) m.add("secret-" + std::to_string(i));
  stop = true;
  reader.join();
  EXPECT_EQ(m.mask("x secret-0 y secret-199"), "x <sensitive> y <sensitive>");
}

TEST(Masker, EveryEncodingOfASecretIsMasked) {
  // A secret with a quote, a backslash and an apostrophe, as JSON, a shell and a URL write it.
  const std::string secret = "p\"a\\ss'w rd";
  Masker m;
  m.add(secret);
  nlohmann::json j = {{"token", secret}};
  EXPECT_EQ(m.mask(j.dump()), "{\"token\":\"<sensitive>\"}");
  EXPECT_EQ(m.mask("TOKEN='p\"a\\ss'\\''w rd'"), "TOKEN='<sensitive>'");
  EXPECT_EQ(m.mask("https://x/?t=p%22a%5Css%27w%20rd"), "https://x/?t=<sensitive>");
  EXPECT_EQ(m.mask(secret), kMasked);
}

TEST(Masker, RedactReplacesASecretByItsDigest) {
  Masker m;
  m.add("hunter2");
  const std::string digest = "<sensitive sha256:" + imgbake::util::sha256_hex("hunter2").substr(0, 16) + ">";
  EXPECT_EQ(m.redact("PASSWORD=hunter2"), "PASSWORD=" + digest);
  // Its encodings digest to the same: the key material does not depend on how it was written.
  EXPECT_EQ(m.redact(nlohmann::json("hunter2").dump()), "\"" + digest + "\"");
  EXPECT_EQ(m.redact("nothing here"), "nothing here");
  Masker other;
  other.add("hunter3");
  EXPECT_NE(other.redact("PASSWORD=hunter3"), m.redact("PASSWORD=hunter2"));  // a changed secret changes it
}

// ---------------------------------------------------------------- Ui, human mode

TEST_F(UiJsonTest, HumanModeMasksAndPrefixesEveryLine) {
  auto ui = MakeUi(OutputMode::Human);
  ui->say("web", "first\nsecret hunter2");
  ui->message("web", "msg");
  EXPECT_EQ(Contents(), "==> web: first\n==> web: secret <sensitive>\n    web: msg\n");
}

TEST_F(UiJsonTest, HumanModeMasksMultiLineSecretPrintedAtOnce) {
  auto ui = MakeUi(OutputMode::Human);
  ui->output("web", Stream::Stdout, "-----BEGIN KEY-----\nAAAABBBBCCCC\n-----END KEY-----");
  EXPECT_THAT(Contents(), Not(HasSubstr("AAAABBBBCCCC")));
}

}  // namespace
