// The qemu builder's step cache (docs/builders/qemu.md, "Step cache"): the disk is a chain of
// qcow2 overlays, one per provisioner step, each a blob of the store under the step's key,
// with the VM's saved state after that step (QMP migration to a file). A rebuild resumes the
// VM after the last unchanged step instead of booting it, or, when nothing changed, makes the
// output disk from the cached chain without starting qemu at all.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "imgbake/pipeline.h"
#include "imgbake/store.h"

namespace imgbake::qemu {

struct QemuRun;
struct QemuConfig;

// Why this build cannot cache its steps; "" when it can. Pure, for the unit tests.
struct CacheEligibility {
  bool no_cache = false;
  std::string communicator;
  bool temporary_key = false;
  bool use_backing_file = false;
  bool additional_disks = false;
  bool user_drives = false;
  bool secrets = false;  // the template has sensitive variables
};
std::string cache_refusal(const CacheEligibility& e);

// The sha256 (hex) of a source file, remembered in `memo_file` (JSON) under its path with its
// identity (device, inode, size, mtime and ctime in ns): a multi-GiB source disk is read once, not
// on every build. An entry recorded less than 2 s after the file's last change is not trusted (the
// change and the recording may share a timestamp tick, git's "racy" entries), and ctime cannot be
// set back by any tool, so a file changed in place is hashed again.
std::string source_digest(const std::filesystem::path& file, const std::filesystem::path& memo_file);

class CheckpointCache {
 public:
  CheckpointCache();
  ~CheckpointCache();
  CheckpointCache(const CheckpointCache&) = delete;
  CheckpointCache& operator=(const CheckpointCache&) = delete;

  bool enabled() const { return enabled_; }
  // The provisioner steps, in order (their key material makes their keys).
  void add_step(const Step* inner) { steps_.push_back(inner); }

  // The disk step: decides whether this build caches; if so opens the store, takes the base
  // disk (the source converted and resized) from the cache or makes it, and puts the first
  // overlay on it (`top()`). Returns false when the build does not cache (the disk step then
  // makes the disk as before).
  bool prepare_disk(State& st, QemuRun& r);
  // The launch step, before qemu starts: the keys of every provisioner step and of the shut-down
  // disk, and what the cache holds of them.
  void plan(State& st, QemuRun& r);
  // Nothing changed: no VM at all; the output disk is converted from the cached chain.
  bool full_hit() const { return full_hit_; }
  // The VM starts from the checkpoint after this many steps (0: it boots).
  size_t resumed_after() const { return resume_after_; }
  // The -incoming argument that restores the checkpoint's VM state; "" when booting.
  std::string incoming() const;
  // Whether provisioner step `i` (1-based) comes from the cache, and its key.
  bool skips(size_t i) const { return full_hit_ || i <= resume_after_; }
  const std::string& key(size_t i) const { return keys_.at(i - 1); }
  size_t steps() const { return steps_.size(); }
  // After provisioner step `i` ran: pause the VM, freeze its overlay under a new one, save the
  // VM's state, resume, and put both into the cache.
  void checkpoint(State& st, QemuRun& r, size_t i);
  // After the guest powered off: the last overlay is the shut-down disk's entry.
  void after_shutdown(State& st, QemuRun& r);
  // The overlay the VM writes to (and, at the end, the top of the chain to convert).
  std::filesystem::path top() const { return top_; }
  // The compact step. On a full hit whose output disk (this chain, converted with these options)
  // is cached and intact: copies it to `disk` and returns true. Otherwise false (convert the chain).
  bool cached_output(State& st, const std::filesystem::path& disk);
  // After the chain was converted to `disk`: keeps it, so that an unchanged rebuild copies it.
  void keep_output(State& st, const QemuConfig& c, const std::filesystem::path& disk);

 private:
  std::string explain(State& st, const std::string& what, const std::string& key, const std::string& preimage,
                      const std::string& slot, bool hit);
  void link(const std::string& key, const std::filesystem::path& target);
  std::filesystem::path link_path(const std::string& key) const;
  void new_top(State& st, const std::string& backing_key, uint64_t virtual_size);
  store::Descriptor adopt(const std::filesystem::path& file, const std::string& media_type);
  store::CacheEntry record(const std::string& key, const std::string& preimage, const std::filesystem::path& disk,
                           const std::filesystem::path& state, const std::string& created_by, const std::string& slot);
  bool intact(State& st, const store::Descriptor& blob, const std::string& key, const std::string& what);
  bool level_ok(State& st, const store::CacheEntry& level, const std::string& backing_key, const std::string& what);
  std::string output_key(const QemuConfig& c, std::string& preimage) const;

  bool enabled_ = false;
  std::unique_ptr<store::Store> store_;
  store::CacheRemote* remote_ = nullptr;  // --cache-from/--cache-to
  std::filesystem::path dir_;             // in the store's tmp/: overlays, state files, and ck-KEY links
  std::filesystem::path top_;
  std::string active_node_;  // the QMP node of top_ once a checkpoint made it
  int tops_ = 0;
  uint64_t virtual_size_ = 0;
  std::string root_key_;
  std::vector<const Step*> steps_;
  std::vector<std::string> keys_, preimages_;
  std::string final_key_, final_preimage_;
  std::string slot_prefix_;
  bool full_hit_ = false;
  size_t resume_after_ = 0;
  std::string state_path_;                   // the checkpoint's state blob, when resuming
  bool broken_ = false;                      // a checkpoint failed: the rest of the build is not cached
  std::optional<store::CacheEntry> output_;  // a full hit's cached output disk, checked in plan()
};

}  // namespace imgbake::qemu
