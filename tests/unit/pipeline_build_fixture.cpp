// The fakes of pipeline_build_fixture.h: FakeSink, the fixture's helpers, and the fake
// components "test-machine" (builder) and "test-record" (provisioner), registered here once
// for the whole test binary.
#include "pipeline_build_fixture.h"

#include <fstream>
#include <utility>

#include "imgbake/builder.h"
#include "imgbake/provenance.h"
#include "imgbake/provisioner.h"
#include "imgbake/util.h"

namespace pipeline_build_fixture {

using imgbake::BuildError;
using imgbake::State;
using imgbake::Step;
using imgbake::StepList;

namespace {

std::mutex log_mu;
std::vector<std::string>& log_entries() {
  static std::vector<std::string> entries;
  return entries;
}

// The fake machine's steps: each logs its run and its cleanup; `fail_step` throws.
struct MachineConfig {
  std::string fail_step;
  std::string artifact_file;  // the artifact's one file; none when empty
};

class MachineStep : public Step {
 public:
  MachineStep(std::string name, const MachineConfig& c) : name_(std::move(name)), c_(c) {}
  std::string name() const override { return name_; }
  nlohmann::json key_material(const State& /*st*/) const override { return {{"step", name_}}; }
  void run(State& st) override {
    Record(st.build.name + " run:" + name_);
    if (c_.fail_step == name_) throw BuildError("the fake machine broke in '" + name_ + "'");
  }
  void cleanup(State& st) noexcept override { Record(st.build.name + " cleanup:" + name_); }

 private:
  std::string name_;
  const MachineConfig& c_;
};

class MachineArtifactStep : public Step {
 public:
  explicit MachineArtifactStep(const MachineConfig& c) : c_(c) {}
  std::string name() const override { return "artifact"; }
  nlohmann::json key_material(const State& /*st*/) const override { return {{"step", "artifact"}}; }
  bool silent() const override { return true; }
  void run(State& st) override {
    if (c_.artifact_file.empty()) return;
    auto a = std::make_shared<imgbake::Artifact>();
    a->builder_type = "test-machine";
    a->files = imgbake::describe_files({c_.artifact_file});
    a->id = "sha256:" + a->files.front().sha256;
    st.artifact = a;
  }

 private:
  const MachineConfig& c_;
};

// create machine → connect → the provision steps → shut down → artifact, as a VM builder.
class MachineBuilder : public imgbake::Builder {
 public:
  void prepare(imgbake::ConfigReader& cfg) override {
    c_.fail_step = cfg.string("fail_step");
    c_.artifact_file = cfg.string("artifact_file");
  }
  StepList steps(StepList provision) override {
    StepList out;
    out.push_back(std::make_unique<MachineStep>("create machine", c_));
    out.push_back(std::make_unique<MachineStep>("connect", c_));
    for (auto& s : provision) out.push_back(std::move(s));
    out.push_back(std::make_unique<MachineStep>("shut down", c_));
    out.push_back(std::make_unique<MachineArtifactStep>(c_));
    return out;
  }

 private:
  MachineConfig c_;
};

// Logs "BUILD provision:NAME", says `say`, and fails when `fail` is true.
class RecordProvisioner : public imgbake::Provisioner {
 public:
  void prepare(imgbake::ConfigReader& cfg) override {
    name_ = cfg.string("name");
    say_ = cfg.string("say");
    fail_ = cfg.boolean("fail", false);
  }
  void provision(State& st) override {
    Record(st.build.name + " provision:" + name_);
    if (!say_.empty()) st.say(say_);
    if (fail_) throw BuildError("provisioner '" + name_ + "' failed on purpose");
  }
  nlohmann::json key_material() const override { return {{"name", name_}}; }

