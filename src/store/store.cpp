// The Store itself: where it lives, opening it, index.json (a view of the catalog), and looking
// images up.
#include "imgbake/store.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/file.h>
#include <unistd.h>

#include "catalog.h"

#include <algorithm>
#include <map>
#include <set>
#include "imgbake/unique_fd.h"
#include "imgbake/util.h"

namespace imgbake::store {

namespace fs = std::filesystem;

using detail::fill_details;
using detail::find_image;
using detail::kEditedIndexPrefix;
using detail::kImageColumns;
using detail::now_rfc3339;
using detail::read_image;
using detail::Stmt;
using detail::StoreLock;

fs::path Store::default_home() {
  if (const char* h = std::getenv("IMGBAKE_HOME"); h && *h) return h;
  if (const char* x = std::getenv("XDG_DATA_HOME"); x && *x) return fs::path(x) / "imgbake";
  const char* home = std::getenv("HOME");
  return fs::path(home && *home ? home : "/root") / ".local" / "share" / "imgbake";
}

Store::Store(fs::path home) : home_(std::move(home)), blobs_(home_) {
  detail::refuse_symlinks_in_layout(home_);
  fs::create_directories(home_ / "blobs" / "sha256");
  users_fd_ = open((home_ / ".users.lock").c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644);
  if (users_fd_ < 0) throw StoreError("cannot open the store's lock file in " + home_.string());
  flock(users_fd_, LOCK_SH);  // waits only while a gc cleans up
  if (!fs::exists(home_ / "oci-layout"))
    util::write_file_atomic(home_ / "oci-layout", R"({"imageLayoutVersion":"1.0.0"})");
  {
    // Opening sets WAL mode and creates the tables: two processes doing that at once on a
    // new store can get SQLITE_BUSY at once (SQLite does not wait where waiting could
    // deadlock), so openings take turns.
    StoreLock opening(home_, true, ".catalog-open.lock");
    db_ = std::make_unique<Catalog>(home_ / "catalog.db");
  }
  sync_index();
}

Store::~Store() {
  if (users_fd_ >= 0) close(users_fd_);
}

std::string Store::who() const { return util::current_user() + "@" + util::hostname(); }

nlohmann::ordered_json Store::derived_index() const {
  nlohmann::ordered_json manifests = nlohmann::ordered_json::array();
  auto entry = [](const std::string& digest, uint64_t size, const std::string& ref) {
    nlohmann::ordered_json j = {{"mediaType", oci::kManifestMediaType}, {"digest", digest}, {"size", size}};
    if (!ref.empty()) j["annotations"] = {{"org.opencontainers.image.ref.name", ref}};
    return j;
  };
  {
    Stmt s(db_->db, (std::string("SELECT ") + kImageColumns + " FROM images ORDER BY name, seq").c_str());
    while (s.step()) {
      ImageRecord r = read_image(s);
      manifests.push_back(entry(r.manifest_digest, r.manifest_size, r.ref()));
      if (!r.referrer_digest.empty()) {
        auto ref = entry(r.referrer_digest, r.referrer_size, "");
        ref["artifactType"] = oci::kProvenanceArtifactType;
        manifests.push_back(ref);
      }
      for (const TestRun& t : test_runs(r)) {
        auto ref = entry(t.referrer_digest, t.referrer_size, "");
        ref["artifactType"] = kTestResultArtifactType;
        manifests.push_back(ref);
      }
    }
    Stmt c(db_->db,
           "SELECT c.name, c.channel, i.manifest_digest, i.manifest_size FROM channels c JOIN images i "
           "ON c.image_id = i.id ORDER BY c.name, c.channel");
    while (c.step())
      manifests.push_back(entry(c.text(2), static_cast<uint64_t>(c.integer(3)), c.text(0) + ":" + c.text(1)));
  }
  return {{"schemaVersion", 2}, {"mediaType", "application/vnd.oci.image.index.v1+json"}, {"manifests", manifests}};
}

std::string Store::index_edit(const std::string& on_disk) const {
  nlohmann::json old;
  try {
    old = nlohmann::json::parse(on_disk);
  } catch (const std::exception&) {
    return "it is not JSON";
  }
  if (!old.is_object() || !old.contains("manifests") || !old["manifests"].is_array())
    return "it is not an OCI index with a manifests list";
  // What the catalog can explain: its own entries; a channel of NAME at an earlier image of NAME.
  std::set<std::pair<std::string, std::string>> derived;    // (ref, digest); ref "" for referrers
  std::map<std::string, std::set<std::string>> digests_of;  // name -> manifest digests
  const nlohmann::ordered_json index = derived_index();     // outlives the loop over its entries
  for (const auto& e : index["manifests"]) {
    std::string ref =
        e.contains("annotations") ? e["annotations"]["org.opencontainers.image.ref.name"].get<std::string>() : "";
    derived.emplace(ref, e["digest"].get<std::string>());
    if (!ref.empty()) digests_of[ref.substr(0, ref.find(':'))].insert(e["digest"].get<std::string>());
  }
  std::set<std::string> channel_refs;
  {
    Stmt c(db_->db, "SELECT name, channel FROM channels");
    while (c.step()) channel_refs.insert(c.text(0) + ":" + c.text(1));
  }
  // A version `imgbake rm` removed (its entry, and its referrer's, may not be gone yet).
  {
    Stmt r(db_->db, "SELECT to_ref, detail FROM audit WHERE action = 'remove'");
    while (r.step()) {
      nlohmann::json detail = nlohmann::json::parse(r.text(1), nullptr, false);
      if (!detail.is_object()) continue;
      if (detail.contains("manifest") && detail["manifest"].is_string()) derived.emplace(r.text(0), detail["manifest"]);
      if (detail.contains("referrer") && detail["referrer"].is_string()) derived.emplace("", detail["referrer"]);
      if (detail.contains("test_referrers") && detail["test_referrers"].is_array())
        for (const auto& t : detail["test_referrers"])
          if (t.is_string()) derived.emplace("", t.get<std::string>());
    }
  }
  for (const auto& e : old["manifests"]) {
    if (!e.is_object() || !e.contains("digest") || !e["digest"].is_string()) return "an entry has no digest";
    std::string digest = e["digest"];
    std::string ref;
    if (e.contains("annotations") && e["annotations"].is_object() &&
        e["annotations"].contains("org.opencontainers.image.ref.name") &&
        e["annotations"]["org.opencontainers.image.ref.name"].is_string())
      ref = e["annotations"]["org.opencontainers.image.ref.name"];
    if (derived.count({ref, digest})) continue;
    std::string name = ref.substr(0, ref.find(':'));
    if (channel_refs.count(ref) && digests_of[name].count(digest)) continue;  // a move not yet written
    if (ref.empty()) return "it lists " + digest + ", which the catalog does not hold";
    return "'" + ref + "' points at " + digest + ", which the catalog does not say";
  }
  return "";
}

void Store::sync_index() const {
  // index.json is derived from the catalog: every version as NAME:VERSION, every
  // channel as NAME:CHANNEL, and the provenance referrers. Rewritten under a lock on
  // the store's directory, only when it changed.
  util::UniqueFd dfd(open(home_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dfd) throw StoreError("cannot open the store " + home_.string());
  flock(dfd.get(), LOCK_EX);  // unlocked when closed

  std::string text = derived_index().dump(2) + "\n";
  std::error_code ec;
  if (!fs::exists(home_ / "index.json", ec)) {
    util::write_file_atomic(home_ / "index.json", text);
    return;
  }
  const std::string on_disk = util::read_file(home_ / "index.json");
  if (on_disk == text) return;
  // An interrupted command leaves index.json behind the catalog, which this heals. Anything
  // else was edited by hand or by another tool: the edited copy is kept, for store check to
  // report and for the user to compare, before index.json is rewritten.
  if (!index_edit(on_disk).empty()) {
    std::string stamp = now_rfc3339();
    std::replace(stamp.begin(), stamp.end(), ':', '-');
    util::write_file_atomic(home_ / (std::string(kEditedIndexPrefix) + stamp + "-" + util::uuid_v4().substr(0, 8)),
                            on_disk, 0644);
  }
  util::write_file_atomic(home_ / "index.json", text);
}

ImageRecord Store::resolve(const std::string& ref) const {
  sqlite3* db = db_->db;
  size_t at = ref.find('@');
  if (at != std::string::npos) {
    std::string name = ref.substr(0, at), digest = ref.substr(at + 1);
    if (auto r = find_image(db, "name = ? AND manifest_digest = ?", {name, digest})) return *r;
    throw StoreError("no image " + ref + " in the store");
  }
  size_t colon = ref.rfind(':');
  if (colon == std::string::npos) {
    if (auto r = find_image(db, "name = ? ORDER BY seq DESC LIMIT 1", {ref})) return *r;
    std::vector<std::string> names;
    Stmt s(db, "SELECT DISTINCT name FROM images ORDER BY name");
    while (s.step()) names.push_back(s.text(0));
    throw StoreError("no image named '" + ref + "' in the store" + util::did_you_mean(ref, names));
  }
  std::string name = ref.substr(0, colon), tag = ref.substr(colon + 1);
  if (auto r = find_image(db, "name = ? AND version = ?", {name, tag})) return *r;
  {
    Stmt c(db, "SELECT image_id FROM channels WHERE name = ? AND channel = ?");
    c.bind(1, name).bind(2, tag);
    if (c.step()) return *find_image(db, "id = ?", {std::to_string(c.integer(0))});
  }
  throw StoreError("no version or channel '" + tag + "' of image '" + name + "' in the store");
}

ImageRecord Store::resolve_parent(const std::string& ref) const {
  ImageRecord r = resolve(ref);
  if (r.revoked)
    throw StoreError("refusing to build on " + r.ref() + ": it is revoked (" + r.revoked_reason +
                     "); choose another base image");
  return r;
}

std::vector<ImageRecord> Store::images(const std::string& name) const {
  std::vector<ImageRecord> out;
  std::string sql = std::string("SELECT ") + kImageColumns + " FROM images" + (name.empty() ? "" : " WHERE name = ?") +
                    " ORDER BY name, seq";
  Stmt s(db_->db, sql.c_str());
  if (!name.empty()) s.bind(1, name);
  while (s.step()) out.push_back(read_image(s));
  for (auto& r : out) fill_details(db_->db, r);
  return out;
}

nlohmann::json Store::manifest(const ImageRecord& img) const {
  return nlohmann::json::parse(blobs_.read(img.manifest_digest));
}

}  // namespace imgbake::store
