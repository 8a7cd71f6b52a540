// The in-toto Statement v1 / SLSA provenance v1 built from a run's facts.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <utility>
#include <vector>

#include "imgbake/provenance.h"

namespace {

using imgbake::provenance::BuildFacts;
using imgbake::provenance::make_statement;
using nlohmann::json;
using namespace std::chrono_literals;

const std::string kHashA(64, 'a');
const std::string kHashB(64, 'b');
const std::string kHashC(64, 'c');
const std::string kHashD(64, 'd');
const std::string kHashE(64, 'e');
const std::string kHashF(64, 'f');

// 2026-11-22T03:04:05Z, from its Unix time, plus a fraction the statement drops.
std::chrono::system_clock::time_point at(int64_t unix_seconds, std::chrono::milliseconds extra = 0ms) {
  return std::chrono::system_clock::time_point(std::chrono::seconds(unix_seconds)) + extra;
}
constexpr int64_t kStart = 1795316645;  // 2026-11-22T03:04:05Z

BuildFacts filled_facts() {
  BuildFacts f;
  f.subjects = {{"output/disk.qcow2", kHashA}, {"output/disk.qcow2.sha256", kHashB}};
  f.builder_type = "qemu";
  f.build_name = "ubuntu";
  f.imgbake_version = "0.1.0";
  f.template_path = "templates/ubuntu.json";
  f.template_sha256 = kHashC;
  f.variables = {{"user", "alice"}, {"password", "<sensitive>"}};
  f.only = {"ubuntu"};
  f.except = {"debian", "fedora"};
  f.git_commit = "0123456789abcdef0123456789abcdef01234567";
  f.git_branch = "main";
  f.git_dirty = true;
  f.git_remote = "https://github.com/example/images.git";
  f.parent = "sha256:" + kHashD;
  f.inputs = {{"scripts/setup.sh", kHashE}, {"files/motd", kHashF}};
  f.invocation_id = "7d9f2c1e-5b7a-4f0e-9a38-2a6c1b9e4d10";
  f.started = at(kStart, 750ms);
  f.finished = at(kStart + 3723);
  f.steps = {{"builder/qemu/disk", "sha256:" + kHashA, 1.5}, {"provisioner/shell", "sha256:" + kHashB, 42.25}};
  return f;
}

TEST(ProvenanceStatement, FilledFacts) {
  json s = make_statement(filled_facts());
  json want = json::parse(R"({
    "_type": "https://in-toto.io/Statement/v1",
    "subject": [
      {"name": "output/disk.qcow2", "digest": {"sha256": "HASH_A"}},
      {"name": "output/disk.qcow2.sha256", "digest": {"sha256": "HASH_B"}}
    ],
    "predicateType": "https://slsa.dev/provenance/v1",
    "predicate": {
      "buildDefinition": {
        "buildType": "https://imgbake.dev/buildtypes/packer-json/v1",
        "externalParameters": {
          "template": {"path": "templates/ubuntu.json", "digest": {"sha256": "HASH_C"}},
          "variables": {"user": "alice", "password": "<sensitive>"},
          "only": ["ubuntu"],
          "except": ["debian", "fedora"]
        },
        "internalParameters": {"builder_type": "qemu", "build_name": "ubuntu"},
        "resolvedDependencies": [
          {"uri": "git+https://github.com/example/images.git",
           "digest": {"gitCommit": "0123456789abcdef0123456789abcdef01234567"},
           "annotations": {"branch": "main", "dirty": true}},
          {"name": "parent", "digest": {"sha256": "HASH_D"}},
          {"name": "scripts/setup.sh", "digest": {"sha256": "HASH_E"}},
          {"name": "files/motd", "digest": {"sha256": "HASH_F"}}
        ]
      },
      "runDetails": {
        "builder": {"id": "https://imgbake.dev/imgbake@0.1.0", "version": {"imgbake": "0.1.0"}},
        "metadata": {
          "invocationId": "7d9f2c1e-5b7a-4f0e-9a38-2a6c1b9e4d10",
          "startedOn": "2026-11-22T03:04:05Z",
          "finishedOn": "2026-11-22T04:06:08Z"
        },
        "byproducts": [
          {"name": "step/builder/qemu/disk", "digest": {"sha256": "HASH_A"}, "annotations": {"duration_s": 1.5}},
          {"name": "step/provisioner/shell", "digest": {"sha256": "HASH_B"}, "annotations": {"duration_s": 42.25}}
        ]
      }
    }
  })");
  // Placeholders keep the expected document readable.
  std::string text = want.dump();
  const std::vector<std::pair<std::string, std::string>> hashes = {
      {"HASH_A", kHashA}, {"HASH_B", kHashB}, {"HASH_C", kHashC},
      {"HASH_D", kHashD}, {"HASH_E", kHashE}, {"HASH_F", kHashF},
  };
  for (const auto& [name, hash] : hashes) {
    size_t pos = 0;
    while ((pos = text.find(name)) != std::string::npos) text.replace(pos, name.size(), hash);
  }
  EXPECT_EQ(s, json::parse(text)) << s.dump(2);
}

TEST(ProvenanceStatement, VariablesPassedAsGiven) {
  BuildFacts f = filled_facts();
  f.variables = {{"password", "<sensitive>"}, {"empty", ""}, {"region", "eu-west-1"}};
  json vars = make_statement(f)["predicate"]["buildDefinition"]["externalParameters"]["variables"];
  EXPECT_EQ(vars, json({{"password", "<sensitive>"}, {"empty", ""}, {"region", "eu-west-1"}}));
  EXPECT_EQ(vars.size(), 3u);
}

