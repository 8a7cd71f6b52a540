#include "imgbake/transfer.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <csignal>
#include <deque>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include <nlohmann/json.hpp>

#include "imgbake/error.h"
#include "imgbake/oci_json.h"
#include "imgbake/records.h"
#include "imgbake/temp_path_guard.h"
#include "imgbake/util.h"
#include "referrers.h"

namespace fs = std::filesystem;

namespace imgbake::registry {
namespace {

std::string short_digest(const std::string& d) { return d.substr(0, std::min<size_t>(d.size(), 19)); }

std::string mib(uint64_t n) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(n) / (1 << 20));
  return buf;
}

// The blobs a manifest pulled or copied from a registry names: its config and its layers.
// The config and layers of a manifest from a registry; `where` names it in errors.
std::vector<oci::Descriptor> blobs_of(const nlohmann::json& manifest, const std::string& where) {
  std::vector<oci::Descriptor> out;
  auto desc = [](const nlohmann::json& j, const std::string& what) {
    oci::Descriptor d;
    d.media_type = oci::string_at(j, "mediaType", what);
    d.digest = oci::string_at(j, "digest", what);
    d.size = oci::size_at(j, "size", what);
    return d;
  };
  out.push_back(desc(oci::object_at(manifest, "config", where), where + ": config"));
  const auto& layers = oci::array_at(manifest, "layers", where);
  for (size_t i = 0; i < layers.size(); ++i)
    out.push_back(desc(layers[i], where + ": layers[" + std::to_string(i) + "]"));
  return out;
}

// Why the pulled provenance (its envelope is in the store already) is not signed by a trusted
// key, or "". Throws unless the policy allows untrusted signatures: nothing is imported then.
std::string untrusted_signature(store::Store& st, const store::ImportRequest& req, const RevocationPolicy& policy,
                                const Reference& src) {
  std::string why;
  try {
    nlohmann::json ref = nlohmann::json::parse(req.referrer_manifest_bytes);
    std::string envelope;
    for (const auto& l : ref.value("layers", nlohmann::json::array()))
      if (l.is_object() && l.value("mediaType", "") == oci::kDsseMediaType) envelope = l.value("digest", "");
    if (envelope.empty()) return "";  // import_image refuses a referrer without an envelope
    static const std::vector<provenance::VerifyingKey> none;
    provenance::EnvelopeCheck check = provenance::verify_envelope(nlohmann::json::parse(st.blobs().read(envelope)),
                                                                  policy.keys ? *policy.keys : none);
    if (check.ok) return "";
    why = check.error;
  } catch (const std::exception& e) {
    why = "the provenance cannot be read: " + oci::json_error_text(e);
  }
  if (!policy.allow_untrusted)
    throw BuildError(src.str() + ": its provenance is not signed by a trusted key (" + why +
                     "); nothing was imported. Trust the signer's public key (imgbake verify --key, or the "
                     "trusted keys), or pull with --allow-untrusted to import it anyway (recorded in the audit log)");
  return why;
}

// A manifest a registry served, parsed; `where` names it in errors.
nlohmann::json manifest_json(const Manifest& m, const std::string& where) {
  return oci::parse_json(m.bytes, where + " " + m.digest);
}

std::string string_member(const nlohmann::json& j, const std::string& key) {
  return j.is_object() && j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : "";
}

void count(TransferReport& rep, const BlobPushResult& r) {
  if (r.existed)
    ++rep.blobs_skipped;
  else if (r.mounted)
    ++rep.blobs_mounted;
  else
    ++rep.blobs_sent;
  rep.blob_bytes += r.bytes_sent;
}

