// Packer's manifest post-processor: appends one entry per build to a JSON file
// (default packer-manifest.json) with Packer's fields, so tools that read Packer
// manifests keep working.
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <mutex>

#include "imgbake/error.h"
#include "imgbake/post_processor.h"
#include "imgbake/unique_fd.h"
#include "imgbake/util.h"

namespace imgbake {
namespace {

class ManifestPostProcessor : public PostProcessor {
 public:
  void prepare(ConfigReader& cfg) override {
    output_ = cfg.string("output", "packer-manifest.json");
    strip_path_ = cfg.boolean("strip_path", false);
    strip_time_ = cfg.boolean("strip_time", false);
    custom_data_ = cfg.string_map("custom_data");
  }

  // Packer's manifest output may name the build: {{.BuildName}}, {{.BuilderType}}.
  std::set<std::string> runtime_keys() const override { return {"output"}; }

  PostProcessResult post_process(State& st, std::shared_ptr<Artifact> input) override {
    interp::Context ctx = st.build.interp;
    ctx.data = {{"BuildName", st.build.name}, {"BuilderType", st.build.type}};
    std::string output = interp::render(output_, ctx);
    nlohmann::ordered_json build;
    build["name"] = st.build.name;
    build["builder_type"] = st.build.type;
    if (!strip_time_)
      build["build_time"] =
          std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
    nlohmann::ordered_json files = nlohmann::ordered_json::array();
    if (input) {
      for (const auto& f : input->files) {
        std::string name = strip_path_ ? std::filesystem::path(f.path).filename().string() : f.path;
        files.push_back({{"name", name}, {"size", f.size}});
      }
    }
    build["files"] = files;
    build["artifact_id"] = input ? input->id : "";
    build["packer_run_uuid"] = st.build.run_uuid;
    if (!custom_data_.empty()) build["custom_data"] = custom_data_;

    // Builds and runs writing the same manifest take turns: a mutex in this process and
    // flock() on the manifest's directory across processes (a lock on the directory
    // leaves no lock file behind); the file itself is replaced atomically.
    static std::mutex mu;
    std::lock_guard lock(mu);
    std::filesystem::path out(output);
    std::filesystem::path dir = out.has_parent_path() ? out.parent_path() : std::filesystem::path(".");
    std::filesystem::create_directories(dir);
    util::UniqueFd dfd(open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));  // unlocked when closed
    if (!dfd) throw BuildError("cannot open the manifest's directory " + dir.string());
    flock(dfd.get(), LOCK_EX);
    nlohmann::ordered_json doc = {{"builds", nlohmann::ordered_json::array()}, {"last_run_uuid", ""}};
    if (std::filesystem::exists(out)) {
      try {
        doc = nlohmann::ordered_json::parse(util::read_file(out));
        if (!doc.contains("builds") || !doc["builds"].is_array()) throw std::runtime_error("no builds array");
      } catch (const std::exception& e) {
        throw BuildError("existing manifest " + output + " is not a manifest (" + e.what() +
                         "); move it away or choose another 'output'");
      }
    }
    st.ui.mask_strings(build);  // before escaping, so a secret with quotes is still found
    doc["builds"].push_back(build);
    doc["last_run_uuid"] = st.build.run_uuid;
    util::write_file_atomic(out, doc.dump(2) + "\n");
    st.message("manifest entry written to " + output);
    return {input, true, true};
  }

 private:
  std::string output_;
  bool strip_path_ = false;
  bool strip_time_ = false;
  std::map<std::string, std::string> custom_data_;
};

}  // namespace
}  // namespace imgbake

IMGBAKE_REGISTER_POST_PROCESSOR("manifest", imgbake::ManifestPostProcessor)
