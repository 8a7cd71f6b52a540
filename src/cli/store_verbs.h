// Helpers shared by the store verbs (images, show, label, promote, ...).
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <utility>

#include "cli.h"
#include "imgbake/imagetest.h"
#include "imgbake/store.h"
#include "imgbake/test_spec.h"
#include "imgbake/util.h"

namespace imgbake::cli {

std::unique_ptr<store::Store> open_store();
nlohmann::json image_json(const store::ImageRecord& r);
// "2026-11-22T03:04:05Z" stays; the rest of a line printed for people.
std::string image_line(const store::ImageRecord& r);
// The newest recorded test run of each suite of the image (`show`, `images`), oldest suite first.
std::vector<store::TestRun> newest_test_runs(const store::Store& st, const store::ImageRecord& img);
nlohmann::json test_status_json(const std::vector<store::TestRun>& runs);
// "smoke: passed, security: FAILED" ("" when it was never tested).
std::string test_status_text(const std::vector<store::TestRun>& runs);
// Whether the image (its manifest) is a container image (tar layers) rather than files or a disk.
bool is_container_image(const nlohmann::json& manifest);
// The image's disk (a qemu image's layer): its blob digest and format ("qcow2", "raw"); empty
// when it has none.
std::pair<std::string, std::string> disk_layer(const nlohmann::json& manifest);
// Applies the layers of a container image (its manifest) to `tree` (made if missing), checking
// each layer's diff_id against the image config (export, test).
void unpack_rootfs(store::Store& st, const nlohmann::json& manifest, const std::filesystem::path& tree);

// Testing an image (test.cpp), for `imgbake test` and `imgbake build --test`: runs the spec's
// checks against the image, prints them (human view or JSON events), writes the JUnit report when
// asked, and records the signed result in the store unless told not to.
struct ImageTestOptions {
  bool json_out = false;
  std::string junit;        // a JUnit XML file to write, or ""
  bool record = true;       // sign and record the result (evidence for channel policies)
  std::string signing_key;  // "" → $IMGBAKE_SIGNING_KEY, else the user's default key
  std::string spec_name;    // where the checks came from (the statement's configuration)
  std::string spec_sha256;  // hex digest of that file
};
struct ImageTestOutcome {
  imagetest::SuiteResult result;
  std::string recorded;  // the signed statement's envelope digest, when recorded
};
ImageTestOutcome test_image(store::Store& st, const store::ImageRecord& img, const TestSpec& spec,
                            const ImageTestOptions& opts);

}  // namespace imgbake::cli