// Pushes the blobs of a local image and its referrers (Store::blobs_of), all but the referrer
// manifests, which are PUT as manifests once the image manifest is there.
void push_local_blobs(store::Store& st, Client& client, const std::string& repo,
                      const std::vector<oci::Descriptor>& blobs, TransferReport& rep, const TransferLog& log,
                      const CancelToken& cancel) {
  for (const auto& b : blobs) {
    if (b.media_type == oci::kManifestMediaType) continue;
    st.blobs().check_regular(b.digest);  // a FIFO or a device in its place would hang the upload
    BlobPushResult r =
        client.push_blob(repo, b.digest, b.size, st.blobs().path(b.digest), "", TransferProgress(), cancel);
    count(rep, r);
    if (log)
      log(short_digest(b.digest) + " " + mib(b.size) +
          (r.existed   ? ": already there"
           : r.resumed ? ": pushed (resumed)"
                       : ": pushed"));
  }
}

// The cheap ways first: already there, or a cross-repository mount (no byte moves).
bool try_mount(Client& to, const std::string& repo, const oci::Descriptor& blob, const std::string& from_repo,
               BlobPushResult& result, const CancelToken& cancel) {
  result = to.mount_blob(repo, blob.digest, from_repo, cancel);
  return result.mounted || result.existed;
}

// Copies one blob without touching the disk: through memory when it is small enough.
uint64_t stream_through_memory(Client& from, const std::string& src_repo, Client& to, const std::string& dest_repo,
                               const oci::Descriptor& blob, const CancelToken& cancel) {
  std::string data;
  data.reserve(blob.size);
  from.get_blob(
      src_repo, blob.digest, blob.size, [&](const char* p, size_t n) { data.append(p, n); }, TransferProgress(),
      cancel);
  return to.push_blob_bytes(dest_repo, blob.digest, data, cancel).bytes_sent;
}

// Larger blobs: the download and the upload run at once, joined by a bounded buffer (at most
// kStreamBuffer bytes in flight), so nothing touches the disk and memory stays flat. The
// download runs on its own thread; whichever side fails stops the other.
constexpr size_t kStreamBuffer = 8u << 20;

BlobPushResult stream_between_registries(Client& from, const std::string& src_repo, Client& to,
                                         const std::string& dest_repo, const oci::Descriptor& blob,
                                         const CancelToken& cancel) {
  struct Pipe {
    std::mutex mu;
    std::condition_variable cv;
    std::deque<std::string> chunks;
    size_t buffered = 0;
    size_t front_used = 0;  // bytes of chunks.front() already read
    bool done = false;      // the download finished (well or not)
    bool aborted = false;   // the upload gave up: the download must stop
  } pipe;
  std::exception_ptr download_error;
  std::thread downloader([&] {
    try {
      from.get_blob(
          src_repo, blob.digest, blob.size,
          [&](const char* data, size_t n) {
            std::unique_lock lock(pipe.mu);
            pipe.cv.wait(lock, [&] { return pipe.aborted || pipe.buffered < kStreamBuffer; });
            if (pipe.aborted) throw Cancelled();
            pipe.chunks.emplace_back(data, n);
            pipe.buffered += n;
            pipe.cv.notify_all();
          },
          TransferProgress(), cancel);
    } catch (...) {
      download_error = std::current_exception();
    }
    std::lock_guard lock(pipe.mu);
    pipe.done = true;
    pipe.cv.notify_all();
  });
  BlobReader read = [&](char* buffer, size_t capacity) -> size_t {
    std::unique_lock lock(pipe.mu);
    pipe.cv.wait(lock, [&] { return !pipe.chunks.empty() || pipe.done; });
    if (pipe.chunks.empty()) return 0;  // the download ended before the upload had it all
    std::string& front = pipe.chunks.front();
    size_t n = std::min(capacity, front.size() - pipe.front_used);
    std::copy_n(front.data() + pipe.front_used, n, buffer);
    pipe.front_used += n;
    pipe.buffered -= n;
    if (pipe.front_used == front.size()) {
      pipe.chunks.pop_front();
      pipe.front_used = 0;
    }
    pipe.cv.notify_all();
    return n;
  };
  auto stop_download = [&] {
    {
      std::lock_guard lock(pipe.mu);
      pipe.aborted = true;
      pipe.cv.notify_all();
    }
    downloader.join();
  };
  BlobPushResult result;
  try {
    result = to.push_blob_stream(dest_repo, blob.digest, blob.size, read, cancel);
  } catch (...) {
    stop_download();
    // The download's own failure (a corrupt source blob, say) says more than "ended early".
    if (download_error) {
      try {
        std::rethrow_exception(download_error);
      } catch (const Cancelled&) {
      }
    }
    throw;
  }
  stop_download();  // the destination had it already (HEAD): nothing was read
  if (download_error && !result.existed) std::rethrow_exception(download_error);
  return result;
}

