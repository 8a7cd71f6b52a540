#include "cd_files.h"

#include <glob.h>
#include <stdlib.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <deque>
#include <filesystem>
#include <optional>

#include "imgbake/error.h"
#include "imgbake/process.h"
#include "imgbake/temp_path_guard.h"
#include "imgbake/util.h"

namespace imgbake::qemu {

namespace {

namespace fs = std::filesystem;

std::optional<std::string> find_on_path(const std::string& name) {
  const char* path = getenv("PATH");
  if (path == nullptr) return std::nullopt;
  for (const std::string& dir : util::split(path, ':')) {
    if (dir.empty()) continue;
    fs::path candidate = fs::path(dir) / name;
    std::error_code ec;
    if (fs::is_regular_file(candidate, ec) && access(candidate.c_str(), X_OK) == 0) return candidate.string();
  }
  return std::nullopt;
}

bool has_glob_characters(const std::string& s) { return s.find_first_of("*?[") != std::string::npos; }

std::vector<std::string> expand(const std::string& pattern) {
  if (!has_glob_characters(pattern)) {
    std::error_code ec;
    if (!fs::exists(pattern, ec))
      throw BuildError("cd_files: '" + pattern +
                       "' does not exist (relative paths start at the directory imgbake "
                       "runs in)");
    return {pattern};
  }
  glob_t g{};
  int rc = glob(pattern.c_str(), GLOB_MARK, nullptr, &g);
  std::vector<std::string> matches;
  if (rc == 0)
    for (size_t i = 0; i < g.gl_pathc; ++i) matches.emplace_back(g.gl_pathv[i]);
  globfree(&g);
  if (rc == GLOB_NOMATCH || matches.empty()) throw BuildError("cd_files: '" + pattern + "' matches no file");
  if (rc != 0) throw BuildError("cd_files: cannot expand '" + pattern + "' (a directory is not readable)");
  // GLOB_MARK marks directories with '/'; a glob result puts the directory itself on the CD
  for (std::string& m : matches)
    if (m.size() > 1 && m.ends_with("/")) m.pop_back();
  return matches;
}

void copy_into(const fs::path& source, const fs::path& target) {
  std::error_code ec;
  fs::copy(source, target, fs::copy_options::recursive | fs::copy_options::overwrite_existing, ec);
  if (ec) throw BuildError("cd_files: cannot copy '" + source.string() + "' for the CD: " + ec.message());
}

void stage_file(const std::string& path, const fs::path& staging) {
  std::error_code ec;
  fs::file_status status = fs::status(path, ec);  // follows symlinks, as Packer does
  if (ec) throw BuildError("cd_files: cannot read '" + path + "': " + ec.message());
  if (fs::is_directory(status)) {
    if (path.ends_with("/")) {
      copy_into(path, staging);  // "dir/": its contents at the root
      return;
    }
    fs::path name = fs::path(path).lexically_normal().filename();
    if (name.empty() || name == "." || name == "..") name = fs::absolute(path).lexically_normal().filename();
    fs::create_directories(staging / name, ec);
    copy_into(path, staging / name);
    return;
  }
  copy_into(path, staging / fs::path(path).filename());
}

void stage_content(const std::string& cd_path, const std::string& body, const fs::path& staging) {
  fs::path relative = fs::path(cd_path).relative_path().lexically_normal();
  if (relative.empty() || relative == "." || *relative.begin() == "..")
    throw BuildError("cd_content: '" + cd_path + "' is not a file path inside the CD; use e.g. \"user-data\"");
  fs::path target = staging / relative;
  std::error_code ec;
  fs::create_directories(target.parent_path(), ec);
  if (fs::is_directory(target, ec)) fs::remove_all(target, ec);  // content wins over a same-named directory
  util::write_file_atomic(target, body);
}

class StagingDir {
 public:
  explicit StagingDir(const fs::path& iso) {
    std::string tmpl = (iso.parent_path() / ("." + iso.filename().string() + ".staging-XXXXXX")).string();
    if (mkdtemp(tmpl.data()) == nullptr)
      throw BuildError("cannot create a staging directory for the CD next to '" + iso.string() +
                       "': " + std::strerror(errno));
    path_ = tmpl;
  }
  ~StagingDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  StagingDir(const StagingDir&) = delete;
  StagingDir& operator=(const StagingDir&) = delete;
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

std::vector<std::string> tool_argv(const std::string& tool, const std::string& name, const std::string& label,
                                   const std::string& out, const std::string& source) {
  if (name == "xorriso")  // Packer's own invocation
    return {tool, "-as", "genisoimage", "-rock", "-joliet", "-volid", label, "-output", out, source};
  return {tool, "-input-charset", "utf-8", "-rock", "-joliet", "-volid", label, "-o", out, source};
}

}  // namespace

void make_cd(const CdSpec& spec, const std::string& out_iso, const CancelToken& cancel) {
  std::string label = spec.label.empty() ? "packer" : spec.label;
  if (label.size() > 32)
    throw BuildError("cd_label '" + label + "' is longer than the 32 characters an ISO 9660 volume id can hold");

  std::string tool, tool_name;
  for (const std::string& name : kCdTools) {
    if (auto found = find_on_path(name)) {
      tool = *found;
      tool_name = name;
      break;
    }
  }
  if (tool.empty())
    throw BuildError("cannot make the CD for cd_files/cd_content: none of " + util::join(kCdTools, ", ") +
                     " was found on PATH; install one (Debian: apt-get install xorriso)");

  fs::path out = fs::absolute(out_iso);
  StagingDir staging(out);
  for (const std::string& pattern : spec.files) {
    cancel.throw_if_cancelled();
    for (const std::string& path : expand(pattern)) stage_file(path, staging.path());
  }
  for (const auto& [cd_path, body] : spec.content) stage_content(cd_path, body, staging.path());

  std::deque<std::string> last_errors;  // the tool's last words, for the message
  LineSink keep = [&](std::string_view line) {
    last_errors.emplace_back(line);
    if (last_errors.size() > 20) last_errors.pop_front();
  };
  LineSink ignore = [](std::string_view) {};
  ProcessSpec run;
  run.argv = tool_argv(tool, tool_name, label, out.string(), staging.path().string());
  run.timeout = std::chrono::minutes(10);
  util::TempPathGuard half_made(out);  // no half an ISO left behind, not even by a second interrupt
  int status = run_process(run, ignore, keep, cancel);
  if (status != 0)
    throw BuildError(tool_name + " failed (exit " + std::to_string(status) + ") making the CD '" + out.string() +
                     "':\n" + util::join(std::vector<std::string>(last_errors.begin(), last_errors.end()), "\n"));
  half_made.dismiss();
}

}  // namespace imgbake::qemu
