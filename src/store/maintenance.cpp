// Store maintenance: check (the catalog's integrity, the audit chain, every blob an image or the
// build cache references) and gc (unreferenced blobs and temp entries).
#include "catalog.h"

#include <sys/file.h>

#include <map>
#include <set>
#include <string>

#include "imgbake/publish.h"
#include "imgbake/util.h"

namespace imgbake::store {

namespace fs = std::filesystem;

using detail::Stmt;
using detail::StoreLock;

CheckReport Store::check(const std::function<std::string(const ImageRecord&)>& verify_signature) const {
  CheckReport rep;
  sqlite3* db = db_->db;
  {
    Stmt ic(db, "PRAGMA integrity_check");
    while (ic.step())
      if (ic.text(0) != "ok") rep.problems.push_back("catalog: " + ic.text(0));
  }
  // The audit log: chain, signatures, the user's witness, and the state it replays to.
  const TrustAnchors anchors = trust_anchors(*this);
  rep.trusted = anchors.describe();
  for (const auto& w : anchors.warnings) rep.notes.push_back(w);
  const detail::AuditReplay log = detail::replay_audit(db, anchors.keys);
  rep.audit_entries = log.entries;
  rep.witness = log.witness;
  for (const auto& [ref, p] : log.problems) rep.problems.push_back(p);
  if (anchors.keys.empty() && log.entries > 0)
    rep.problems.push_back(
        "no trusted key: neither the audit log nor any provenance can be verified (imgbake keygen, "
        "or a .pub in " +
        (config_home() / "trusted").string() + ")");
  std::set<std::string> referenced;
  const std::vector<ImageRecord> all = images();
  for (const auto& img : all) {
    ++rep.images;
    for (auto& p : detail::compare_image(log, img)) rep.problems.push_back(std::move(p));
    // Every blob of the image and of its referrers; a manifest whose blob is missing or corrupt is
    // reported once, by the blob check, not again as unreadable.
    const ReferencedBlobs walk = referenced_blobs(img);
    std::set<std::string> damaged;
    for (const auto& d : walk.digests()) {
      referenced.insert(d);
      ++rep.blobs_checked;
      std::string problem = blobs_.check(d);
      if (problem.empty()) continue;
      rep.problems.push_back(img.ref() + ": " + problem);
      damaged.insert(d);
    }
    for (const auto& m : walk.manifests)
      if (!m.problem.empty() && !damaged.count(m.manifest.digest)) rep.problems.push_back(m.problem);
    if (verify_signature && !img.provenance_digest.empty() && blobs_.check(img.provenance_digest).empty()) {
      std::string sig = verify_signature(img);
      if (!sig.empty()) rep.problems.push_back(img.ref() + ": provenance: " + sig);
    }
    // Its test results: signed by a trust anchor, about this image, as the catalog and the log say.
    const auto logged = log.images.find(img.ref());
    for (const TestRun& t : test_runs(img)) {
      if (!damaged.count(t.envelope_digest))
        if (std::string p = test_run_problem(img, t, anchors.keys); !p.empty())
          rep.problems.push_back(img.ref() + ": " + p);
      if (logged != log.images.end() && !logged->second.test_envelopes.count(t.envelope_digest))
        rep.problems.push_back(img.ref() + ": the test result of suite '" + t.suite + "' (" + t.time +
                               ") was recorded by no audit entry");
    }
  }
  // What the log holds that the catalog lost.
  {
    std::set<std::string> present;
    for (const auto& img : all) present.insert(img.ref());
    for (const auto& [ref, im] : log.images)
      if (!present.count(ref))
        rep.problems.push_back(ref + ": audit entry " + std::to_string(im.seq) +
                               " committed it and no entry removed it, but the catalog has no such image");
  }
  for (auto& p : detail::compare_channels(db, log)) rep.problems.push_back(std::move(p));
  for (auto& p : detail::compare_policies(db, log)) rep.problems.push_back(std::move(p));
  // The build cache: a damaged cached layer would poison every build that hits it.
  {
    Stmt c(db, "SELECT key, digest, empty, state_digest FROM layer_cache");
    while (c.step()) {
      for (int col : {1, 3}) {
        std::string d = c.text(col);
        if (d.empty() || (col == 1 && c.integer(2) != 0) || referenced.count(d)) continue;
        referenced.insert(d);
        ++rep.blobs_checked;
        std::string problem = blobs_.check(d);
        if (!problem.empty())
          rep.problems.push_back("build cache entry " + c.text(0).substr(0, 12) + ": " + problem +
                                 " (imgbake store gc --prune-cache forgets the cache)");
      }
    }
  }
  for (const auto& d : blobs_.list())
    if (!referenced.count(d)) rep.notes.push_back("unreferenced blob " + d + " (gc removes it)");
  for (const auto& p : blobs_.leftovers())
    rep.notes.push_back("temporary file or directory of an interrupted write or build (or of one still running): " +
                        p.string() + " (store gc removes it when no other imgbake process has the store open)");
  // index.json copies that had been edited outside imgbake (Store::sync_index kept them).
  {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(home_, ec)) {
      std::string n = e.path().filename().string();
      if (!n.starts_with(detail::kEditedIndexPrefix)) continue;
      std::string why;
      try {
        why = index_edit(util::read_file(e.path()));
      } catch (const std::exception& err) {
        why = err.what();
      }
      rep.problems.push_back("index.json had been edited outside imgbake (" + (why.empty() ? "it differed" : why) +
                             "); imgbake rewrote it from the catalog and kept the edited copy as " + e.path().string() +
                             " (compare them, then remove that file)");
    }
  }
  for (const auto& img : all)
    if (img.revoked && !img.channels.empty())
      rep.notes.push_back("channel(s) " + util::join(img.channels, ", ") + " of " + img.name +
                          " point at the revoked " + img.ref());
  // What this user has now checked is the end of the log they will expect to find next time.
  if (rep.ok()) {
    detail::advance_witness(db);
    if (rep.witness.empty() && log.entries > 0)
      rep.notes.push_back(
          "this user had not seen this store's audit log before: from now on store check expects it "
          "to hold its " +
          std::to_string(log.entries) + " entries as they are (a witness in " + config_home().string() + "/witness)");
  }
  return rep;
}

