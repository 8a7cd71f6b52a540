// The commit of a successful build to the store (commit_to_store in src/pipeline/build.cpp),
// seen from the store's side: the request a store::ImageSink receives (name, version, labels,
// channels, files, digests, trust), the provenance statement signed for it, secrets kept out of
// both, when nothing is committed, and what a failing store does to the build. The last tests
// commit to a real Store through the default opener.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "imgbake/build.h"
#include "imgbake/error.h"
#include "imgbake/provenance.h"
#include "imgbake/publish.h"
#include "imgbake/store.h"
#include "imgbake/util.h"
#include "pipeline_build_fixture.h"

namespace {

namespace fs = std::filesystem;
using pipeline_build_fixture::PipelineBuildTest;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::Pair;
using ::testing::UnorderedElementsAre;

class BuildCommitTest : public PipelineBuildTest {
 protected:
  // A file builder writing `content` to dir_/out/app.txt, and `imgbake` as the template's
  // "imgbake" section (JSON members, may be empty).
  std::string FileTemplate(const std::string& imgbake, const std::string& variables = "{}",
                           const std::string& sensitive = "[]") {
    target_ = (dir_ / "out" / "app.txt").string();
    return R"({
      "variables": )" +
           variables + R"(,
      "sensitive-variables": )" +
           sensitive + R"(,
      "builders": [{"type": "file", "name": "app", "content": "hello {{user `greeting`}}", "target": ")" +
           target_ + R"("}],
      "imgbake": {)" +
           imgbake + R"(}
    })";
  }
  std::string target_;
};

constexpr const char* kImage = R"("image": "team/app", "version": "1.2.3",
  "labels": {"org.opencontainers.image.source": "https://example.com/app", "tier": "web"},
  "channels": ["beta", "stable"])";

TEST_F(BuildCommitTest, TheStoreReceivesTheTemplatesImageVersionLabelsAndChannels) {
  std::string text = FileTemplate(kImage, R"({"greeting": "world"})");
  auto r = Build(text, Options());
  ASSERT_THAT(r.errors, IsEmpty());
  EXPECT_EQ(r.exit_code, imgbake::kExitOk);
  ASSERT_EQ(sink_->commits.size(), 1U);
  const auto& req = sink_->commits[0];
  EXPECT_EQ(req.name, "team/app");
  EXPECT_EQ(req.version, "1.2.3");
  EXPECT_THAT(req.labels, UnorderedElementsAre(Pair("org.opencontainers.image.source", "https://example.com/app"),
                                               Pair("tier", "web"), Pair("io.imgbake.build", "app")))
      << "no git labels: the template is not in a git repository";
  EXPECT_THAT(req.channels, ElementsAre("beta", "stable"));
  EXPECT_EQ(req.builder_type, "file");
  EXPECT_EQ(req.template_digest, "sha256:" + imgbake::util::sha256_hex(text));
  EXPECT_TRUE(req.embed_build_info);
  EXPECT_FALSE(req.oci);
  ASSERT_EQ(req.files.size(), 1U);
  EXPECT_EQ(req.files[0].path, target_);
  EXPECT_EQ(req.files[0].sha256, imgbake::util::sha256_hex("hello world"));
  EXPECT_EQ(sink_->opened, 1);

  // What the user (here CI, through the JSON events) is told, and the summary's image.
  auto commit = Events("commit");
  ASSERT_EQ(commit.size(), 1U);
  EXPECT_EQ(commit[0]["ref"], "team/app:1.2.3");
  EXPECT_EQ(commit[0]["new_version"], true);
  EXPECT_EQ(commit[0]["store"], "/fake/store");
  EXPECT_EQ(commit[0]["signed_by"], keyid_);
  EXPECT_EQ(commit[0]["channels"], nlohmann::json::array({"beta", "stable"}));
  EXPECT_TRUE(commit[0]["digest"].get<std::string>().starts_with("sha256:"));
  auto summary = Events("summary");
  ASSERT_EQ(summary.size(), 1U);
  EXPECT_EQ(summary[0]["builds"][0]["image"], "team/app:1.2.3");
  EXPECT_EQ(summary[0]["builds"][0]["digest"], commit[0]["digest"]);
}

TEST_F(BuildCommitTest, CommandLineVersionAndLabelsWinOverTheTemplates) {
  auto opts = Options();
  opts.version = "2.0.0";
  opts.labels = {{"tier", "db"}, {"owner", "ops"}};
  Build(FileTemplate(kImage, R"({"greeting": "x"})"), opts);
  ASSERT_EQ(sink_->commits.size(), 1U);
  const auto& req = sink_->commits[0];
  EXPECT_EQ(req.version, "2.0.0");
  EXPECT_EQ(req.labels.at("tier"), "db");
  EXPECT_EQ(req.labels.at("owner"), "ops");
  EXPECT_EQ(req.labels.at("org.opencontainers.image.source"), "https://example.com/app");
}