// Larger blobs: a temp file in `staging_dir` (Client::push_blob reads a file it can seek in).
// TODO(client): a push from a reader would let these stream too.
BlobPushResult stream_through_file(Client& from, const std::string& src_repo, Client& to, const std::string& dest_repo,
                                   const oci::Descriptor& blob, const std::string& staging_dir,
                                   const CancelToken& cancel) {
  util::TempPathGuard staged(fs::path(staging_dir) / ("imgbake-copy-" + blob.digest.substr(7, 16)));
  const fs::path& tmp = staged.path();
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    from.get_blob(
        src_repo, blob.digest, blob.size,
        [&](const char* data, size_t n) { out.write(data, static_cast<std::streamsize>(n)); }, TransferProgress(),
        cancel);
    if (!out) throw BuildError("cannot write " + tmp.string() + " (the staging file of a large blob); set TMPDIR");
  }
  return to.push_blob(dest_repo, blob.digest, blob.size, tmp, "", TransferProgress(), cancel);
}

// Refuses an image with a trusted revocation record unless the policy allows it; returns the
// revocation that was let through.
std::optional<CheckedRecord> check_revocation(Client& client, const std::string& repo, const std::string& digest,
                                              const std::string& what, const RevocationPolicy& policy,
                                              const TransferLog& log, const CancelToken& cancel) {
  static const std::vector<provenance::VerifyingKey> no_keys;
  auto records = image_records(client, repo, digest, policy.keys ? *policy.keys : no_keys, cancel);
  for (const auto& r : records)
    if (r.record.action == "revoke" && !r.verified && log)
      log("ignored an untrusted revocation record " + r.digest + " of " + what + ": " + r.problem);
  auto revocation = find_revocation(records);
  if (!revocation) return std::nullopt;
  std::string why = what + " (" + digest + ") is revoked: " + revocation->record.reason + " (revocation record " +
                    revocation->digest + " by " + revocation->record.who + " at " + revocation->record.time + ")";
  if (!policy.allow_revoked) throw BuildError(why + "; --allow-revoked takes it anyway");
  if (log) log("warning: " + why + "; taken because of --allow-revoked");
  return revocation;
}

}  // namespace

bool put_referrer(Client& client, const std::string& repo, const std::string& subject,
                  const std::string& referrer_bytes, const std::string& referrer_digest) {
  return detail::put_referrer(client, repo, subject, referrer_bytes, referrer_digest);
}

std::string referrers_tag(const std::string& digest) { return detail::referrers_tag(digest); }

