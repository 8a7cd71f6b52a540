#include "transfer_verbs.h"

#include <chrono>
#include <iostream>

#include "imgbake/util.h"

namespace imgbake::cli {
namespace {

nlohmann::json report_json(const registry::TransferReport& r) {
  return {{"digest", r.manifest_digest},      {"tags", r.tags},
          {"blobs_sent", r.blobs_sent},       {"blobs_skipped", r.blobs_skipped},
          {"blobs_mounted", r.blobs_mounted}, {"blob_bytes", r.blob_bytes},
          {"referrer", r.referrer_digest},    {"referrers_tag_schema", r.referrers_tag_schema},
          {"local_ref", r.local_ref},         {"blobs_staged", r.blobs_staged},
          {"records", r.record_digests},      {"revocation", r.revocation}};
}

}  // namespace

int finish(const GlobalOptions& global, const std::string& verb, const std::string& what,
           const registry::TransferReport& r) {
  if (global.output == "json") {
    // One shape for every JSON line of push/pull/copy (messages, progress, this report): "event"
    // and "time" among the fields, keys in alphabetical order, as the Ui writes its events.
    nlohmann::json j = report_json(r);
    j["time"] = util::format_rfc3339(std::chrono::system_clock::now(), true);
    j["event"] = verb;
    j["ref"] = what;
    std::cout << j.dump() << "\n";
  } else {
    std::cout << what << " " << r.manifest_digest << ": " << r.blobs_sent << " blob(s) moved (" << r.blob_bytes
              << " bytes), " << r.blobs_skipped << " already there, " << r.blobs_mounted << " mounted"
              << (r.referrer_digest.empty() ? "" : "; provenance referrer " + r.referrer_digest)
              << (r.record_digests.empty() ? "" : "; " + std::to_string(r.record_digests.size()) + " record(s)")
              << (r.revocation.empty() ? "" : "; REVOKED (record " + r.revocation + ")") << "\n";
  }
  return 0;
}

}  // namespace imgbake::cli
