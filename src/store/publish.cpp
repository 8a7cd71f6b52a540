#include "imgbake/publish.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "imgbake/cancel.h"
#include "imgbake/process.h"
#include "imgbake/unique_fd.h"
#include "imgbake/util.h"

namespace imgbake {

namespace fs = std::filesystem;

namespace {

std::optional<std::string> git(const fs::path& dir, std::vector<std::string> args) {
  ProcessSpec spec;
  spec.argv = {"git", "-C", dir.string()};
  spec.argv.insert(spec.argv.end(), args.begin(), args.end());
  spec.timeout = std::chrono::seconds(10);
  std::string out;
  CancelToken never;  // a few milliseconds; an interrupt is handled by the caller's step
  try {
    int rc = run_process(
        spec, [&](std::string_view l) { out += std::string(l) + "\n"; }, nullptr, never);
    if (rc != 0) return std::nullopt;
  } catch (const std::exception&) {
    return std::nullopt;  // git is not installed
  }
  return util::trim(out);
}

}  // namespace

GitFacts detect_git(const fs::path& dir) {
  GitFacts f;
  auto commit = git(dir, {"rev-parse", "HEAD"});
  if (!commit || commit->empty()) return f;
  f.commit = *commit;
  f.branch = git(dir, {"rev-parse", "--abbrev-ref", "HEAD"}).value_or("");
  f.dirty = !git(dir, {"status", "--porcelain", "--untracked-files=no"}).value_or("").empty();
  f.remote = git(dir, {"config", "--get", "remote.origin.url"}).value_or("");
  return f;
}

fs::path config_home() {
  if (const char* c = std::getenv("IMGBAKE_CONFIG_HOME"); c && *c) return fs::path(c);
  if (const char* x = std::getenv("XDG_CONFIG_HOME"); x && *x) return fs::path(x) / "imgbake";
  const char* home = std::getenv("HOME");
  return fs::path(home && *home ? home : "/root") / ".config" / "imgbake";
}

fs::path default_signing_key_path() { return config_home() / "signing.key"; }

provenance::SigningKey load_signing_key(const std::string& path, bool& created) {
  created = false;
  if (!path.empty()) return provenance::SigningKey::load_private(path);
  fs::path p = default_signing_key_path();
  std::error_code ec;
  if (fs::exists(p, ec)) return provenance::SigningKey::load_private(p.string());
  fs::create_directories(p.parent_path());
  // Builds starting together on a fresh machine must agree on one key: create it under a
  // lock and look again once we hold it.
  util::UniqueFd lock(open((p.parent_path() / ".signing.lock").c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0600));
  if (lock) flock(lock.get(), LOCK_EX);  // unlocked when closed
  if (fs::exists(p, ec)) return provenance::SigningKey::load_private(p.string());
  auto key = provenance::SigningKey::generate();
  key.save(p.string());
  created = true;
  return key;
}

namespace {

// Why another user could change what `p` says (so it cannot anchor trust), or "".
std::string writable_by_others(const fs::path& p) {
  struct stat st {};
  // The file a link names is what is read, so its owner and mode are what count.
  if (::stat(p.c_str(), &st) != 0) return "";  // reported when it is read
  if (st.st_uid != 0 && st.st_uid != ::geteuid())
    return p.string() + " belongs to user " + std::to_string(st.st_uid) + ", not to root or the current user";
  if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return p.string() + " can be written by other users (mode " + mode + ")";
  }
  return "";
}

void add_anchor(TrustAnchors& t, const fs::path& file) {
  for (const fs::path& p : {file.parent_path(), file}) {
    if (std::string why = writable_by_others(p); !why.empty()) {
      t.warnings.push_back("not trusting " + file.string() + ": " + why);
      return;
    }
  }
  try {
    t.keys.push_back(provenance::VerifyingKey::load(file.string()));
    t.sources.push_back(file.string());
  } catch (const std::exception& e) {
    t.warnings.push_back("not trusting " + file.string() + ": " + e.what());
  }
}

void add_anchor_dir(TrustAnchors& t, const fs::path& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return;
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (e.path().extension() == ".pub") files.push_back(e.path());
  std::sort(files.begin(), files.end());
  for (const auto& f : files) add_anchor(t, f);
}

}  // namespace

std::vector<std::string> TrustAnchors::describe() const {
  std::vector<std::string> out;
  for (size_t i = 0; i < keys.size(); ++i) out.push_back(keys[i].keyid() + " (" + sources[i] + ")");
  return out;
}