TransferReport push_image(store::Store& st, const store::ImageRecord& img, Client& client, const Reference& dest,
                          const std::vector<std::string>& extra_tags, bool replace_tags,
                          const provenance::SigningKey* record_key, const TransferLog& log, const CancelToken& cancel) {
  TransferReport rep;
  const std::string& repo = dest.repository;
  std::vector<std::string> tags = {dest.tag.empty() ? img.version : dest.tag};
  for (const auto& t : extra_tags)
    if (std::find(tags.begin(), tags.end(), t) == tags.end()) tags.push_back(t);
  // Tags that point at another image are refused before anything is uploaded.
  std::vector<std::string> channels;
  for (const auto& c : st.channels(img.name)) channels.push_back(c.channel);
  for (const auto& t : tags) {
    auto existing = client.get_manifest(repo, t);
    if (!existing || existing->digest == img.manifest_digest) continue;
    if (replace_tags) {
      if (log) log("tag " + t + " moves from " + short_digest(existing->digest) + " (--force)");
      continue;
    }
    bool channel = std::find(channels.begin(), channels.end(), t) != channels.end();
    throw BuildError("refusing to replace " + dest.registry + "/" + repo + ":" + t + ": it points at " +
                     existing->digest + ", not at " + img.ref() + " (" + img.manifest_digest + "); " +
                     (channel ? "a channel tag moves with `imgbake promote " + dest.registry + "/" + repo + "@" +
                                    img.manifest_digest + " --channel " + t + "`"
                              : "version tags are immutable") +
                     " (push --force replaces it)");
  }
  // Every blob of the image and of its referrers; an unreadable manifest stops the push here.
  const std::vector<oci::Descriptor> blobs = st.blobs_of(img);
  std::string bytes = st.blobs().read(img.manifest_digest);
  push_local_blobs(st, client, repo, blobs, rep, log, cancel);
  rep.manifest_digest = client.put_manifest(repo, img.manifest_digest, oci::kManifestMediaType, bytes);
  if (rep.manifest_digest != img.manifest_digest)
    throw BuildError("the registry stored the manifest as " + rep.manifest_digest + ", not " + img.manifest_digest);
  for (const auto& t : tags) client.put_manifest(repo, t, oci::kManifestMediaType, bytes);
  rep.tags = tags;

  if (!img.referrer_digest.empty()) {  // its blobs went with the image's
    std::string ref_bytes = st.blobs().read(img.referrer_digest);
    rep.referrers_tag_schema = put_referrer(client, repo, img.manifest_digest, ref_bytes, img.referrer_digest);
    rep.referrer_digest = img.referrer_digest;
    if (log) log("provenance " + short_digest(img.referrer_digest) + " pushed as a referrer of the image");
  }
  // The image's signed test results (imgbake test), the evidence a gated channel asks for.
  for (const store::TestRun& t : st.test_runs(img)) {
    std::string ref_bytes = st.blobs().read(t.referrer_digest);
    if (put_referrer(client, repo, img.manifest_digest, ref_bytes, t.referrer_digest)) rep.referrers_tag_schema = true;
    if (log)
      log("test result " + short_digest(t.referrer_digest) + " (suite " + t.suite + ", " +
          (t.passed ? "passed" : "failed") + ") pushed as a referrer of the image");
  }
  if (record_key) {
    rep.record_digests = push_local_records(st, img, client, dest, *record_key, cancel);
    if (log && !rep.record_digests.empty())
      log(std::to_string(rep.record_digests.size()) + " record(s) of the local audit log pushed as signed referrers");
  }
  return rep;
}