TEST(ProvenanceStatement, OptionalPartsOmittedWhenUnset) {
  BuildFacts f;
  f.subjects = {{"out.img", kHashA}};
  f.builder_type = "file";
  f.build_name = "file";
  f.imgbake_version = "0.1.0";
  f.template_path = "t.json";
  f.template_sha256 = kHashB;
  json s = make_statement(f);
  const json& def = s["predicate"]["buildDefinition"];
  EXPECT_EQ(def["externalParameters"], json::parse(R"({"template": {"path": "t.json", "digest": {"sha256": ")" +
                                                   kHashB + R"("}}, "variables": {}})"));
  EXPECT_FALSE(def.contains("resolvedDependencies"));
  const json& run = s["predicate"]["runDetails"];
  EXPECT_EQ(run, json::parse(R"({"builder": {"id": "https://imgbake.dev/imgbake@0.1.0",
                                             "version": {"imgbake": "0.1.0"}}})"));
  EXPECT_EQ(s["subject"], json::parse(R"([{"name": "out.img", "digest": {"sha256": ")" + kHashA + R"("}}])"));
}

TEST(ProvenanceStatement, SubjectIsAlwaysAList) {
  json s = make_statement(BuildFacts{});
  ASSERT_TRUE(s["subject"].is_array());
  EXPECT_TRUE(s["subject"].empty());
  EXPECT_EQ(s["_type"], "https://in-toto.io/Statement/v1");
  EXPECT_EQ(s["predicateType"], "https://slsa.dev/provenance/v1");
}

TEST(ProvenanceStatement, GitWithoutRemoteOrBranch) {
  BuildFacts f = filled_facts();
  f.git_remote.reset();
  f.git_branch.reset();
  f.git_dirty = false;
  f.parent.reset();
  f.inputs.clear();
  json deps = make_statement(f)["predicate"]["buildDefinition"]["resolvedDependencies"];
  EXPECT_EQ(deps, json::parse(R"([{"uri": "git+file:",
                                   "digest": {"gitCommit": "0123456789abcdef0123456789abcdef01234567"},
                                   "annotations": {"dirty": false}}])"));
}

TEST(ProvenanceStatement, GitRemoteBecomesACredentialFreeUri) {
  auto uri_for = [](const std::string& remote) {
    BuildFacts f = filled_facts();
    f.git_remote = remote;
    return make_statement(f)["predicate"]["buildDefinition"]["resolvedDependencies"][0]["uri"].get<std::string>();
  };
  EXPECT_EQ(uri_for("https://github.com/example/images.git"), "git+https://github.com/example/images.git");
  EXPECT_EQ(uri_for("https://x-access-token:ghp_secret@github.com/example/images.git"),
            "git+https://github.com/example/images.git");
  EXPECT_EQ(uri_for("https://ghp_secret@github.com/example/images"), "git+https://github.com/example/images");
  EXPECT_EQ(uri_for("ssh://git:pw@example.com:2222/images.git"), "git+ssh://git@example.com:2222/images.git");
  EXPECT_EQ(uri_for("ssh://git@example.com/images.git"), "git+ssh://git@example.com/images.git");
  EXPECT_EQ(uri_for("git@github.com:example/images.git"), "git+ssh://git@github.com/example/images.git");
  EXPECT_EQ(uri_for("/srv/git/images.git"), "git+file:///srv/git/images.git");
  EXPECT_EQ(uri_for("git+https://example.com/images.git"), "git+https://example.com/images.git");
  // An '@' in the path is not user info.
  EXPECT_EQ(uri_for("https://example.com/a@b/images.git"), "git+https://example.com/a@b/images.git");
}

TEST(ProvenanceStatement, ParentAsStoreRef) {
  BuildFacts f = filled_facts();
  f.parent = "base/ubuntu:24.04";
  json deps = make_statement(f)["predicate"]["buildDefinition"]["resolvedDependencies"];
  ASSERT_EQ(deps.size(), 4u);
  EXPECT_EQ(deps[1], json::parse(R"({"name": "parent", "uri": "base/ubuntu:24.04"})"));
}

TEST(ProvenanceStatement, ParentWithoutGit) {
  BuildFacts f = filled_facts();
  f.git_commit.reset();
  f.inputs.clear();
  json deps = make_statement(f)["predicate"]["buildDefinition"]["resolvedDependencies"];
  EXPECT_EQ(deps, json::parse(R"([{"name": "parent", "digest": {"sha256": ")" + kHashD + R"("}}])"));
}

TEST(ProvenanceStatement, TimesAreRfc3339Utc) {
  BuildFacts f = filled_facts();
  f.started = at(0, 1ms);      // just after the epoch is a real time
  f.finished = at(951782400);  // 2000-02-29T00:00:00Z
  json meta = make_statement(f)["predicate"]["runDetails"]["metadata"];
  EXPECT_EQ(meta["startedOn"], "1970-01-01T00:00:00Z");
  EXPECT_EQ(meta["finishedOn"], "2000-02-29T00:00:00Z");
  f.started = {};
  f.finished = {};
  f.invocation_id.clear();
  EXPECT_FALSE(make_statement(f)["predicate"]["runDetails"].contains("metadata"));
}

TEST(ProvenanceStatement, StepKeyWithoutPrefix) {
  BuildFacts f = filled_facts();
  f.steps = {{"x", kHashC, 0}};
  json byproducts = make_statement(f)["predicate"]["runDetails"]["byproducts"];
  EXPECT_EQ(byproducts, json::parse(R"([{"name": "step/x", "digest": {"sha256": ")" + kHashC +
                                    R"("}, "annotations": {"duration_s": 0.0}}])"));
}

}  // namespace