TEST_F(BuildCommitTest, WithoutAVersionTheStoreNumbersItAndTheImageIsNamedAfterTheBuild) {
  Build(FileTemplate("", R"({"greeting": "x"})"), Options());
  ASSERT_EQ(sink_->commits.size(), 1U);
  EXPECT_EQ(sink_->commits[0].name, "app");
  EXPECT_FALSE(sink_->commits[0].version.has_value());
  EXPECT_THAT(sink_->commits[0].channels, IsEmpty());
  auto commit = Events("commit");
  ASSERT_EQ(commit.size(), 1U);
  EXPECT_EQ(commit[0]["ref"], "app:1");
}

TEST_F(BuildCommitTest, TheImageSectionIsRenderedWithTheVariables) {
  auto opts = Options();
  opts.vars = {{"release", "7"}, {"channel", "edge"}};
  Build(FileTemplate(R"("image": "app-{{user `channel`}}", "version": "1.{{user `release`}}",
                        "labels": {"release": "r{{user `release`}}"}, "channels": ["{{user `channel`}}"])",
                     R"({"greeting": "x", "release": "0", "channel": "stable"})"),
        opts);
  ASSERT_EQ(sink_->commits.size(), 1U);
  const auto& req = sink_->commits[0];
  EXPECT_EQ(req.name, "app-edge");
  EXPECT_EQ(req.version, "1.7");
  EXPECT_EQ(req.labels.at("release"), "r7");
  EXPECT_THAT(req.channels, ElementsAre("edge"));
}

TEST_F(BuildCommitTest, TheStoreIsAskedWhetherItTrustsTheSigningKey) {
  Build(FileTemplate("", R"({"greeting": "x"})"), Options());
  EXPECT_THAT(sink_->trusts_asked, ElementsAre(keyid_));
  ASSERT_EQ(sink_->commits.size(), 1U);
  EXPECT_FALSE(sink_->commits[0].signature_trusted);

  sink_->trust = true;
  Build(FileTemplate("", R"({"greeting": "y"})"), Options());
  ASSERT_EQ(sink_->commits.size(), 2U);
  EXPECT_TRUE(sink_->commits[1].signature_trusted) << "a protected channel takes this commit";
}

TEST_F(BuildCommitTest, TheProvenanceNamesTheBuildAndItsSubjects) {
  Build(FileTemplate(kImage, R"({"greeting": "world"})"), Options());
  ASSERT_EQ(sink_->statements.size(), 1U);
  const auto& s = sink_->statements[0];
  ASSERT_TRUE(s.contains("subject")) << s.dump();
  std::vector<std::string> subjects;
  for (const auto& sub : s["subject"]) subjects.push_back(sub["name"].get<std::string>());
  EXPECT_THAT(subjects, ElementsAre("team/app:1.2.3", "app.txt"));
  EXPECT_THAT(sink_->envelopes[0], HasSubstr(keyid_));
  std::string dump = s.dump();
  EXPECT_THAT(dump, HasSubstr("\"greeting\":\"world\"")) << "plain variables are recorded as they were";
}

TEST_F(BuildCommitTest, SensitiveValuesReachNeitherTheCommitNorItsProvenance) {
  // The secret reaches the labels through the template's "imgbake" section and a --label.
  auto opts = Options();
  opts.vars = {{"token", "tok-5ecret-value"}};
  opts.labels = {{"from-flag", "x-tok-5ecret-value"}};
  Build(FileTemplate(R"("image": "app", "labels": {"auth": "Bearer {{user `token`}}"})",
                     R"({"greeting": "x", "token": null})", R"(["token"])"),
        opts);
  ASSERT_EQ(sink_->commits.size(), 1U);
  const auto& req = sink_->commits[0];
  EXPECT_EQ(req.labels.at("auth"), "Bearer <sensitive>");
  EXPECT_EQ(req.labels.at("from-flag"), "x-<sensitive>");
  for (const auto& [k, v] : req.labels) EXPECT_THAT(v, Not(HasSubstr("5ecret"))) << k;
  ASSERT_EQ(sink_->envelopes.size(), 1U);
  EXPECT_THAT(sink_->envelopes[0], Not(HasSubstr("5ecret")));
  std::string statement = sink_->statements[0].dump();
  EXPECT_THAT(statement, Not(HasSubstr("5ecret")));
  EXPECT_THAT(statement, HasSubstr("\"token\":\"<sensitive>\""));
  EXPECT_THAT(Output(), Not(HasSubstr("5ecret")));
}

TEST_F(BuildCommitTest, ASecretInAPlainVariableIsMaskedInTheProvenanceToo) {
  // "dsn" is not sensitive, but it contains the value of one that is.
  auto opts = Options();
  opts.vars = {{"password", "pw-5ecret"}};
  Build(FileTemplate("", R"({"greeting": "x", "password": null, "dsn": "db://u:{{user `password`}}@h"})",
                     R"(["password"])"),
        opts);
  ASSERT_EQ(sink_->statements.size(), 1U);
  std::string statement = sink_->statements[0].dump();
  EXPECT_THAT(statement, Not(HasSubstr("5ecret")));
  EXPECT_THAT(statement, HasSubstr("db://u:<sensitive>@h"));
}