TransferReport pull_image(store::Store& st, Client& client, const Reference& src, const std::string& name,
                          const std::string& version, const RevocationPolicy& policy, const TransferLog& log,
                          const CancelToken& cancel) {
  TransferReport rep;
  const std::string& repo = src.repository;
  std::string reference = src.digest.empty() ? (src.tag.empty() ? "latest" : src.tag) : src.digest;
  auto manifest = client.get_manifest(repo, reference);
  if (!manifest) throw BuildError(src.str() + ": no such image in the registry");
  if (!src.digest.empty() && manifest->digest != src.digest)
    throw BuildError(src.str() + ": the registry served a manifest with digest " + manifest->digest);
  if (manifest->media_type != oci::kManifestMediaType &&
      manifest->media_type != "application/vnd.docker.distribution.manifest.v2+json")
    throw BuildError(src.str() + ": " + manifest->media_type +
                     " is not an image manifest (indexes are not pulled yet)");
  rep.manifest_digest = manifest->digest;
  auto revocation = check_revocation(client, repo, manifest->digest, src.str(), policy, log, cancel);
  if (revocation) rep.revocation = revocation->digest;

  auto fetch_blobs = [&](const nlohmann::json& m, const std::string& where) {
    for (const auto& b : blobs_of(m, where)) {
      if (st.blobs().exists(b.digest)) {
        ++rep.blobs_skipped;
        continue;
      }
      store::BlobWriter writer(st.blobs());
      client.get_blob(
          repo, b.digest, b.size, [&](const char* data, size_t n) { writer.write(data, n); }, TransferProgress(),
          cancel);
      writer.commit(b.digest, b.size, b.media_type);
      ++rep.blobs_sent;
      rep.blob_bytes += b.size;
      if (log) log(short_digest(b.digest) + " " + mib(b.size) + ": pulled");
    }
  };
  const std::string manifest_where = src.str() + ": the manifest";
  nlohmann::json m = manifest_json(*manifest, manifest_where);
  fetch_blobs(m, manifest_where + " " + manifest->digest);

  store::ImportRequest req;
  req.manifest_bytes = manifest->bytes;
  req.source = src.registry + "/" + repo + "@" + manifest->digest;
  for (const auto& d : client.referrers(repo, manifest->digest, oci::kProvenanceArtifactType)) {
    auto ref = client.get_manifest(repo, d.digest);
    if (!ref) continue;
    const std::string ref_where = src.str() + ": the provenance referrer";
    fetch_blobs(manifest_json(*ref, ref_where), ref_where + " " + ref->digest);
    req.referrer_manifest_bytes = ref->bytes;
    rep.referrer_digest = ref->digest;
    break;
  }
  if (!req.referrer_manifest_bytes.empty()) req.untrusted_signature = untrusted_signature(st, req, policy, src);
  std::string local_name = name;
  if (local_name.empty()) {
    local_name =
        string_member(m.contains("annotations") ? m["annotations"] : nlohmann::json(), "io.imgbake.image.name");
    if (local_name.empty()) local_name = fs::path(repo).filename().string();
  }
  req.name = local_name;
  if (!version.empty()) req.version = version;
  store::ImageRecord rec = st.import_image(req);
  rep.local_ref = rec.ref();
  if (revocation && !rec.revoked) st.revoke(rec.ref(), revocation->record.reason, false);
  // Its signed test results come along as they are; whether one is trusted is for the gate and
  // verify to say (with the puller's keys), not for the pull.
  for (const auto& d : client.referrers(repo, manifest->digest, store::kTestResultArtifactType)) {
    auto ref = client.get_manifest(repo, d.digest);
    if (!ref) continue;
    const std::string ref_where = src.str() + ": the test result referrer " + ref->digest;
    nlohmann::json rm = manifest_json(*ref, ref_where);
    fetch_blobs(rm, ref_where);
    store::TestRunRequest tr;
    tr.referrer_manifest_bytes = ref->bytes;
    const nlohmann::json layers = rm.value("layers", nlohmann::json::array());
    if (layers.size() != 1 || !layers[0].is_object()) throw BuildError(ref_where + " does not hold one envelope");
    tr.envelope = oci::parse_json(st.blobs().read(layers[0].value("digest", "")), ref_where + ": its envelope");
    // What the catalog row says is read from the statement; the gate checks it against the
    // signature anyway.
    std::string payload;
    try {
      payload = provenance::base64_decode(tr.envelope.value("payload", ""));
    } catch (const std::exception&) {
    }
    const nlohmann::json st_json = nlohmann::json::parse(payload, nullptr, false);
    const nlohmann::json pred =
        st_json.is_object() ? st_json.value("predicate", nlohmann::json::object()) : nlohmann::json::object();
    tr.suite = pred.is_object() && pred.contains("imgbake") && pred["imgbake"].is_object()
                   ? pred["imgbake"].value("suite", "")
                   : "";
    if (tr.suite.empty()) throw BuildError(ref_where + ": its statement names no test suite");
    tr.passed = pred.value("result", "") == "PASSED";
    for (const auto& f : pred.value("failedTests", nlohmann::json::array()))
      if (f.is_string()) tr.failed.push_back(f.get<std::string>());
    st.record_test(rec, tr);
    ++rep.test_results;
    if (log) log("test result " + short_digest(ref->digest) + " (suite " + tr.suite + ") pulled");
  }
  return rep;
}

