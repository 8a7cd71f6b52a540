// The "file" provisioner (Packer's): copies files and directories to the machine, or from it,
// through the build's communicator, with Packer's rules for trailing slashes.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "imgbake/cancel.h"
#include "imgbake/communicator.h"
#include "imgbake/error.h"
#include "imgbake/provisioner.h"
#include "imgbake/temp_file.h"
#include "imgbake/util.h"

namespace imgbake {
namespace {

namespace fs = std::filesystem;

bool ends_with_slash(const std::string& p) { return !p.empty() && p.back() == '/'; }

std::string without_trailing_slashes(std::string p) {
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  return p;
}

// The last component of a path, ignoring trailing slashes ("a/b/" -> "b").
std::string base_name(const std::string& p) {
  std::string s = without_trailing_slashes(p);
  size_t slash = s.find_last_of('/');
  return slash == std::string::npos ? s : s.substr(slash + 1);
}

std::string shell_quote(const std::string& v) {
  std::string out = "'";
  for (char c : v) {
    if (c == '\'')
      out += "'\"'\"'";
    else
      out += c;
  }
  return out + "'";
}

std::string octal_mode(fs::perms p) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(p) & 07777U);
  return buf;
}

// A digest of a file, or of a directory's sorted tree (paths, kinds, modes and contents), as
// the communicator would copy it (following symlinks).
std::string content_digest(const std::string& path) {
  std::error_code ec;
  auto status = fs::status(path, ec);
  if (ec) return "missing";
  if (!fs::is_directory(status)) return util::file_digest_hex(path);
  std::vector<std::string> entries;
  for (auto it = fs::recursive_directory_iterator(path, fs::directory_options::follow_directory_symlink, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    std::string rel = it->path().lexically_relative(path).generic_string();
    auto st = it->status(ec);
    if (ec) break;
    if (fs::is_directory(st))
      entries.push_back(rel + "\td\t" + octal_mode(st.permissions()));
    else if (fs::is_regular_file(st))
      entries.push_back(rel + "\tf\t" + octal_mode(st.permissions()) + "\t" + util::file_digest_hex(it->path()));
  }
  if (ec) return "unreadable";
  std::sort(entries.begin(), entries.end());
  return "tree:" + util::sha256_hex(util::join(entries, "\n"));
}

class FileProvisioner : public Provisioner {
 public:
  void prepare(ConfigReader& cfg) override;
  void provision(State& st) override;
  nlohmann::json key_material() const override;
  // A download writes on the host: it runs on every build, also when its layer is cached.
  HostEffect host_effect() const override { return download_ ? HostEffect::FromMachine : HostEffect::None; }

 private:
  void upload(State& st) const;
  void download(State& st) const;

  std::vector<std::string> sources_;
  bool sources_is_list_ = false;
  std::optional<std::string> content_;
  std::string destination_;
  bool download_ = false;
  bool generated_ = false;
};

void FileProvisioner::prepare(ConfigReader& cfg) {
  std::optional<std::string> source = cfg.optional_string("source");
  std::vector<std::string> sources = cfg.strings("sources");
  content_ = cfg.optional_string("content");
  destination_ = cfg.string("destination");
  std::string direction = cfg.string("direction", "upload");
  generated_ = cfg.boolean("generated", false);

  if (direction == "download")
    download_ = true;
  else if (direction != "upload")
    cfg.error("direction", "must be \"upload\" or \"download\", not \"" + direction + "\"");
  int given = (source && !source->empty() ? 1 : 0) + (!sources.empty() ? 1 : 0) + (content_ ? 1 : 0);
  if (given == 0) cfg.error("one of 'source', 'sources' or 'content' is required");
  if (given > 1) cfg.error("give only one of 'source', 'sources' and 'content'");
  if (source && !source->empty()) sources_ = {*source};
  if (!sources.empty()) {
    sources_ = sources;
    sources_is_list_ = true;
  }
  const std::string source_key = sources_is_list_ ? "sources" : "source";

  if (destination_.empty()) {
    cfg.require("destination");
  } else if (sources_is_list_ && !ends_with_slash(destination_)) {
    cfg.error("destination", "with 'sources' the destination must be a directory ending in '/' (\"" + destination_ +
                                 "/\"): every source goes into it under its own name");
  }
  if (content_) {
    if (download_)
      cfg.error("content", "'content' is written to the machine; it can't be used with direction download");
    if (ends_with_slash(destination_))
      cfg.error("destination", "with 'content' the destination must name a file, not a directory ending in '/'");
  }
  for (const auto& s : sources_) {
    if (s.empty()) cfg.error(source_key, "a source path is empty");
    if (download_) {
      if (s.find_first_of("*?[") != std::string::npos)
        cfg.error(source_key, "'" + s +
                                  "': wildcards are not supported for downloads; name a file, or a directory "
                                  "(with a trailing '/' to download its contents)");
      continue;
    }
    std::error_code ec;
    if (!generated_ && !s.empty() && !fs::exists(s, ec))
      cfg.error(source_key, "source '" + s + "' does not exist (relative paths start at the directory imgbake runs " +
                                "in; set \"generated\": true if an earlier step creates it)");
  }
}

nlohmann::json FileProvisioner::key_material() const {
  nlohmann::json sources = nlohmann::json::array();
  for (const auto& s : sources_) {
    // A download reads nothing on the host: its source is on the machine.
    if (download_)
      sources.push_back({{"path", s}});
    else
      sources.push_back({{"path", s}, {"sha256", content_digest(s)}});
  }
  nlohmann::json j = {{"sources", sources},
                      {"destination", destination_},
                      {"direction", download_ ? "download" : "upload"},
                      {"generated", generated_}};
  if (content_) j["content_sha256"] = util::sha256_hex(*content_);
  return j;
}

void FileProvisioner::provision(State& st) {
  if (!st.communicator)
    throw BuildError(
        "the file provisioner copies files to and from the machine, but this build has no communicator "
        "(\"communicator\": \"none\"); use a communicator such as ssh");
  if (download_)
    download(st);
  else
    upload(st);
}

void FileProvisioner::upload(State& st) const {
  Communicator& comm = *st.communicator;
  if (content_) {
    st.message("writing " + std::to_string(content_->size()) + " bytes of content to " + destination_);
    TempFile local(*content_, "imgbake-file", 0644);
    comm.upload(local.path(), destination_, st.cancel);
    return;
  }
  bool made_destination = false;
  for (const auto& src : sources_) {
    std::error_code ec;
    auto status = fs::status(src, ec);
    if (ec)
      throw BuildError("cannot upload '" + src + "': " + ec.message() +
                       (generated_ ? " (it is marked generated, but no earlier step created it)" : ""));
    std::string remote;
    if (fs::is_directory(status)) {
      // Packer's rule: "dir" lands as destination/dir, "dir/" puts its contents into destination.
      remote = ends_with_slash(src) ? without_trailing_slashes(destination_)
                                    : without_trailing_slashes(destination_) + "/" + base_name(src);
      if (remote.rfind("//", 0) == 0) remote.erase(0, 1);  // destination "/"
    } else {
      remote = destination_;
      if (ends_with_slash(destination_)) {
        remote = destination_ + base_name(src);
        // Unlike Packer, a destination directory that does not exist yet is created.
        if (!made_destination) {
          RemoteCommand mkdir;
          mkdir.command = "mkdir -p " + shell_quote(destination_);
          mkdir.timeout = st.time_left();
          std::vector<std::string> err;
          RunResult rc = comm.run(
              mkdir, nullptr, [&](std::string_view l) { err.emplace_back(l); }, st.cancel);
          if (!rc.succeeded())
            throw BuildError("cannot create the directory " + destination_ + " on the machine" +
                             (rc.disconnected ? ": the connection dropped"
                                              : " (mkdir exited with status " + std::to_string(rc.status) +
                                                    (err.empty() ? "" : ": " + util::join(err, " ")) + ")"));
          made_destination = true;
        }
      }
    }
    st.message("uploading " + src + " => " + remote);
    try {
      comm.upload(src, remote, st.cancel);
    } catch (const BuildError& e) {
      std::string hint;
      if (!fs::is_directory(status) && !ends_with_slash(destination_))
        hint = " (if " + destination_ + " is meant to be a directory, end it with '/')";
      throw BuildError(e.what() + hint);
    }
  }
}

void FileProvisioner::download(State& st) const {
  Communicator& comm = *st.communicator;
  for (const auto& src : sources_) {
    std::string local = destination_;
    if (ends_with_slash(destination_))
      local = ends_with_slash(src) ? without_trailing_slashes(destination_) : destination_ + base_name(src);
    // The directory the download goes into exists afterwards, as in Packer.
    fs::path parent = ends_with_slash(destination_) ? fs::path(without_trailing_slashes(destination_))
                                                    : fs::path(local).parent_path();
    std::error_code ec;
    if (!parent.empty()) fs::create_directories(parent, ec);
    if (ec) throw BuildError("cannot create the local directory " + parent.string() + ": " + ec.message());
    std::string remote = without_trailing_slashes(src);
    st.message("downloading " + src + " => " + local);
    comm.download(remote, local, st.cancel);
  }
}

}  // namespace
}  // namespace imgbake

IMGBAKE_REGISTER_PROVISIONER("file", imgbake::FileProvisioner)
