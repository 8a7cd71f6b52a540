// Packer's checksum post-processor: one checksum file per type, lines
// "<hex digest>\t<file name>", as `sha256sum -c` style tools read them.
#include <filesystem>

#include "imgbake/error.h"
#include "imgbake/post_processor.h"
#include "imgbake/util.h"

namespace imgbake {
namespace {

class ChecksumPostProcessor : public PostProcessor {
 public:
  void prepare(ConfigReader& cfg) override {
    types_ = cfg.strings("checksum_types");
    if (types_.empty()) types_ = {"md5"};
    for (const auto& t : types_)
      if (!util::is_supported_digest(t))
        cfg.error("checksum_types", "unsupported checksum type '" + t + "'" +
                                        util::did_you_mean(t, {"md5", "sha1", "sha224", "sha256", "sha384", "sha512"}) +
                                        "; use md5, sha1, sha224, sha256, sha384 or sha512");
    output_ = cfg.string("output", "packer_{{.BuildName}}_{{.BuilderType}}_{{.ChecksumType}}.checksum");
  }

  std::set<std::string> runtime_keys() const override { return {"output"}; }

  PostProcessResult post_process(State& st, std::shared_ptr<Artifact> input) override {
    if (!input || input->files.empty()) throw BuildError("the build produced no files to checksum");
    auto out = std::make_shared<Artifact>();
    out->builder_type = "checksum";
    std::vector<std::string> written;
    for (const auto& type : types_) {
      interp::Context ctx = st.build.interp;
      ctx.data = {{"BuildName", st.build.name}, {"BuilderType", st.build.type}, {"ChecksumType", type}};
      std::string path = interp::render(output_, ctx);
      std::string body;
      for (const auto& f : input->files)
        body += util::file_digest_hex(f.path, type) + "\t" + std::filesystem::path(f.path).filename().string() + "\n";
      std::filesystem::path p(path);
      if (p.has_parent_path()) std::filesystem::create_directories(p.parent_path());
      util::write_file_atomic(p, body);
      st.message(type + " checksums written to " + path);
      written.push_back(path);
    }
    out->files = describe_files(written);
    std::string all;
    for (const auto& f : out->files) all += f.sha256;
    out->id = "sha256:" + util::sha256_hex(all);
    return {out, true, false};
  }

 private:
  std::vector<std::string> types_;
  std::string output_;
};

}  // namespace
}  // namespace imgbake

IMGBAKE_REGISTER_POST_PROCESSOR("checksum", imgbake::ChecksumPostProcessor)
