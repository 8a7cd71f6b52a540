// Signed records on a registry (the remote channel operations): pushing a record as a referrer
// of its image, reading the records of an image or a repository, promote / rollback / revoke as
// tag moves with their records, push of the local audit records, and verify of a registry image.
// record_model.cpp builds, signs and checks the records.
#include "imgbake/records.h"

#include <map>
#include <set>

#include "imgbake/error.h"
#include "imgbake/util.h"
#include "record_model.h"
#include "referrers.h"

namespace imgbake::registry {

using detail::check_signature;
using detail::json_string;
using detail::record_actions;

namespace {

constexpr uint64_t kMaxEnvelopeSize = 1 << 20;  // records and provenance are a few KiB

bool is_image_manifest(const std::string& media_type) {
  return media_type == oci::kManifestMediaType || media_type == "application/vnd.docker.distribution.manifest.v2+json";
}

std::string reference_of(const Reference& ref) {
  if (!ref.digest.empty()) return ref.digest;
  if (!ref.tag.empty()) return ref.tag;
  throw UsageError(ref.str() + ": name the image with :VERSION or @sha256:DIGEST");
}

std::string repository_name(const Reference& ref) { return ref.registry + "/" + ref.repository; }

Manifest fetch_image(Client& client, const Reference& ref) {
  std::string reference = reference_of(ref);
  auto manifest = client.get_manifest(ref.repository, reference);
  if (!manifest) throw BuildError(ref.str() + ": no such image in the registry");
  if (!ref.digest.empty() && manifest->digest != ref.digest)
    throw BuildError(ref.str() + ": the registry served a manifest with digest " + manifest->digest);
  if (!is_image_manifest(manifest->media_type))
    throw BuildError(ref.str() + ": " + manifest->media_type + " is not an image manifest");
  return *manifest;
}

std::string blob_as_string(Client& client, const std::string& repo, const std::string& digest, uint64_t size,
                           const CancelToken& cancel) {
  if (size > kMaxEnvelopeSize)
    throw BuildError("blob " + digest + " has " + std::to_string(size) + " bytes, too many for an envelope");
  std::string data;
  client.get_blob(
      repo, digest, size, [&](const char* p, size_t n) { data.append(p, n); }, TransferProgress(), cancel);
  return data;
}

// The DSSE layer of a referrer manifest, or nullptr.
const nlohmann::json* envelope_layer(const nlohmann::json& manifest) {
  auto layers = manifest.find("layers");
  if (layers == manifest.end() || !layers->is_array()) return nullptr;
  for (const auto& l : *layers)
    if (json_string(l, "mediaType") == oci::kDsseMediaType) return &l;
  return nullptr;
}

std::string who_am_i() { return util::current_user() + "@" + util::hostname(); }

std::string make_time(const RecordAuthor& author) { return author.now ? author.now() : now_rfc3339_ms(); }

const provenance::SigningKey& key_of(const RecordAuthor& author) {
  if (!author.key) throw BuildError("no signing key to sign the record with");
  return *author.key;
}

oci::Descriptor descriptor_of(const Manifest& m) {
  oci::Descriptor d;
  d.media_type = m.media_type;
  d.digest = m.digest;
  d.size = m.bytes.size();
  return d;
}

// Pushes a record for a move that already happened; a failure says so, so that nobody thinks
// the channel stayed where it was.
std::string push_record_after_move(Client& client, const std::string& repo, const Manifest& image, const Record& record,
                                   const RecordAuthor& author, const CancelToken& cancel) {
  try {
    return push_record(client, repo, descriptor_of(image), sign_record(record, key_of(author)), cancel);
  } catch (const Cancelled&) {
    throw;
  } catch (const std::exception& e) {
    throw BuildError("tag '" + record.channel + "' of " + record.repository + " now points at " + record.to_digest +
                     ", but the " + record.action + " record could not be pushed: " + e.what() +
                     "; history will not show this move");
  }
}

}  // namespace

bool names_registry(std::string_view ref) {
  if (ref.starts_with("docker://")) ref.remove_prefix(9);
  size_t slash = ref.find('/');
  if (slash == std::string_view::npos) return false;
  std::string_view first = ref.substr(0, slash);
  return first.find('.') != std::string_view::npos || first.find(':') != std::string_view::npos || first == "localhost";
}

std::string push_record(Client& client, const std::string& repo, const oci::Descriptor& subject,
                        const nlohmann::json& envelope, const CancelToken& cancel) {
  std::string env_bytes = envelope.dump();
  std::string env_digest = "sha256:" + util::sha256_hex(env_bytes);
  client.push_blob_bytes(repo, env_digest, env_bytes, cancel);
  const std::string empty = "{}";
  std::string empty_digest = "sha256:" + util::sha256_hex(empty);
  client.push_blob_bytes(repo, empty_digest, empty, cancel);

  nlohmann::ordered_json annotations = nlohmann::ordered_json::object();
  nlohmann::json statement =
      nlohmann::json::parse(provenance::base64_decode(json_string(envelope, "payload")), nullptr, false);
  if (statement.is_object()) {
    const nlohmann::json pred = statement.value("predicate", nlohmann::json::object());
    annotations["org.opencontainers.image.created"] = json_string(pred, "time");
    annotations["io.imgbake.record.action"] = json_string(pred, "action");
    annotations["io.imgbake.record.channel"] = json_string(pred, "channel");
  }
  nlohmann::ordered_json manifest = {
      {"schemaVersion", 2},
      {"mediaType", oci::kManifestMediaType},
      {"artifactType", kRecordArtifactType},
      {"config", {{"mediaType", oci::kEmptyMediaType}, {"digest", empty_digest}, {"size", 2}, {"data", "e30="}}},
      {"layers", nlohmann::ordered_json::array(
                     {{{"mediaType", oci::kDsseMediaType}, {"digest", env_digest}, {"size", env_bytes.size()}}})},
      {"subject", {{"mediaType", subject.media_type}, {"digest", subject.digest}, {"size", subject.size}}},
      {"annotations", annotations}};
  std::string bytes = manifest.dump();
  std::string digest = "sha256:" + util::sha256_hex(bytes);
  detail::put_referrer(client, repo, subject.digest, bytes, digest);
  return digest;
}

std::vector<CheckedRecord> image_records(Client& client, const std::string& repo, const std::string& digest,
                                         const std::vector<provenance::VerifyingKey>& keys, const CancelToken& cancel) {
  std::vector<CheckedRecord> out;
  for (const auto& d : client.referrers(repo, digest, kRecordArtifactType)) {
    cancel.throw_if_cancelled();
    CheckedRecord rec;
    rec.digest = d.digest;
    rec.subject = digest;
    try {
      auto m = client.get_manifest(repo, d.digest);
      if (!m) throw BuildError("the record's manifest is listed but missing");
      nlohmann::json manifest = nlohmann::json::parse(m->bytes);
      std::string attached = manifest.contains("subject") ? json_string(manifest["subject"], "digest") : "";
      if (attached != digest) throw BuildError("the record is attached to " + attached + ", not " + digest);
      const nlohmann::json* layer = envelope_layer(manifest);
      if (!layer) throw BuildError(std::string("the record holds no ") + oci::kDsseMediaType + " layer");
      std::string env =
          blob_as_string(client, repo, json_string(*layer, "digest"), layer->value("size", uint64_t{0}), cancel);
      CheckedRecord checked = check_record(nlohmann::json::parse(env), digest, keys);
      checked.digest = d.digest;
      rec = checked;
    } catch (const Cancelled&) {
      throw;
    } catch (const std::exception& e) {
      rec.verified = false;
      rec.problem = e.what();
    }
    out.push_back(rec);
  }
  sort_records(out);
  return out;
}

std::vector<CheckedRecord> repository_records(Client& client, const std::string& repo,
                                              const std::vector<provenance::VerifyingKey>& keys,
                                              const CancelToken& cancel) {
  std::vector<std::string> tags = client.tags(repo);
  std::set<std::string> subjects;
  // The referrers tag schema names every image that has referrers; with the referrers API
  // every tagged image is asked.
  for (const auto& t : tags)
    if (t.size() == 71 && t.starts_with("sha256-")) subjects.insert("sha256:" + t.substr(7));
  if (subjects.empty() && client.has_referrers_api(repo)) {
    for (const auto& t : tags) {
      cancel.throw_if_cancelled();
      auto m = client.get_manifest(repo, t);
      if (m && is_image_manifest(m->media_type)) subjects.insert(m->digest);
    }
  }
  std::vector<CheckedRecord> out;
  for (const auto& s : subjects) {
    auto recs = image_records(client, repo, s, keys, cancel);
    out.insert(out.end(), recs.begin(), recs.end());
  }
  sort_records(out);
  return out;
}

namespace {

// Points tag move.channel at `m` (bytes unchanged) and pushes the signed record of the move,
// chained to the channel's previous record.
void move_tag(Client& client, const std::string& repo, const Manifest& m, const std::string& action,
              const std::string& reason, const RecordAuthor& author, const std::vector<CheckedRecord>& records,
              ChannelMove& move, const CancelToken& cancel) {
  if (client.put_manifest(repo, move.channel, m.media_type, m.bytes) != m.digest)
    throw BuildError("the registry stored tag '" + move.channel + "' with another digest than " + m.digest);
  Record r{action,
           move.repository,
           move.channel,
           move.from_digest,
           m.digest,
           reason,
           author.who.empty() ? who_am_i() : author.who,
           make_time(author),
           chain_head(records, move.repository, move.channel),
           "",
           "",
           ""};
  move.record_digest = push_record_after_move(client, repo, m, r, author, cancel);
}

}  // namespace

ChannelMove promote_remote(Client& client, const Reference& image, const std::string& channel,
                           const std::string& reason, const RecordAuthor& author,
                           const std::vector<provenance::VerifyingKey>& keys, const CancelToken& cancel) {
  const std::string& repo = image.repository;
  ChannelMove move;
  move.repository = repository_name(image);
  move.channel = channel;
  Reference as_tag = image;
  as_tag.tag = channel;
  as_tag.digest.clear();
  Reference::parse(as_tag.str());  // a channel must be a valid tag: throws UsageError saying why
  Manifest m = fetch_image(client, image);
  move.to_digest = m.digest;
  std::vector<CheckedRecord> records = repository_records(client, repo, keys, cancel);
  std::vector<CheckedRecord> own;
  for (const auto& r : records)
    if (r.subject == m.digest) own.push_back(r);
  if (auto revoked = find_revocation(own))
    throw BuildError("refusing to promote " + image.str() + ": it is revoked (" + revoked->record.reason + "; record " +
                     revoked->digest + ")");
  if (auto current = client.get_manifest(repo, channel)) move.from_digest = current->digest;
  if (move.from_digest == m.digest) throw BuildError(image.str() + " is already in channel '" + channel + "'");
  move_tag(client, repo, m, "promote", reason, author, records, move, cancel);
  return move;
}

ChannelMove rollback_remote(Client& client, const Reference& repository, const std::string& channel,
                            const std::string& reason, const RecordAuthor& author,
                            const std::vector<provenance::VerifyingKey>& keys, const CancelToken& cancel) {
  const std::string& repo = repository.repository;
  ChannelMove move;
  move.repository = repository_name(repository);
  move.channel = channel;
  std::vector<CheckedRecord> records = repository_records(client, repo, keys, cancel);
  move.to_digest = rollback_target(records, move.repository, channel);
  std::vector<CheckedRecord> own;
  for (const auto& r : records)
    if (r.subject == move.to_digest) own.push_back(r);
  if (auto revoked = find_revocation(own))
    throw BuildError("refusing to roll back '" + channel + "' to " + move.to_digest + ": it is revoked (" +
                     revoked->record.reason + "); promote another image instead");
  Reference target = repository;
  target.tag.clear();
  target.digest = move.to_digest;
  Manifest m = fetch_image(client, target);
  if (auto current = client.get_manifest(repo, channel)) move.from_digest = current->digest;
  if (move.from_digest == m.digest)
    throw BuildError("channel '" + channel + "' of " + move.repository + " already points at " + m.digest);
  move_tag(client, repo, m, "rollback", reason, author, records, move, cancel);
  return move;
}

ChannelMove revoke_remote(Client& client, const Reference& image, const std::string& reason, const RecordAuthor& author,
                          const std::vector<provenance::VerifyingKey>& keys, const CancelToken& cancel) {
  if (reason.empty()) throw UsageError("revoke needs a --reason");
  ChannelMove move;
  move.repository = repository_name(image);
  Manifest m = fetch_image(client, image);
  move.to_digest = m.digest;
  std::vector<CheckedRecord> records = repository_records(client, image.repository, keys, cancel);
  std::vector<CheckedRecord> own;
  for (const auto& r : records)
    if (r.subject == m.digest) own.push_back(r);
  if (auto revoked = find_revocation(own)) {
    move.record_digest = revoked->digest;
    move.already = true;
    return move;
  }
  Record r{"revoke",
           move.repository,
           "",
           "",
           m.digest,
           reason,
           author.who.empty() ? who_am_i() : author.who,
           make_time(author),
           chain_head(records, move.repository, ""),
           "",
           "",
           ""};
  move.record_digest = push_record(client, image.repository, descriptor_of(m), sign_record(r, key_of(author)), cancel);
  return move;
}

std::vector<std::string> push_local_records(const store::Store& st, const store::ImageRecord& img, Client& client,
                                            const Reference& dest, const provenance::SigningKey& key,
                                            const CancelToken& cancel) {
  std::vector<std::string> out;
  oci::Descriptor subject{oci::kManifestMediaType, img.manifest_digest, img.manifest_size, {}};
  for (const auto& e : st.history(img.name)) {
    if (!record_actions().contains(e.action) || e.to_ref != img.ref()) continue;
    std::string from;
    if (!e.from_ref.empty()) {
      try {
        from = st.resolve(e.from_ref).manifest_digest;
      } catch (const std::exception&) {
        from.clear();  // the earlier image is gone from the store: the record says nothing about it
      }
    }
    Record r{e.action,
             dest.registry + "/" + dest.repository,
             e.channel,
             from,
             img.manifest_digest,
             e.reason,
             e.who,
             e.time,
             "",
             kImportedFromLocalStore,
             e.name,
             e.hash};
    out.push_back(push_record(client, dest.repository, subject, sign_record(r, key), cancel));
  }
  return out;
}

RemoteVerification verify_remote(Client& client, const Reference& image,
                                 const std::vector<provenance::VerifyingKey>& keys, const CancelToken& cancel) {
  RemoteVerification v;
  const std::string& repo = image.repository;
  Manifest m = fetch_image(client, image);
  v.manifest_digest = m.digest;
  nlohmann::json manifest = nlohmann::json::parse(m.bytes);
  auto problem = [&](std::string p) { v.problems.push_back(std::move(p)); };

  // What the statement must cover: the manifest and each layer (by title), as verify_image.
  std::map<std::string, std::string> layers;               // title -> sha256 hex
  std::vector<std::pair<std::string, std::string>> blobs;  // digest, what
  if (manifest.contains("config")) blobs.emplace_back(json_string(manifest["config"], "digest"), "config");
  const auto manifest_layers = manifest.value("layers", nlohmann::json::array());
  for (size_t i = 0; i < manifest_layers.size(); ++i) {
    const auto& l = manifest_layers[i];
    std::string d = json_string(l, "digest");
    // Named as the statement names them (a container image's layers are untitled: "layer N").
    std::string title = oci::layer_subject_name(l, i);
    layers[title] = d.size() > 7 ? d.substr(7) : d;
    blobs.emplace_back(d, title);
  }
  for (const auto& [digest, what] : blobs)
    if (!client.has_blob(repo, digest))
      problem(what + " (" + digest + ") is missing from " + image.registry + "/" + repo);

  auto refs = client.referrers(repo, m.digest, oci::kProvenanceArtifactType);
  if (refs.empty()) {
    problem("the image has no provenance referrer in " + image.registry + "/" + repo);
    return v;
  }
  v.referrer_digest = refs.front().digest;
  auto ref = client.get_manifest(repo, v.referrer_digest);
  if (!ref) {
    problem("the provenance referrer " + v.referrer_digest + " is listed but missing");
    return v;
  }
  nlohmann::json ref_manifest = nlohmann::json::parse(ref->bytes, nullptr, false);
  std::string about = ref_manifest.is_object() && ref_manifest.contains("subject")
                          ? json_string(ref_manifest["subject"], "digest")
                          : "";
  if (about != m.digest) {
    problem("the provenance referrer " + v.referrer_digest + " is about " + (about.empty() ? "nothing" : about) +
            ", not " + m.digest);
    return v;
  }
  const nlohmann::json* layer = ref_manifest.is_object() ? envelope_layer(ref_manifest) : nullptr;
  if (!layer) {
    problem(std::string("the provenance referrer holds no ") + oci::kDsseMediaType + " layer");
    return v;
  }
  nlohmann::json envelope;
  try {
    envelope = nlohmann::json::parse(
        blob_as_string(client, repo, json_string(*layer, "digest"), layer->value("size", uint64_t{0}), cancel));
  } catch (const Cancelled&) {
    throw;
  } catch (const std::exception& e) {
    problem(std::string("provenance envelope: ") + e.what());
    return v;
  }
  provenance::EnvelopeCheck sig = check_signature(envelope, keys);
  if (!sig.ok) problem("signature: " + sig.error);
  v.keyid = sig.keyid;
  v.statement = nlohmann::json::parse(sig.payload, nullptr, false);
  if (!v.statement.is_object()) {
    problem("the signed payload is not an in-toto statement");
    v.statement = nlohmann::json::object();
    return v;
  }
  std::set<std::string> covered;
  bool manifest_covered = false;
  const auto& subjects = v.statement.value("subject", nlohmann::json::array());
  if (subjects.empty()) problem("the statement names no subject");
  for (const auto& s : subjects) {
    std::string name = json_string(s, "name");
    std::string hex = s.contains("digest") ? json_string(s["digest"], "sha256") : "";
    auto it = layers.find(name);
    if (it == layers.end() && "sha256:" + hex == m.digest) {
      manifest_covered = true;  // the image itself, whatever NAME:VERSION it was built as
    } else if (it == layers.end()) {
      problem("subject '" + name + "' is not part of " + image.str());
    } else if (it->second != hex) {
      problem("subject '" + name + "': signed digest sha256:" + hex + " but the manifest names sha256:" + it->second);
    } else {
      covered.insert(name);
    }
  }
  if (!manifest_covered) problem("the statement does not name the manifest " + m.digest);
  for (const auto& [title, hex] : layers)
    if (!covered.contains(title)) problem("the statement does not cover '" + title + "'");
  v.ok = v.problems.empty();
  return v;
}

}  // namespace imgbake::registry