namespace {

// The bytes removing `p` frees: a file's size, or the sizes of the regular files in a directory
// tree (symbolic links are not followed). A size that cannot be read is not counted, and named in
// `warnings`.
uint64_t bytes_of(const fs::path& p, std::vector<std::string>& warnings) {
  auto cannot = [&](const fs::path& what, const std::error_code& why) {
    warnings.push_back("cannot read the size of " + what.string() + ": " + why.message() +
                       " (not counted in the bytes freed)");
  };
  std::error_code ec;
  if (!fs::is_directory(fs::symlink_status(p, ec))) {
    const uint64_t size = fs::file_size(p, ec);
    if (!ec) return size;
    cannot(p, ec);
    return 0;
  }
  uint64_t total = 0;
  fs::recursive_directory_iterator it(p, ec);
  for (; !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    std::error_code fec;
    if (!fs::is_regular_file(it->symlink_status(fec))) continue;
    const uint64_t size = it->file_size(fec);
    if (fec)
      cannot(it->path(), fec);
    else
      total += size;
  }
  if (ec) cannot(p.string() + " (the rest of the directory)", ec);
  return total;
}

}  // namespace

GcReport Store::gc(bool prune_cache) {
  GcReport rep;
  StoreLock lock(home_, true);  // no commit is running while we look
  // Checked again here: a link made since the store was opened must not take gc outside it.
  detail::refuse_symlinks_in_layout(home_);
  // Everything a version references is kept; versions are never deleted, channels and
  // history entries point at versions. The build cache's layers are kept until pruned.
  std::set<std::string> keep;
  if (prune_cache) {
    rep.cache_forgotten = cache_size();
    db_->exec("DELETE FROM layer_cache; DELETE FROM layer_cache_slots;");
  }
  {
    Stmt c(db_->db, "SELECT digest, empty, state_digest FROM layer_cache");
    while (c.step()) {
      if (c.integer(1) == 0) keep.insert(c.text(0));
      if (!c.text(2).empty()) keep.insert(c.text(2));
    }
  }
  // An image whose manifest cannot be read keeps what is left of it, but the blobs only that
  // manifest names cannot be told from unreferenced ones: then no blob is removed.
  std::vector<std::string> unreadable;
  for (const auto& img : images()) {
    const ReferencedBlobs walk = referenced_blobs(img);
    for (const auto& d : walk.digests()) keep.insert(d);
    for (const auto& p : walk.problems()) unreadable.push_back(p);
  }
  rep.problems = unreadable;
  // A blob nothing references may be one a running build wrote and has yet to commit, and a
  // temp entry may be in use: both are removed only when no other process has the store open.
  rep.busy = flock(users_fd_, LOCK_EX | LOCK_NB) != 0;
  for (const auto& d : blobs_.list()) {
    if (keep.count(d)) {
      ++rep.kept;
    } else if (rep.busy || !unreadable.empty()) {
      ++rep.left;
    } else {
      const fs::path path = blobs_.path(d);
      const uint64_t size = bytes_of(path, rep.warnings);
      std::error_code ec;
      fs::remove(path, ec);
      if (ec) {
        rep.warnings.push_back("cannot remove " + path.string() + ": " + ec.message());
        continue;
      }
      rep.bytes += size;
      ++rep.removed;
    }
  }
  for (const auto& p : blobs_.leftovers()) {
    if (rep.busy) {
      ++rep.left;
      continue;
    }
    const uint64_t size = bytes_of(p, rep.warnings);
    std::error_code ec;
    fs::remove_all(p, ec);
    if (ec) {
      rep.warnings.push_back("cannot remove " + p.string() + ": " + ec.message());
      continue;
    }
    rep.bytes += size;
    ++rep.temp_removed;
  }
  // Back to shared (a failed conversion on Linux drops the shared lock, so this also retakes it).
  flock(users_fd_, LOCK_SH);
  return rep;
}

}  // namespace imgbake::store
