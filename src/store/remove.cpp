// Store::remove: deleting a version from the catalog (imgbake rm). Its blobs stay until gc.
#include "catalog.h"

#include <string>
#include <vector>

#include "imgbake/util.h"

namespace imgbake::store {

using detail::append_audit;
using detail::Stmt;
using detail::StoreLock;
using detail::Transaction;

ImageRecord Store::remove(const std::string& ref, const std::string& reason) {
  StoreLock lock(home_, false);
  sqlite3* db = db_->db;
  ImageRecord img;
  {
    Transaction tx(db);
    img = resolve(ref);
    std::vector<std::string> channels;
    {
      Stmt c(db, "SELECT channel FROM channels WHERE image_id = ? ORDER BY channel");
      c.bind(1, img.id);
      while (c.step()) channels.push_back(c.text(0));
    }
    if (!channels.empty())
      throw StoreError("refusing to remove " + img.ref() + ": channel(s) " + util::join(channels, ", ") + " of " +
                       img.name + " point at it; promote another image to them (or roll them back) first");
    Stmt l(db, "DELETE FROM labels WHERE image_id = ?");
    l.bind(1, img.id);
    l.run();
    nlohmann::json test_referrers = nlohmann::json::array();
    for (const TestRun& t : test_runs(img)) test_referrers.push_back(t.referrer_digest);
    Stmt t(db, "DELETE FROM test_runs WHERE image_id = ?");
    t.bind(1, img.id);
    t.run();
    Stmt d(db, "DELETE FROM images WHERE id = ?");
    d.bind(1, img.id);
    d.run();
    nlohmann::json detail = {{"manifest", img.manifest_digest},
                             {"provenance", img.provenance_digest},
                             {"referrer", img.referrer_digest},
                             {"test_referrers", test_referrers}};
    append_audit(tx,
                 AuditEntry{0, "", who(), "remove", img.name, "", "", img.ref(), reason, detail.dump(), "", "", ""});
    tx.commit();
  }
  sync_index();
  return img;
}

}  // namespace imgbake::store