TEST_F(BuildCommitTest, NothingIsCommittedWithoutFilesOrWithCommitOff) {
  // The null builder makes no artifact: the store is not even opened.
  auto r = Build(R"({"builders": [{"type": "null"}]})", Options());
  EXPECT_EQ(r.exit_code, imgbake::kExitOk);
  EXPECT_EQ(sink_->opened, 0);
  EXPECT_THAT(Texts("message"), Contains("nothing to commit to the store: the build produced no files"));

  auto opts = Options();
  opts.commit = false;  // --no-store
  r = Build(FileTemplate("", R"({"greeting": "x"})"), opts);
  EXPECT_EQ(r.exit_code, imgbake::kExitOk);
  EXPECT_EQ(sink_->opened, 0);
  EXPECT_TRUE(fs::exists(target_)) << "the artifact itself stays";
}

TEST_F(BuildCommitTest, AFailingStoreFailsTheBuildAndSaysWhy) {
  sink_->fail = "version 1.2.3 of team/app exists with another digest";
  auto r = Build(FileTemplate(kImage, R"({"greeting": "x"})"), Options());
  EXPECT_EQ(r.exit_code, imgbake::kExitFailure);
  EXPECT_THAT(Texts("error"), ElementsAre("commit to store: version 1.2.3 of team/app exists with another digest"));
  auto end = Events("build_end");
  ASSERT_EQ(end.size(), 1U);
  EXPECT_EQ(end[0]["status"], "failed");
  std::vector<std::string> steps;
  for (const auto& e : Events("step_end"))
    steps.push_back(e["step"].get<std::string>() + "=" + e["status"].get<std::string>());
  EXPECT_THAT(steps, Contains("commit to store=failed"));
}

TEST_F(BuildCommitTest, AnUnchangedImageIsReportedAsSuch) {
  sink_->unchanged = true;
  auto r = Build(FileTemplate(kImage, R"({"greeting": "x"})"), Options());
  EXPECT_EQ(r.exit_code, imgbake::kExitOk);
  auto commit = Events("commit");
  ASSERT_EQ(commit.size(), 1U);
  EXPECT_EQ(commit[0]["ref"], "team/app:1.2.3");
  EXPECT_EQ(commit[0]["new_version"], false);
}

// ---- the real store, through the default opener -----------------------------------------------

TEST_F(BuildCommitTest, WithoutAnOpenerTheBuildCommitsToTheStoreAtStoreHome) {
  std::string text = FileTemplate(kImage, R"({"greeting": "real"})");
  imgbake::Template t = Parse(text);
  auto opts = Options();
  opts.store_home = (dir_ / "store").string();
  imgbake::Diagnostics diags;
  imgbake::Variables vars = imgbake::resolve_variables(t, opts, diags, true);
  auto plans = imgbake::plan_builds(t, vars, opts, diags);
  ASSERT_FALSE(diags.has_errors());
  imgbake::Ui ui(imgbake::OutputMode::Json, out_, out_, false, vars.masker);
  EXPECT_EQ(imgbake::run_builds(t, plans, opts, ui), imgbake::kExitOk);

  imgbake::store::Store store(dir_ / "store");
  auto images = store.images();
  ASSERT_EQ(images.size(), 1U);
  EXPECT_EQ(images[0].ref(), "team/app:1.2.3");
  EXPECT_EQ(images[0].labels.at("tier"), "web");
  EXPECT_EQ(images[0].labels.at("io.imgbake.build"), "app");
  EXPECT_EQ(store.resolve("team/app:stable").version, "1.2.3");
  EXPECT_FALSE(images[0].provenance_digest.empty());
}

TEST_F(BuildCommitTest, TheStoreTrustsTheKeysInTheUsersTrustedDirectoryNotItsOwn) {
  imgbake::store::Store store(dir_ / "store");
  auto other = imgbake::provenance::SigningKey::generate();
  EXPECT_FALSE(store.trusts(keyid_));
  // Whoever can write the store could put a key here: it is not trusted.
  fs::create_directories(dir_ / "store" / "trusted");
  fs::copy_file(key_path_ + ".pub", dir_ / "store" / "trusted" / "ci.pub");
  EXPECT_FALSE(store.trusts(keyid_));
  auto anchors = imgbake::trust_anchors(store);
  EXPECT_THAT(anchors.warnings, Contains(HasSubstr((dir_ / "store" / "trusted").string() + " are not trusted")));
  // The user's configuration is where trust lives.
  fs::path trusted = imgbake::config_home() / "trusted";
  fs::create_directories(trusted);
  fs::copy_file(key_path_ + ".pub", trusted / "ci.pub", fs::copy_options::overwrite_existing);
  EXPECT_TRUE(store.trusts(keyid_));
  EXPECT_FALSE(store.trusts(other.keyid()));
  // Unless another user could have written the file.
  fs::permissions(trusted / "ci.pub", fs::perms::others_write, fs::perm_options::add);
  EXPECT_FALSE(store.trusts(keyid_));
  EXPECT_THAT(imgbake::trust_anchors(store).warnings, Contains(HasSubstr("can be written by other users (mode 0646)")));
  fs::remove(trusted / "ci.pub");
}

}  // namespace
