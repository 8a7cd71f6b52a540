// What the layer tests share: a temp dir per test with the rich tree every format test uses,
// reading a layer back with libarchive, shell commands, and comparing trees.
#pragma once

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "imgbake/cancel.h"
#include "imgbake/layer.h"
#include "imgbake/process.h"

namespace layer_fixture {

namespace fs = std::filesystem;
namespace layer = imgbake::layer;
using imgbake::CancelToken;

inline constexpr int64_t kFixedTime = 1700000000;  // 2023-11-14, every test tree's mtimes unless said otherwise
inline const std::string kLongDir(70, 'd');        // with kLongFile: a path > 100 bytes (ustar's name field)
inline const std::string kLongFile(60, 'f');
inline const std::string kLongName(140, 'n');  // one name longer than 100 bytes

class LayerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "imgbake-layer-XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  static void WriteFile(const fs::path& p, const std::string& content, mode_t mode = 0644) {
    std::ofstream(p, std::ios::binary) << content;
    ASSERT_EQ(chmod(p.c_str(), mode), 0) << p;
  }
  static void SetMtime(const fs::path& p, int64_t seconds) {
    timespec times[2] = {{seconds, 0}, {seconds, 0}};
    ASSERT_EQ(utimensat(AT_FDCWD, p.c_str(), times, AT_SYMLINK_NOFOLLOW), 0) << p;
  }
  // Every path below root (deepest first, so that directory times stick) gets `seconds`.
  static void SetAllMtimes(const fs::path& root, int64_t seconds) {
    std::vector<fs::path> paths;
    for (const auto& e : fs::recursive_directory_iterator(root)) paths.push_back(e.path());
    std::sort(paths.rbegin(), paths.rend());
    for (const auto& p : paths) SetMtime(p, seconds);
  }

  // The tree every format test uses: all kinds of entries, an owner, odd modes, long names.
  static void MakeRichTree(const fs::path& root) {
    fs::create_directories(root / "etc");
    fs::create_directories(root / "usr/bin");
    fs::create_directories(root / "dev");
    fs::create_directories(root / kLongDir);
    WriteFile(root / "etc/hostname", "imgbake\n");
    WriteFile(root / "etc/shadow", "root:*:19000::::::\n", 0640);
    WriteFile(root / "usr/bin/tool", std::string(300000, 'x') + "end", 04755);
    ASSERT_EQ(link((root / "usr/bin/tool").c_str(), (root / "usr/bin/tool-alias").c_str()), 0);
    fs::create_symlink("../etc/hostname", root / "usr/hostname-link");
    ASSERT_EQ(mkfifo((root / "dev/queue").c_str(), 0600), 0);
    ASSERT_EQ(mknod((root / "dev/null").c_str(), S_IFCHR | 0666, makedev(1, 3)), 0);
    ASSERT_EQ(chmod((root / "dev/null").c_str(), 0666), 0);  // mknod applies the umask
    WriteFile(root / kLongDir / kLongFile, "long path\n");
    WriteFile(root / "etc" / kLongName, "long name\n");
    WriteFile(root / "owned", "by 1234\n", 0600);
    ASSERT_EQ(lchown((root / "owned").c_str(), 1234, 1234), 0);
    ASSERT_EQ(lchown((root / "usr/hostname-link").c_str(), 1234, 1234), 0);
    ASSERT_EQ(chmod((root / "usr").c_str(), 0750), 0);
    SetAllMtimes(root, kFixedTime);
  }

  fs::path dir_;
  CancelToken cancel_;
};

// One entry as libarchive reads it back.
struct ListedEntry {
  std::string path;
  mode_t mode = 0;
  int64_t uid = -1, gid = -1;
  int64_t size = 0;
  int64_t mtime = 0;
  long mtime_nsec = 0;
  bool atime_set = false, ctime_set = false;
  bool uname_set = false, gname_set = false;
  std::string hardlink, symlink;
  dev_t rdev = 0;
  std::map<std::string, std::string> xattrs;
};

