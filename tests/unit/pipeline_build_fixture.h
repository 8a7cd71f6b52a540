// The fixture of the build executor's unit tests (test_pipeline_build_*.cpp): a template from
// text, resolve_variables + plan_builds + run_builds as `imgbake build` calls them, the events
// a user would see (the JSON Ui, into a temp file), and fakes for what a build talks to:
//
//  - FakeSink, a store::ImageSink that records each commit request as the store receives it
//    (and the provenance statement the build signs for it), or fails when told to;
//  - the builder "test-machine" and the provisioner "test-record" (pipeline_build_fixture.cpp),
//    which write what they do into one log: "web run:create machine", "web provision:one",
//    "web cleanup:connect".
//
// Not in an anonymous namespace: the test files share the one suite PipelineBuildTest.
#pragma once

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "imgbake/build.h"
#include "imgbake/error.h"
#include "imgbake/store.h"
#include "imgbake/ui.h"

namespace pipeline_build_fixture {

namespace fs = std::filesystem;

// The fake components' log, in order, across every build of a test (builds may run in
// parallel: guarded by a mutex).
void Record(const std::string& entry);
std::vector<std::string> Log();
// The entries of one build, without the "BUILD " prefix.
std::vector<std::string> LogOf(const std::string& build);
void ClearLog();

// What the fake store saw; shared by every FakeSink the opener made in a test.
struct SinkState {
  std::mutex mu;
  fs::path home = "/fake/store";
  bool trust = false;                                  // trusts() answers this
  std::optional<std::string> fail;                     // commit() throws StoreError(*fail)
  bool unchanged = false;                              // commit() says the content was already there
  int opened = 0;                                      // times the opener was called
  std::vector<std::string> trusts_asked;               // keyids
  std::vector<imgbake::store::CommitRequest> commits;  // as received (make_provenance cleared)
  std::vector<std::string> envelopes;                  // what make_provenance returned, dumped
  std::vector<nlohmann::json> statements;              // the envelopes' decoded payloads
};

class FakeSink : public imgbake::store::ImageSink {
 public:
  explicit FakeSink(std::shared_ptr<SinkState> state) : state_(std::move(state)) {}
  const fs::path& home() const override { return state_->home; }
  bool trusts(const std::string& keyid) const override;
  imgbake::store::ImageRecord commit(const imgbake::store::CommitRequest& req) override;

 private:
  std::shared_ptr<SinkState> state_;
};

// What run_builds returned, and the plan's diagnostics (a plan with errors is not run).
struct BuildResult {
  int exit_code = -1;
  std::vector<imgbake::Diagnostic> errors;
  std::vector<imgbake::Diagnostic> warnings;
};

class PipelineBuildTest : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;

  // Writes `content` to dir_/name and returns its path.
  std::string WriteFile(const std::string& name, const std::string& content);
  // dir_/template.json with `text`, parsed.
  imgbake::Template Parse(const std::string& text);
  // What `imgbake build` does with the template text: resolve the variables (all required),
  // plan, and, when that found no error, run the builds with the fake store.
  BuildResult Build(const std::string& text, imgbake::BuildOptions opts);
  imgbake::BuildOptions Options() const;  // the signing key in dir_, commit on

  // The JSON events written so far, of one kind ("error", "step_end", …), or all of them.
  std::vector<nlohmann::json> Events(const std::string& kind = "") const;
  std::string Output() const;  // every byte the Ui wrote
  // The "text" of every event of one kind.
  std::vector<std::string> Texts(const std::string& kind) const;

  fs::path dir_;
  std::string key_path_;
  std::string keyid_;
  std::shared_ptr<SinkState> sink_ = std::make_shared<SinkState>();
  FILE* out_ = nullptr;
};

}  // namespace pipeline_build_fixture
