// The file builder (Packer's "file"): writes `content`, or copies `source`, to
// `target`. The artifact is the target file; its id is the file's sha256.
#include <filesystem>

#include "imgbake/builder.h"
#include "imgbake/error.h"
#include "imgbake/util.h"

namespace imgbake {
namespace {

struct FileConfig {
  std::optional<std::string> content;
  std::string source;
  std::string target;
};

class WriteFileStep : public Step {
 public:
  explicit WriteFileStep(const FileConfig& c) : c_(c) {}
  std::string name() const override { return "write " + c_.target; }
  nlohmann::json key_material(const State&) const override {
    nlohmann::json m = {{"step", "file"}, {"target", c_.target}};
    if (c_.content)
      m["content_sha256"] = util::sha256_hex(*c_.content);
    else
      m["source_sha256"] = util::file_digest_hex(c_.source);
    return m;
  }
  void run(State& st) override {
    std::filesystem::path target(c_.target);
    if (target.has_parent_path()) std::filesystem::create_directories(target.parent_path());
    if (c_.content) {
      util::write_file_atomic(target, *c_.content);
      st.message("wrote " + std::to_string(c_.content->size()) + " bytes to " + c_.target);
    } else {
      // Copy to a temp name beside the target, then rename: never a half-written target.
      std::filesystem::path tmp = target;
      tmp += ".imgbake-tmp";
      std::filesystem::copy_file(c_.source, tmp, std::filesystem::copy_options::overwrite_existing);
      std::filesystem::rename(tmp, target);
      st.message("copied " + c_.source + " to " + c_.target);
    }
  }
  void cleanup(State&) noexcept override {}

 private:
  const FileConfig& c_;
};

class ArtifactStep : public Step {
 public:
  explicit ArtifactStep(const FileConfig& c) : c_(c) {}
  std::string name() const override { return "artifact"; }
  nlohmann::json key_material(const State&) const override { return {{"step", "artifact"}}; }
  bool silent() const override { return true; }
  void run(State& st) override {
    auto a = std::make_shared<Artifact>();
    a->builder_type = "file";
    a->files = describe_files({c_.target});
    a->id = "sha256:" + a->files.front().sha256;
    // A copied source is the image's parent: the base it was made from.
    if (!c_.source.empty()) a->metadata["parent"] = "sha256:" + util::file_digest_hex(c_.source);
    st.artifact = a;
  }

 private:
  const FileConfig& c_;
};

class FileBuilder : public Builder {
 public:
  void prepare(ConfigReader& cfg) override {
    cfg_.content = cfg.optional_string("content");
    cfg_.source = cfg.string("source");
    cfg_.target = cfg.string("target");
    if (cfg_.target.empty()) cfg.require("target");
    if (cfg_.content && !cfg_.source.empty()) cfg.error("source", "give either 'content' or 'source', not both");
    if (!cfg_.content && cfg_.source.empty()) cfg.error("'content' or 'source' is required");
    if (!cfg_.source.empty() && !std::filesystem::is_regular_file(cfg_.source))
      cfg.error("source", "source file '" + cfg_.source + "' does not exist or is not a regular file");
  }

  StepList steps(StepList provision) override {
    StepList s;
    s.push_back(std::make_unique<WriteFileStep>(cfg_));
    for (auto& p : provision) s.push_back(std::move(p));
    s.push_back(std::make_unique<ArtifactStep>(cfg_));
    return s;
  }

 private:
  FileConfig cfg_;
};

}  // namespace
}  // namespace imgbake

IMGBAKE_REGISTER_BUILDER("file", imgbake::FileBuilder)
