// The Store itself: where it lives, opening it, index.json (a view of the catalog), and looking
// images up.
#include "imgbake/store.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/file.h>
#include <unistd.h>

#include "catalog.h"
#include "imgbake/unique_fd.h"
#include "imgbake/util.h"

namespace imgbake::store {

namespace fs = std::filesystem;

using detail::fill_details;
using detail::find_image;
using detail::kImageColumns;
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

void Store::sync_index() const {
  // index.json is derived from the catalog: every version as NAME:VERSION, every
  // channel as NAME:CHANNEL, and the provenance referrers. Rewritten under a lock on
  // the store's directory, only when it changed.
  util::UniqueFd dfd(open(home_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dfd) throw StoreError("cannot open the store " + home_.string());
  flock(dfd.get(), LOCK_EX);  // unlocked when closed

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
    }
    Stmt c(db_->db,
           "SELECT c.name, c.channel, i.manifest_digest, i.manifest_size FROM channels c JOIN images i "
           "ON c.image_id = i.id ORDER BY c.name, c.channel");
    while (c.step())
      manifests.push_back(entry(c.text(2), static_cast<uint64_t>(c.integer(3)), c.text(0) + ":" + c.text(1)));
  }
  nlohmann::ordered_json index = {
      {"schemaVersion", 2}, {"mediaType", "application/vnd.oci.image.index.v1+json"}, {"manifests", manifests}};
  std::string text = index.dump(2) + "\n";
  std::error_code ec;
  if (fs::exists(home_ / "index.json", ec) && util::read_file(home_ / "index.json") == text) return;
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