 private:
  std::string name_;
  std::string say_;
  bool fail_ = false;
};

}  // namespace

void Record(const std::string& entry) {
  std::lock_guard lock(log_mu);
  log_entries().push_back(entry);
}

std::vector<std::string> Log() {
  std::lock_guard lock(log_mu);
  return log_entries();
}

std::vector<std::string> LogOf(const std::string& build) {
  std::vector<std::string> out;
  for (const auto& e : Log())
    if (e.rfind(build + " ", 0) == 0) out.push_back(e.substr(build.size() + 1));
  return out;
}

void ClearLog() {
  std::lock_guard lock(log_mu);
  log_entries().clear();
}

bool FakeSink::trusts(const std::string& keyid) const {
  std::lock_guard lock(state_->mu);
  state_->trusts_asked.push_back(keyid);
  return state_->trust;
}

imgbake::store::ImageRecord FakeSink::commit(const imgbake::store::CommitRequest& req) {
  std::lock_guard lock(state_->mu);
  if (state_->fail) throw imgbake::store::StoreError(*state_->fail);
  std::string version = req.version.value_or(std::to_string(state_->commits.size() + 1));
  std::string manifest_digest = "sha256:" + imgbake::util::sha256_hex(req.name + ":" + version);
  std::vector<imgbake::oci::Descriptor> layers;
  for (const auto& f : req.files) {
    imgbake::oci::Descriptor d;
    d.digest = "sha256:" + f.sha256;
    d.size = f.size;
    d.annotations["org.opencontainers.image.title"] = fs::path(f.path).filename().string();
    layers.push_back(d);
  }
  // The real store asks for the provenance inside its transaction, once the version is known.
  if (req.make_provenance) {
    nlohmann::json envelope = req.make_provenance(version, manifest_digest, layers);
    state_->envelopes.push_back(envelope.dump());
    state_->statements.push_back(
        nlohmann::json::parse(imgbake::provenance::base64_decode(envelope.at("payload").get<std::string>())));
  }
  imgbake::store::CommitRequest copy = req;
  copy.make_provenance = nullptr;  // it refers to the build's stack
  state_->commits.push_back(std::move(copy));

  imgbake::store::ImageRecord rec;
  rec.name = req.name;
  rec.version = version;
  rec.manifest_digest = manifest_digest;
  rec.builder_type = req.builder_type;
  rec.labels = req.labels;
  rec.channels = req.channels;
  rec.unchanged = state_->unchanged;
  return rec;
}

void PipelineBuildTest::SetUp() {
  dir_ = fs::temp_directory_path() / ("imgbake-pipeline-build-test-" + imgbake::util::uuid_v4());
  fs::create_directories(dir_);
  key_path_ = (dir_ / "signing.key").string();
  auto key = imgbake::provenance::SigningKey::generate();
  key.save(key_path_);
  keyid_ = key.keyid();
  out_ = std::tmpfile();
  ASSERT_NE(out_, nullptr);
  ClearLog();
}

void PipelineBuildTest::TearDown() {
  if (out_) std::fclose(out_);
  fs::remove_all(dir_);
}

std::string PipelineBuildTest::WriteFile(const std::string& name, const std::string& content) {
  fs::path p = dir_ / name;
  std::ofstream(p) << content;
  return p.string();
}

imgbake::Template PipelineBuildTest::Parse(const std::string& text) {
  return imgbake::parse_template_text(text, WriteFile("template.json", text));
}

imgbake::BuildOptions PipelineBuildTest::Options() const {
  imgbake::BuildOptions opts;
  opts.signing_key = key_path_;
  opts.store_home = (dir_ / "store-not-used").string();
  return opts;
}

BuildResult PipelineBuildTest::Build(const std::string& text, imgbake::BuildOptions opts) {
  BuildResult r;
  imgbake::Template t;
  try {
    t = Parse(text);
  } catch (const imgbake::ConfigError& e) {
    ADD_FAILURE() << "the template does not parse: " << e.what();
    return r;
  }
  imgbake::Diagnostics diags;
  imgbake::Variables vars = imgbake::resolve_variables(t, opts, diags, true);
  std::vector<imgbake::BuildPlan> plans;
  if (!diags.has_errors()) plans = imgbake::plan_builds(t, vars, opts, diags);
  r.errors = diags.errors();
  r.warnings = diags.warnings();
  if (diags.has_errors()) return r;
  imgbake::Ui ui(imgbake::OutputMode::Json, out_, out_, false, vars.masker);
  std::shared_ptr<SinkState> state = sink_;
  r.exit_code = imgbake::run_builds(t, plans, opts, ui, [state]() -> std::unique_ptr<imgbake::store::ImageSink> {
    std::lock_guard lock(state->mu);
    ++state->opened;
    return std::make_unique<FakeSink>(state);
  });
  return r;
}

std::string PipelineBuildTest::Output() const {
  std::fflush(out_);
  std::rewind(out_);
  std::string text;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, out_)) > 0) text.append(buf, n);
  std::fseek(out_, 0, SEEK_END);
  return text;
}

std::vector<nlohmann::json> PipelineBuildTest::Events(const std::string& kind) const {
  std::vector<nlohmann::json> out;
  for (const auto& line : imgbake::util::split(Output(), '\n')) {
    if (line.empty()) continue;
    auto j = nlohmann::json::parse(line);
    if (kind.empty() || j["event"] == kind) out.push_back(j);
  }
  return out;
}

std::vector<std::string> PipelineBuildTest::Texts(const std::string& kind) const {
  std::vector<std::string> out;
  for (const auto& e : Events(kind))
    if (e.contains("text")) out.push_back(e["text"].get<std::string>());
  return out;
}

}  // namespace pipeline_build_fixture

IMGBAKE_REGISTER_BUILDER("test-machine", pipeline_build_fixture::MachineBuilder)
IMGBAKE_REGISTER_PROVISIONER("test-record", pipeline_build_fixture::RecordProvisioner)