TrustAnchors trust_anchors(const store::Store& st, const std::string& extra) {
  TrustAnchors t;
  if (!extra.empty()) {
    // An explicit key is the only one the caller wants to trust.
    t.keys.push_back(provenance::VerifyingKey::load(extra));
    t.sources.push_back(extra);
    return t;
  }
  std::error_code ec;
  fs::path def = default_signing_key_path();
  def += ".pub";
  if (fs::exists(def, ec)) add_anchor(t, def);
  add_anchor_dir(t, config_home() / "trusted");
  add_anchor_dir(t, kSystemTrustDir);
  // Whoever can write the store could add a key here: it anchors nothing.
  if (fs::path in_store = st.home() / "trusted"; fs::is_directory(in_store, ec))
    t.warnings.push_back("the keys in " + in_store.string() +
                         " are not trusted: trust anchors live outside the store (move the ones you trust to " +
                         (config_home() / "trusted").string() + ", or to " + kSystemTrustDir + " for a shared store)");
  return t;
}

std::vector<provenance::VerifyingKey> trusted_keys(const store::Store& st, const std::string& extra) {
  return std::move(trust_anchors(st, extra).keys);
}

bool store::Store::trusts(const std::string& keyid) const {
  for (const auto& k : trusted_keys(*this))
    if (k.keyid() == keyid) return true;
  return false;
}

Verification verify_image(const store::Store& st, const store::ImageRecord& img,
                          const std::vector<provenance::VerifyingKey>& keys) {
  Verification v;
  auto problem = [&](std::string p) { v.problems.push_back(std::move(p)); };
  if (img.provenance_digest.empty()) {
    problem("the image has no provenance");
    return v;
  }
  std::string blob_problem = st.blobs().check(img.provenance_digest);
  if (!blob_problem.empty()) {
    problem("provenance envelope: " + blob_problem);
    return v;
  }
  nlohmann::json env;
  try {
    env = nlohmann::json::parse(st.blobs().read(img.provenance_digest));
  } catch (const std::exception& e) {
    problem(std::string("provenance envelope is not JSON: ") + e.what());
    return v;
  }
  if (keys.empty()) {
    problem("no trusted key to verify with (imgbake keygen, or --key PUB)");
    return v;
  }
  // With several trusted keys, the most telling failure (provenance::verify_envelope).
  provenance::EnvelopeCheck best = provenance::verify_envelope(env, keys);
  if (!best.ok) problem("signature: " + best.error);
  v.keyid = best.keyid;
  try {
    v.statement = nlohmann::json::parse(best.payload);
  } catch (const std::exception&) {
    problem("the signed payload is not an in-toto statement");
    return v;
  }
  // Every subject must match what the store holds now.
  std::map<std::string, std::string> actual;  // name -> sha256 hex
  actual[img.ref()] = img.manifest_digest.substr(7);
  std::string man_problem = st.blobs().check(img.manifest_digest);
  if (!man_problem.empty()) problem("manifest: " + man_problem);
  try {
    nlohmann::json m = st.manifest(img);
    size_t index = 0;
    for (const auto& l : m["layers"]) {
      std::string d = l["digest"];
      // Untitled layers (a container image's) are named by position, as the provenance names them.
      std::string title = oci::layer_subject_name(l, index++);
      actual[title] = d.substr(7);
      std::string lp = st.blobs().check(d);
      if (!lp.empty()) problem(title + ": " + lp);
    }
  } catch (const std::exception& e) {
    problem(std::string("manifest unreadable: ") + e.what());
  }
  const auto& subjects = v.statement.value("subject", nlohmann::json::array());
  if (subjects.empty()) problem("the statement names no subject");
  for (const auto& s : subjects) {
    std::string name = s.value("name", "");
    std::string digest = s.contains("digest") ? s["digest"].value("sha256", "") : "";
    auto it = actual.find(name);
    // A pulled image may live under another NAME:VERSION than the one it was built as; the
    // subject that names its manifest digest is the image itself, whatever name it gives.
    if (it == actual.end() && digest == img.manifest_digest.substr(7)) continue;
    if (it == actual.end())
      problem("subject '" + name + "' is not part of " + img.ref());
    else if (it->second != digest)
      problem("subject '" + name + "': signed digest sha256:" + digest + " but the store holds sha256:" + it->second);
  }
  if (!actual.empty() && subjects.size() < actual.size())
    problem("the statement does not cover every blob of the image");
  v.ok = v.problems.empty();
  return v;
}

}  // namespace imgbake