TransferReport copy_image(Client& from, const Reference& src, Client& to, const Reference& dest,
                          const std::string& staging_dir, const RevocationPolicy& policy, const TransferLog& log,
                          const CancelToken& cancel) {
  TransferReport rep;
  std::string reference = src.digest.empty() ? (src.tag.empty() ? "latest" : src.tag) : src.digest;
  auto manifest = from.get_manifest(src.repository, reference);
  if (!manifest) throw BuildError(src.str() + ": no such image in the registry");
  if (!src.digest.empty() && manifest->digest != src.digest)
    throw BuildError(src.str() + ": the registry served a manifest with digest " + manifest->digest);
  if (auto revocation = check_revocation(from, src.repository, manifest->digest, src.str(), policy, log, cancel))
    rep.revocation = revocation->digest;
  const bool same_registry = from.registry() == to.registry() && src.repository != dest.repository;

  auto copy_blobs = [&](const nlohmann::json& m, const std::string& where) {
    for (const auto& b : blobs_of(m, where)) {
      if (to.has_blob(dest.repository, b.digest)) {
        ++rep.blobs_skipped;
        continue;
      }
      BlobPushResult r;
      std::string how;
      if (same_registry && try_mount(to, dest.repository, b, src.repository, r, cancel)) {
        how = r.mounted ? "mounted" : "already there";
      } else if (b.size <= kCopyMemoryLimit) {
        r = BlobPushResult();
        r.bytes_sent = stream_through_memory(from, src.repository, to, dest.repository, b, cancel);
        how = "streamed";
      } else {
        try {
          r = stream_between_registries(from, src.repository, to, dest.repository, b, cancel);
          how = "streamed";
        } catch (const Cancelled&) {
          throw;
        } catch (const std::exception& e) {
          // A stream cannot be resumed; a temp file can (the client resumes uploads from files).
          if (log) log(short_digest(b.digest) + ": streaming failed (" + e.what() + "); copying through a temp file");
          r = stream_through_file(from, src.repository, to, dest.repository, b, staging_dir, cancel);
          ++rep.blobs_staged;
          how = "copied through a temp file";
        }
      }
      count(rep, r);
      if (log) log(short_digest(b.digest) + " " + mib(b.size) + ": " + how);
    }
  };
  const std::string manifest_where = src.str() + ": the manifest";
  copy_blobs(manifest_json(*manifest, manifest_where), manifest_where + " " + manifest->digest);
  rep.manifest_digest = to.put_manifest(dest.repository, manifest->digest, manifest->media_type, manifest->bytes);
  if (rep.manifest_digest != manifest->digest)
    throw BuildError("the destination stored the manifest as " + rep.manifest_digest + ", not " + manifest->digest +
                     ": the copy would change the digest");
  if (!dest.tag.empty()) {
    to.put_manifest(dest.repository, dest.tag, manifest->media_type, manifest->bytes);
    rep.tags.push_back(dest.tag);
  }
  // Every referrer goes along: the provenance and the records (promotions, revocations).
  for (const auto& d : from.referrers(src.repository, manifest->digest)) {
    auto ref = from.get_manifest(src.repository, d.digest);
    if (!ref) continue;
    const std::string ref_where = src.str() + ": the referrer";
    const nlohmann::json ref_json = manifest_json(*ref, ref_where);
    copy_blobs(ref_json, ref_where + " " + ref->digest);
    if (put_referrer(to, dest.repository, manifest->digest, ref->bytes, ref->digest)) rep.referrers_tag_schema = true;
    if (string_member(ref_json, "artifactType") == oci::kProvenanceArtifactType) rep.referrer_digest = ref->digest;
  }
  return rep;
}

}  // namespace imgbake::registry
