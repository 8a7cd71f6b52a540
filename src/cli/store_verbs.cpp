#include "store_verbs.h"
#include <algorithm>

#include "imgbake/util.h"

namespace imgbake::cli {

std::unique_ptr<store::Store> open_store() { return std::make_unique<store::Store>(store::Store::default_home()); }

nlohmann::json image_json(const store::ImageRecord& r) {
  return {{"ref", r.ref()},
          {"name", r.name},
          {"version", r.version},
          {"digest", r.manifest_digest},
          {"created", r.created},
          {"builder_type", r.builder_type},
          {"template_digest", r.template_digest},
          {"git_commit", r.git_commit},
          {"parent", r.parent},
          {"provenance", r.provenance_digest},
          {"revoked", r.revoked},
          {"revoked_reason", r.revoked_reason},
          {"labels", r.labels},
          {"channels", r.channels}};
}

std::vector<store::TestRun> newest_test_runs(const store::Store& st, const store::ImageRecord& img) {
  std::vector<store::TestRun> newest;
  for (auto& run : st.test_runs(img)) {  // oldest first: a later run of a suite replaces it
    auto same = std::find_if(newest.begin(), newest.end(), [&](const auto& n) { return n.suite == run.suite; });
    if (same == newest.end())
      newest.push_back(std::move(run));
    else
      *same = std::move(run);
  }
  return newest;
}

nlohmann::json test_status_json(const std::vector<store::TestRun>& runs) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& run : runs)
    out.push_back({{"suite", run.suite},
                   {"result", run.passed ? "passed" : "failed"},
                   {"failed", run.failed},
                   {"time", run.time},
                   {"envelope", run.envelope_digest}});
  return out;
}

std::string test_status_text(const std::vector<store::TestRun>& runs) {
  std::vector<std::string> parts;
  parts.reserve(runs.size());
  for (const auto& run : runs) parts.push_back(run.suite + ": " + (run.passed ? "passed" : "FAILED"));
  return util::join(parts, ", ");
}

std::string image_line(const store::ImageRecord& r) {
  std::string s = r.ref() + "  " + r.manifest_digest.substr(0, 19) + "  " + r.created;
  if (!r.channels.empty()) s += "  [" + util::join(r.channels, ", ") + "]";
  if (r.revoked) s += "  REVOKED (" + r.revoked_reason + ")";
  return s;
}

}  // namespace imgbake::cli