inline std::vector<ListedEntry> ListLayer(const fs::path& file) {
  archive* a = archive_read_new();
  archive_read_support_filter_all(a);
  archive_read_support_format_tar(a);
  std::vector<ListedEntry> out;
  EXPECT_EQ(archive_read_open_filename(a, file.c_str(), 65536), ARCHIVE_OK) << archive_error_string(a);
  archive_entry* e = nullptr;
  while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
    ListedEntry le;
    le.path = archive_entry_pathname(e);
    if (le.path.size() > 1 && le.path.back() == '/') le.path.pop_back();
    le.mode = archive_entry_mode(e);
    le.uid = archive_entry_uid(e);
    le.gid = archive_entry_gid(e);
    le.size = archive_entry_size(e);
    le.mtime = archive_entry_mtime(e);
    le.mtime_nsec = archive_entry_mtime_nsec(e);
    le.atime_set = archive_entry_atime_is_set(e) != 0;
    le.ctime_set = archive_entry_ctime_is_set(e) != 0;
    le.uname_set = archive_entry_uname(e) != nullptr && *archive_entry_uname(e) != '\0';
    le.gname_set = archive_entry_gname(e) != nullptr && *archive_entry_gname(e) != '\0';
    if (archive_entry_hardlink(e)) le.hardlink = archive_entry_hardlink(e);
    if (archive_entry_symlink(e)) le.symlink = archive_entry_symlink(e);
    le.rdev = archive_entry_rdev(e);
    archive_entry_xattr_reset(e);
    const char* name = nullptr;
    const void* value = nullptr;
    size_t size = 0;
    while (archive_entry_xattr_next(e, &name, &value, &size) == ARCHIVE_OK) {
      le.xattrs[name] = std::string(static_cast<const char*>(value), size);
    }
    out.push_back(le);
  }
  archive_read_free(a);
  return out;
}

inline std::vector<std::string> Paths(const std::vector<ListedEntry>& entries) {
  std::vector<std::string> paths;
  for (const auto& e : entries) paths.push_back(e.path);
  return paths;
}
inline const ListedEntry& Find(const std::vector<ListedEntry>& entries, const std::string& path) {
  for (const auto& e : entries) {
    if (e.path == path) return e;
  }
  static ListedEntry missing;
  ADD_FAILURE() << "no entry " << path;
  return missing;
}

// stdout lines of a shell command (bash -o pipefail), which must succeed.
inline std::vector<std::string> Shell(const std::string& command) {
  std::vector<std::string> lines;
  std::string err;
  CancelToken cancel;
  imgbake::ProcessSpec spec;
  spec.argv = {"bash", "-o", "pipefail", "-c", command};
  spec.timeout = std::chrono::seconds(60);
  int status = imgbake::run_process(
      spec, [&](std::string_view l) { lines.emplace_back(l); },
      [&](std::string_view l) { err += std::string(l) + "\n"; }, cancel);
  EXPECT_EQ(status, 0) << command << "\n" << err;
  return lines;
}

inline std::string Sha256OfCommand(const std::string& command) {
  auto lines = Shell(command + " | sha256sum");
  return lines.empty() ? "" : "sha256:" + lines[0].substr(0, 64);
}

// What apply() must reproduce: the scan without the fields a copy cannot keep (inode numbers,
// change times) and with whole-second mtimes (the layer keeps seconds).
inline std::map<std::string, layer::Entry> Comparable(const layer::Snapshot& s) {
  std::map<std::string, layer::Entry> out;
  for (auto [path, e] : s.entries) {
    e.ctime_ns = 0;
    e.ino = 0;
    e.dev = 0;
    e.mtime_ns = e.mtime_ns / 1'000'000'000 * 1'000'000'000;
    if (S_ISDIR(e.mode)) e.size = 0;  // a directory's size depends on the filesystem's history
    out.emplace(path, e);
  }
  return out;
}

inline std::string Describe(const std::map<std::string, layer::Entry>& m) {
  std::string out;
  for (const auto& [p, e] : m) {
    out += p + " mode=" + std::to_string(e.mode) + " uid=" + std::to_string(e.uid) + " size=" + std::to_string(e.size) +
           " mtime=" + std::to_string(e.mtime_ns) + " nlink=" + std::to_string(e.nlink) + " -> " + e.link_target + "\n";
  }
  return out;
}

}  // namespace layer_fixture
