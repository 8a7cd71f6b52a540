// The registry client's blob uploads: HEAD first, cross-repository mounts, monolithic PUT or
// PATCH chunks, and resuming where the registry says an interrupted upload stands.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "client_impl.h"
#include "imgbake/unique_fd.h"
#include "imgbake/util.h"

namespace imgbake::registry {

std::string Client::Impl::start_upload(const std::string& repo, const CancelToken& cancel) {
  Request req;
  req.method = "POST";
  req.url = url_for("/v2/" + repo + "/blobs/uploads/");
  req.scopes = {push(repo)};
  req.cancel = &cancel;
  Response resp = send(req);
  if (resp.status != 202 || resp.header("location").empty()) fail("POST " + path_of(req.url), resp);
  return resolve_url(req.url, resp.header("location"));
}

// The registry's offset of an interrupted upload, with the URL to continue at; nullopt when
// it dropped the upload (distribution does when part of a chunk arrived).
std::optional<std::pair<uint64_t, std::string>> Client::Impl::upload_status(const std::string& repo,
                                                                            const std::string& location,
                                                                            const CancelToken& cancel) {
  Request req;
  req.url = location;
  req.scopes = {push(repo)};
  req.cancel = &cancel;
  Response resp = send(req);
  if (resp.status == 404 || resp.status == 400) return std::nullopt;
  if (resp.status != 204 && resp.status != 200) fail("GET " + path_of(location), resp);
  uint64_t offset = 0;
  std::string range = resp.header("range");
  if (size_t dash = range.find('-'); dash != std::string::npos) {
    // "0-0" is both "nothing" and "one byte" in distribution; starting over from 0 is the safe reading.
    uint64_t last = std::strtoull(range.c_str() + dash + 1, nullptr, 10);
    offset = last == 0 ? 0 : last + 1;
  }
  std::string next = resp.header("location").empty() ? location : resolve_url(location, resp.header("location"));
  return std::make_pair(offset, next);
}

void Client::Impl::upload(const std::string& repo, const std::string& digest, const Body& whole, std::string location,
                          const TransferProgress* progress, const CancelToken& cancel, BlobPushResult& result) {
  const uint64_t size = whole.length;
  const uint64_t chunk = std::max<uint64_t>(options.chunk_size, 1);
  BlobProgress blob_progress{&options.progress, digest, size};
  uint64_t offset = 0;
  int recoveries = 0;
  if (location.empty()) location = start_upload(repo, cancel);
  while (true) {
    uint64_t sent_before = bytes_sent();
    try {
      if (offset == 0 && size <= chunk) {
        finish_upload(repo, digest, location, whole, progress, &blob_progress, result.resumed, cancel);
      } else {
        while (offset < size) {
          uint64_t n = std::min(chunk, size - offset);
          Request req;
          req.method = "PATCH";
          req.url = location;
          req.scopes = {push(repo)};
          req.headers = {kOctetStream,
                         "Content-Range: " + std::to_string(offset) + "-" + std::to_string(offset + n - 1)};
          req.body = whole.slice(offset, n);
          req.progress = progress;
          req.blob_progress = &blob_progress;
          req.progress_base = offset;
          req.progress_total = size;
          req.cancel = &cancel;
          req.retry = false;
          Response resp = send(req);
          if (is_busy(resp.status)) throw BusyAnswer("PATCH " + path_of(location), std::move(resp));
          if (resp.status == 404 && result.resumed) throw UploadGone();
          if (resp.status != 202 || resp.header("location").empty()) fail("PATCH " + path_of(location), resp);
          location = resolve_url(location, resp.header("location"));
          offset += n;
        }
        finish_upload(repo, digest, location, Body::of_bytes({}), nullptr, nullptr, result.resumed, cancel);
      }
      result.bytes_sent += bytes_sent() - sent_before;
      blob_progress.report(size, true);
      return;
    } catch (const TransportError& e) {
      result.bytes_sent += bytes_sent() - sent_before;
      if (!whole.repeatable() || ++recoveries > options.max_retries) throw;  // a stream cannot be sent again
      log("resume: the connection dropped while uploading " + digest + " to " + repo + " (" + e.what() +
          "); asking the registry how much arrived");
    } catch (const BusyAnswer& busy) {
      result.bytes_sent += bytes_sent() - sent_before;
      if (!whole.repeatable() || ++recoveries > options.max_retries) fail(busy.action(), busy.response());
      backoff(recoveries - 1, http::retry_after(busy.response()),
              busy.action() + " answered HTTP " + std::to_string(busy.response().status), cancel);
      log("resume: asking the registry how much of " + digest + " arrived before it answered HTTP " +
          std::to_string(busy.response().status));
    } catch (const UploadGone&) {
      result.bytes_sent += bytes_sent() - sent_before;
      if (!whole.repeatable() || ++recoveries > options.max_retries)
        throw BuildError("registry " + registry + " dropped the upload of " + digest + " to " + repo + " " +
                         std::to_string(recoveries) + " times; check the registry's log");
    }
    auto status = upload_status(repo, location, cancel);
    result.resumed = true;
    if (status && status->first <= size) {
      offset = status->first;
      location = status->second;
      log("resume: continuing the upload of " + digest + " at byte " + std::to_string(offset) + " of " +
          std::to_string(size));
    } else {
      log("resume: the registry dropped the interrupted upload of " + digest + "; uploading it again from the start");
      offset = 0;
      location = start_upload(repo, cancel);
    }
  }
}

// Sent once: after a broken connection or a busy answer the caller asks the registry how much
// arrived before it sends anything again.
void Client::Impl::finish_upload(const std::string& repo, const std::string& digest, const std::string& location,
                                 const Body& body, const TransferProgress* progress, BlobProgress* blob_progress,
                                 bool resumed, const CancelToken& cancel) {
  Request req;
  req.method = "PUT";
  req.url = with_query(location, "digest=" + util::percent_encode(digest));
  req.scopes = {push(repo)};
  req.headers = {kOctetStream};
  req.body = body;
  req.progress = progress;
  req.blob_progress = blob_progress;
  req.progress_total = body.length;
  req.cancel = &cancel;
  req.retry = false;
  Response resp = send(req);
  if (is_busy(resp.status)) throw BusyAnswer("PUT " + path_of(location), std::move(resp));
  if (resp.status == 404 && resumed) throw UploadGone();
  if (resp.status != 201) fail("PUT " + path_of(location), resp);
  std::string served = resp.header("docker-content-digest");
  if (!served.empty() && served != digest)
    throw BuildError("registry " + registry + " stored the upload as " + served + " instead of " + digest +
                     "; the local file changed while it was uploaded, or the registry is faulty");
}

BlobPushResult Client::Impl::push(const std::string& repo, const std::string& digest, const Body& body,
                                  const std::string& mount_from, const TransferProgress* progress,
                                  const CancelToken& cancel) {
  BlobPushResult result;
  if (has_blob(repo, digest, cancel)) {
    result.existed = true;
    return result;
  }
  std::string location;
  if (!mount_from.empty() && mount_from != repo) {
    location = request_mount(repo, digest, mount_from, cancel);
    if (location.empty()) {
      result.mounted = true;
      return result;
    }
  }
  upload(repo, digest, body, location, progress, cancel, result);
  return result;
}

// POST …/blobs/uploads/?mount=…&from=…: "" when the blob was mounted, else the location of
// the upload session the registry opened instead.
std::string Client::Impl::request_mount(const std::string& repo, const std::string& digest, const std::string& from,
                                        const CancelToken& cancel) {
  Request req;
  req.method = "POST";
  req.url = url_for("/v2/" + repo + "/blobs/uploads/?mount=" + util::percent_encode(digest) +
                    "&from=" + util::percent_encode(from));
  req.scopes = {push(repo), pull(from)};
  req.cancel = &cancel;
  Response resp = send(req);
  if (resp.status == 201) {
    log("mount: " + digest + " from " + from + " into " + repo);
    return "";
  }
  if (resp.status != 202 || resp.header("location").empty()) fail("POST " + path_of(req.url) + " (mount)", resp);
  return resolve_url(req.url, resp.header("location"));
}

BlobPushResult Client::Impl::mount_only(const std::string& repo, const std::string& digest, const std::string& from,
                                        const CancelToken& cancel) {
  BlobPushResult result;
  if (has_blob(repo, digest, cancel)) {
    result.existed = true;
    return result;
  }
  std::string location = request_mount(repo, digest, from, cancel);
  if (location.empty()) {
    result.mounted = true;
    return result;
  }
  // The registry opened an upload instead: give it back rather than leave it to expire.
  Request del;
  del.method = "DELETE";
  del.url = location;
  del.scopes = {push(repo)};
  del.cancel = &cancel;
  try {
    send(del);
  } catch (const Cancelled&) {
    throw;
  } catch (const std::exception&) {
    // An upload left open expires by itself on the registry (purging).
  }
  return result;
}

BlobPushResult Client::push_blob(const std::string& repo, const std::string& digest, uint64_t size,
                                 const std::filesystem::path& file, const std::string& mount_from,
                                 const TransferProgress& progress, const CancelToken& cancel) {
  util::UniqueFd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) throw BuildError("cannot read " + file.string() + " to upload it: " + std::strerror(errno));
  struct stat st = {};
  if (::fstat(fd.get(), &st) != 0 || static_cast<uint64_t>(st.st_size) != size)
    throw BuildError(file.string() + " has " + std::to_string(st.st_size) + " bytes, but its descriptor says " +
                     std::to_string(size) + "; the file changed after it was stored");
  Body body = Body::of_file(fd.get(), 0, size);
  return impl_->push(repo, digest, body, mount_from, &progress, cancel);
}

BlobPushResult Client::push_blob_bytes(const std::string& repo, const std::string& digest, std::string_view data,
                                       const CancelToken& cancel) {
  if (digest.starts_with("sha256:") && digest != "sha256:" + util::sha256_hex(data))
    throw BuildError("push of " + digest + " to " + repo +
                     ": the bytes have another digest (sha256:" + util::sha256_hex(data) + ")");
  return impl_->push(repo, digest, Body::of_bytes(data), "", nullptr, cancel);
}

BlobPushResult Client::push_blob_stream(const std::string& repo, const std::string& digest, uint64_t size,
                                        const BlobReader& read, const CancelToken& cancel) {
  Body body = Body::of_stream(&read, size);
  return impl_->push(repo, digest, body, "", nullptr, cancel);
}

BlobPushResult Client::mount_blob(const std::string& repo, const std::string& digest, const std::string& from_repo,
                                  const CancelToken& cancel) {
  return impl_->mount_only(repo, digest, from_repo, cancel);
}

}  // namespace imgbake::registry
