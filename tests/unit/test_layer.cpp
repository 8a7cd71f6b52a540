// OCI layers on real trees in temp dirs (files, dirs, symlinks, hardlinks, fifos, device nodes,
// owners, long names): what the layer holds, read back with libarchive and with GNU tar; whiteouts
// and opaque dirs; apply() reproducing the tree; refused escapes; reproducible bytes.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <chrono>
#include <clocale>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "imgbake/cancel.h"
#include "imgbake/error.h"
#include "imgbake/layer.h"
#include "imgbake/process.h"
#include "imgbake/util.h"

namespace {

namespace fs = std::filesystem;
namespace layer = imgbake::layer;
using imgbake::BuildError;
using imgbake::Cancelled;
using imgbake::CancelToken;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;

constexpr int64_t kFixedTime = 1700000000;  // 2023-11-14, every test tree's mtimes unless said otherwise
const std::string kLongDir(70, 'd');        // with kLongFile: a path > 100 bytes (ustar's name field)
const std::string kLongFile(60, 'f');
const std::string kLongName(140, 'n');  // one name longer than 100 bytes

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

std::vector<ListedEntry> ListLayer(const fs::path& file) {
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

std::vector<std::string> Paths(const std::vector<ListedEntry>& entries) {
  std::vector<std::string> paths;
  for (const auto& e : entries) paths.push_back(e.path);
  return paths;
}
const ListedEntry& Find(const std::vector<ListedEntry>& entries, const std::string& path) {
  for (const auto& e : entries) {
    if (e.path == path) return e;
  }
  static ListedEntry missing;
  ADD_FAILURE() << "no entry " << path;
  return missing;
}

// stdout lines of a shell command (bash -o pipefail), which must succeed.
std::vector<std::string> Shell(const std::string& command) {
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

std::string Sha256OfCommand(const std::string& command) {
  auto lines = Shell(command + " | sha256sum");
  return lines.empty() ? "" : "sha256:" + lines[0].substr(0, 64);
}

// What apply() must reproduce: the scan without the fields a copy cannot keep (inode numbers,
// change times) and with whole-second mtimes (the layer keeps seconds).
std::map<std::string, layer::Entry> Comparable(const layer::Snapshot& s) {
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

std::string Describe(const std::map<std::string, layer::Entry>& m) {
  std::string out;
  for (const auto& [p, e] : m) {
    out += p + " mode=" + std::to_string(e.mode) + " uid=" + std::to_string(e.uid) + " size=" + std::to_string(e.size) +
           " mtime=" + std::to_string(e.mtime_ns) + " nlink=" + std::to_string(e.nlink) + " -> " + e.link_target + "\n";
  }
  return out;
}

// ---- names --------------------------------------------------------------------------------------

TEST(LayerCompression, ParsesNamesAndGivesOciMediaTypes) {
  EXPECT_EQ(layer::parse_compression("gzip"), layer::Compression::Gzip);
  EXPECT_EQ(layer::parse_compression("zstd"), layer::Compression::Zstd);
  EXPECT_EQ(layer::parse_compression("none"), layer::Compression::None);
  EXPECT_EQ(layer::parse_compression("GZIP"), std::nullopt);
  EXPECT_EQ(layer::parse_compression("xz"), std::nullopt);
  EXPECT_EQ(layer::media_type(layer::Compression::Gzip), "application/vnd.oci.image.layer.v1.tar+gzip");
  EXPECT_EQ(layer::media_type(layer::Compression::Zstd), "application/vnd.oci.image.layer.v1.tar+zstd");
  EXPECT_EQ(layer::media_type(layer::Compression::None), "application/vnd.oci.image.layer.v1.tar");
}

// ---- what a layer holds -------------------------------------------------------------------------

TEST_F(LayerTest, TreeLayerHoldsEveryEntryOnceSortedWithNumericOwners) {
  fs::path root = dir_ / "root";
  MakeRichTree(root);
  // Sockets are runtime objects, not image content.
  int sock = socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::string sock_path = (root / "dev/socket").string();
  std::strncpy(addr.sun_path, sock_path.c_str(), sizeof addr.sun_path - 1);
  ASSERT_EQ(bind(sock, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  close(sock);
  SetMtime(root / "dev", kFixedTime);

  layer::LayerBlob blob = layer::write_tree(root, dir_ / "tree.tar.gz", {}, cancel_);
  std::vector<std::string> expected = {"dev",
                                       "dev/null",
                                       "dev/queue",
                                       kLongDir,
                                       kLongDir + "/" + kLongFile,
                                       "etc",
                                       "etc/hostname",
                                       "etc/" + kLongName,
                                       "etc/shadow",
                                       "owned",
                                       "usr",
                                       "usr/bin",
                                       "usr/bin/tool",
                                       "usr/bin/tool-alias",
                                       "usr/hostname-link"};
  std::sort(expected.begin(), expected.end());
  auto entries = ListLayer(blob.file);
  EXPECT_THAT(Paths(entries), ElementsAreArray(expected));
  EXPECT_EQ(blob.entries, expected.size());
  EXPECT_EQ(blob.media_type, "application/vnd.oci.image.layer.v1.tar+gzip");
  EXPECT_EQ(blob.size, fs::file_size(blob.file));

  for (const auto& e : entries) {
    EXPECT_FALSE(e.uname_set || e.gname_set) << e.path << ": only numeric owners";
    EXPECT_FALSE(e.atime_set || e.ctime_set) << e.path << ": no atime/ctime records";
    EXPECT_EQ(e.mtime, kFixedTime) << e.path;
    EXPECT_EQ(e.mtime_nsec, 0) << e.path;
  }
  EXPECT_EQ(Find(entries, "owned").uid, 1234);
  EXPECT_EQ(Find(entries, "owned").gid, 1234);
  EXPECT_EQ(Find(entries, "owned").mode, S_IFREG | 0600);
  EXPECT_EQ(Find(entries, "usr").mode, S_IFDIR | 0750);
  EXPECT_EQ(Find(entries, "etc/shadow").mode, S_IFREG | 0640);
  EXPECT_EQ(Find(entries, "usr/bin/tool").mode, S_IFREG | 04755);
  EXPECT_EQ(Find(entries, "usr/bin/tool").size, 300003);
  EXPECT_EQ(Find(entries, "usr/bin/tool-alias").hardlink, "usr/bin/tool");
  EXPECT_EQ(Find(entries, "usr/hostname-link").symlink, "../etc/hostname");
  EXPECT_EQ(Find(entries, "usr/hostname-link").uid, 1234);
  EXPECT_EQ(Find(entries, "dev/queue").mode, S_IFIFO | 0600);
  EXPECT_EQ(Find(entries, "dev/null").mode, S_IFCHR | 0666);
  EXPECT_EQ(Find(entries, "dev/null").rdev, makedev(1, 3));
  EXPECT_EQ(Find(entries, kLongDir + "/" + kLongFile).size, 10);

  // GNU tar reads the same entries, with the same owners.
  std::vector<std::string> gnu_names;
  for (auto name : Shell("tar -tzf " + blob.file.string())) {
    if (name.size() > 1 && name.back() == '/') name.pop_back();
    gnu_names.push_back(name);
  }
  EXPECT_THAT(gnu_names, ElementsAreArray(expected));
  auto verbose = Shell("tar --numeric-owner -tvzf " + blob.file.string());
  ASSERT_EQ(verbose.size(), expected.size());
  for (const auto& line : verbose) {
    bool ours = line.find(" owned") != std::string::npos || line.find(" usr/hostname-link") != std::string::npos;
    EXPECT_THAT(line, HasSubstr(ours ? " 1234/1234 " : " 0/0 ")) << line;
  }
}

TEST_F(LayerTest, TarIsPaxRestrictedAndGzipHeaderHasNoNameOrTime) {
  fs::path root = dir_ / "root";
  MakeRichTree(root);
  layer::LayerBlob blob = layer::write_tree(root, dir_ / "tree.tar.gz", {}, cancel_);

  std::string gz = imgbake::util::read_file(blob.file);
  ASSERT_GE(gz.size(), 10u);
  EXPECT_EQ(static_cast<unsigned char>(gz[0]), 0x1f);
  EXPECT_EQ(static_cast<unsigned char>(gz[1]), 0x8b);
  EXPECT_EQ(gz[3] & 0x08, 0) << "FNAME flag: no file name in the gzip header";
  EXPECT_EQ(gz.substr(4, 4), std::string(4, '\0')) << "gzip MTIME must be 0";

  // Walk the ustar headers of the uncompressed stream.
  fs::path tar_file = dir_ / "tree.tar";
  Shell("gzip -dc " + blob.file.string() + " > " + tar_file.string());
  std::string tar = imgbake::util::read_file(tar_file);
  EXPECT_EQ(tar.size() % 10240, 0u);
  std::vector<std::string> pax_records;
  size_t headers = 0;
  for (size_t off = 0; off + 512 <= tar.size();) {
    std::string_view h(tar.data() + off, 512);
    if (h.find_first_not_of('\0') == std::string_view::npos) break;
    ++headers;
    EXPECT_EQ(h.substr(257, 5), "ustar") << "at offset " << off;
    EXPECT_EQ(h[265], '\0') << "uname must be empty";
    EXPECT_EQ(h[297], '\0') << "gname must be empty";
    size_t size = std::stoull(std::string(h.substr(124, 12)), nullptr, 8);
    if (h[156] == 'x') pax_records.emplace_back(tar.substr(off + 512, size));
    off += 512 + (size + 511) / 512 * 512;
  }
  EXPECT_EQ(headers, 15u + pax_records.size());
  // The 131-byte path fits ustar's prefix + name fields; only the 140-byte name needs PAX.
  ASSERT_EQ(pax_records.size(), 1u) << "PAX headers only where ustar cannot hold the value";
  for (const auto& rec : pax_records) {
    EXPECT_THAT(rec, HasSubstr(" path=etc/" + kLongName + "\n")) << rec;
    EXPECT_THAT(rec, ::testing::Not(HasSubstr("time="))) << rec;
  }
}

TEST_F(LayerTest, DiffIdAndDigestMatchWhatToolsCompute) {
  fs::path root = dir_ / "root";
  MakeRichTree(root);
  layer::LayerBlob blob = layer::write_tree(root, dir_ / "tree.tar.gz", {}, cancel_);
  EXPECT_EQ(blob.diff_id, Sha256OfCommand("gzip -dc " + blob.file.string()));
  EXPECT_EQ(blob.digest, "sha256:" + imgbake::util::file_digest_hex(blob.file));
  fs::create_directories(dir_ / "out");
  EXPECT_EQ(layer::apply(blob.file, dir_ / "out", cancel_), blob.diff_id);
}

TEST_F(LayerTest, ApplyingTheTreeLayerReproducesTheTree) {
  fs::path root = dir_ / "root";
  MakeRichTree(root);
  layer::LayerBlob blob = layer::write_tree(root, dir_ / "tree.tar.gz", {}, cancel_);
  fs::path copy = dir_ / "copy";
  fs::create_directories(copy);
  EXPECT_EQ(layer::apply(blob.file, copy, cancel_), blob.diff_id);
  auto want = Comparable(layer::scan(root));
  auto got = Comparable(layer::scan(copy));
  EXPECT_EQ(got, want) << "got:\n" << Describe(got) << "want:\n" << Describe(want);
}

// ---- diffs --------------------------------------------------------------------------------------

// The base of the diff tests and the changes one provisioner step makes to it.
class LayerDiffTest : public LayerTest {
 protected:
  void MakeBase() {
    MakeRichTree(root());
    fs::create_directories(root() / "old/sub");
    WriteFile(root() / "old/a", "a");
    WriteFile(root() / "old/sub/b", "b");
    fs::create_directories(root() / "repl");
    WriteFile(root() / "repl/x", "x");
    WriteFile(root() / "repl/y", "y");
    fs::create_directories(root() / "data");
    WriteFile(root() / "data/f", "aaaa");
    WriteFile(root() / "etc/gone", "bye");
    WriteFile(root() / "was-file", "f");
    SetAllMtimes(root(), kFixedTime);
  }
  void Change() {
    fs::remove(root() / "etc/gone");
    fs::remove_all(root() / "old");
    fs::remove_all(root() / "repl");
    fs::create_directories(root() / "repl");
    WriteFile(root() / "repl/z", "z");
    // Same size, same mtime: only ctime tells that the content changed.
    WriteFile(root() / "data/f", "bbbb");
    SetMtime(root() / "data/f", kFixedTime);
    fs::remove(root() / "was-file");
    fs::create_directories(root() / "was-file");
    WriteFile(root() / "was-file/inside", "i");
    WriteFile(root() / "new", "new");
    ASSERT_EQ(link((root() / "new").c_str(), (root() / "new-link").c_str()), 0);
  }
  fs::path root() const { return dir_ / "root"; }  // dir_ is set in SetUp
};

TEST_F(LayerDiffTest, HoldsChangesWhiteoutsAndOpaqueDirs) {
  MakeBase();
  layer::Snapshot before = layer::scan(root());
  Change();
  layer::LayerBlob blob = layer::write_diff(root(), before, layer::scan(root()), dir_ / "diff.tar.gz", {}, cancel_);
  auto entries = ListLayer(blob.file);
  // The root itself is never an entry; "etc" changed (a file left it), "old" is one whiteout for
  // the whole directory, "repl" is another inode (opaque + full content), "was-file" changed type.
  EXPECT_THAT(Paths(entries),
              ElementsAreArray(std::vector<std::string>{".wh.old", "data/f", "etc", "etc/.wh.gone", "new", "new-link",
                                                        "repl", "repl/.wh..wh..opq", "repl/z", "was-file",
                                                        "was-file/.wh..wh..opq", "was-file/inside"}));
  EXPECT_EQ(blob.entries, entries.size());
  EXPECT_EQ(Find(entries, "new-link").hardlink, "new");
  EXPECT_EQ(Find(entries, "data/f").size, 4);
  EXPECT_EQ(Find(entries, ".wh.old").size, 0);
  EXPECT_EQ(Find(entries, ".wh.old").mode & S_IFMT, S_IFREG);
}

TEST_F(LayerDiffTest, UnchangedTreeGivesAnEmptyLayer) {
  MakeBase();
  layer::Snapshot before = layer::scan(root());
  layer::LayerBlob blob = layer::write_diff(root(), before, layer::scan(root()), dir_ / "diff.tar.gz", {}, cancel_);
  EXPECT_EQ(blob.entries, 0u);
  EXPECT_TRUE(ListLayer(blob.file).empty());
}

TEST_F(LayerDiffTest, BasePlusDiffAppliedReproducesTheAfterTree) {
  MakeBase();
  layer::Snapshot before = layer::scan(root());
  layer::LayerBlob base = layer::write_tree(root(), dir_ / "base.tar.gz", {}, cancel_);
  Change();
  layer::Snapshot after = layer::scan(root());
  layer::LayerBlob diff = layer::write_diff(root(), before, after, dir_ / "diff.tar.gz", {}, cancel_);

  fs::path copy = dir_ / "copy";
  fs::create_directories(copy);
  EXPECT_EQ(layer::apply(base.file, copy, cancel_), base.diff_id);
  EXPECT_EQ(Comparable(layer::scan(copy)), Comparable(before));
  EXPECT_EQ(layer::apply(diff.file, copy, cancel_), diff.diff_id);
  auto got = Comparable(layer::scan(copy));
  auto want = Comparable(after);
  EXPECT_EQ(got, want) << "got:\n" << Describe(got) << "want:\n" << Describe(want);
  EXPECT_EQ(imgbake::util::read_file(copy / "data/f"), "bbbb");
}

TEST_F(LayerTest, KeepsFileCapabilities) {
  fs::path root = dir_ / "root";
  fs::create_directories(root);
  WriteFile(root / "ping", "binary", 0755);
  // vfs_cap_data revision 2: cap_net_raw (13) permitted + effective.
  unsigned char cap[20] = {};
  uint32_t magic = 0x02000000 | 0x1;  // VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE
  uint32_t permitted = 1u << 13;
  std::memcpy(cap, &magic, 4);
  std::memcpy(cap + 4, &permitted, 4);
  if (setxattr((root / "ping").c_str(), "security.capability", cap, sizeof cap, 0) != 0) {
    GTEST_SKIP() << "this filesystem does not take security.capability: " << std::strerror(errno);
  }
  std::string want(reinterpret_cast<char*>(cap), sizeof cap);
  layer::LayerBlob blob = layer::write_tree(root, dir_ / "caps.tar.gz", {}, cancel_);
  EXPECT_EQ(Find(ListLayer(blob.file), "ping").xattrs.at("security.capability"), want);
  fs::path copy = dir_ / "copy";
  fs::create_directories(copy);
  layer::apply(blob.file, copy, cancel_);
  char got[64] = {};
  ssize_t n = getxattr((copy / "ping").c_str(), "security.capability", got, sizeof got);
  ASSERT_GT(n, 0) << std::strerror(errno);
  EXPECT_EQ(std::string(got, static_cast<size_t>(n)), want);
}

// ---- reproducibility ----------------------------------------------------------------------------

TEST_F(LayerTest, SameContentInTwoDirectoriesGivesTheSameDigests) {
  MakeRichTree(dir_ / "one");
  // The second copy: made in another order (other inode numbers), read at another time.
  fs::create_directories(dir_ / "two");
  WriteFile(dir_ / "two/zzz-first", "");
  fs::remove(dir_ / "two/zzz-first");
  MakeRichTree(dir_ / "two");
  timespec atimes[2] = {{1000, 0}, {0, UTIME_OMIT}};
  ASSERT_EQ(utimensat(AT_FDCWD, (dir_ / "two/etc/hostname").c_str(), atimes, 0), 0);
  SetMtime(dir_ / "two", kFixedTime);

  layer::LayerBlob one = layer::write_tree(dir_ / "one", dir_ / "one.tar.gz", {}, cancel_);
  layer::LayerBlob two = layer::write_tree(dir_ / "two", dir_ / "two.tar.gz", {}, cancel_);
  EXPECT_EQ(one.diff_id, two.diff_id);
  EXPECT_EQ(one.digest, two.digest);
  EXPECT_EQ(one.size, two.size);
}

TEST_F(LayerTest, SourceDateEpochClampsNewerMtimesOnly) {
  fs::path root = dir_ / "root";
  MakeRichTree(root);
  SetMtime(root / "etc/hostname", 1000);  // older than the epoch: kept
  WriteFile(root / "fresh", "now");       // now: clamped
  layer::Options opts;
  opts.source_date_epoch = 1600000000;
  layer::LayerBlob blob = layer::write_tree(root, dir_ / "clamped.tar.gz", opts, cancel_);
  for (const auto& e : ListLayer(blob.file)) {
    EXPECT_EQ(e.mtime, e.path == "etc/hostname" ? 1000 : 1600000000) << e.path;
    EXPECT_EQ(e.mtime_nsec, 0) << e.path;
  }
  // A tree touched at different moments gives the same layer once clamped.
  fs::path other = dir_ / "other";
  MakeRichTree(other);
  SetMtime(other / "etc/hostname", 1000);
  WriteFile(other / "fresh", "now");
  SetAllMtimes(other / "usr", kFixedTime + 12345);
  EXPECT_EQ(layer::write_tree(other, dir_ / "other.tar.gz", opts, cancel_).digest, blob.digest);
}

TEST_F(LayerTest, NonAsciiNamesGiveTheSameBytesInEveryLocale) {
  fs::path root = dir_ / "root";
  fs::create_directories(root);
  WriteFile(root / "caf\xc3\xa9", "x");
  WriteFile(root / "raw-\xff", "not UTF-8");
  SetAllMtimes(root, kFixedTime);
  std::string previous = std::setlocale(LC_ALL, nullptr);
  ASSERT_NE(std::setlocale(LC_ALL, "C"), nullptr);
  layer::LayerBlob in_c = layer::write_tree(root, dir_ / "c.tar.gz", {}, cancel_);
  bool have_utf8 = std::setlocale(LC_ALL, "C.UTF-8") != nullptr;
  layer::LayerBlob in_utf8 = layer::write_tree(root, dir_ / "u.tar.gz", {}, cancel_);
  std::setlocale(LC_ALL, previous.c_str());
  if (!have_utf8) GTEST_SKIP() << "no C.UTF-8 locale to compare with";
  EXPECT_EQ(in_c.digest, in_utf8.digest);
  // GNU tar reads the names back (for the name that is not UTF-8 it says that it ignores
  // libarchive's hdrcharset=BINARY record, and uses the bytes).
  EXPECT_THAT(Shell("tar --quoting-style=literal -tzf " + in_c.file.string()),
              ElementsAreArray(std::vector<std::string>{"caf\xc3\xa9", "raw-\xff"}));
  fs::path copy = dir_ / "copy";
  fs::create_directories(copy);
  layer::apply(in_c.file, copy, cancel_);
  EXPECT_EQ(imgbake::util::read_file(copy / "caf\xc3\xa9"), "x");
  EXPECT_EQ(imgbake::util::read_file(copy / "raw-\xff"), "not UTF-8");
}

// ---- compression --------------------------------------------------------------------------------

TEST_F(LayerTest, ZstdAndUncompressedLayersWorkToo) {
  fs::path root = dir_ / "root";
  MakeRichTree(root);
  layer::LayerBlob gzip = layer::write_tree(root, dir_ / "l.tar.gz", {}, cancel_);

  layer::Options zstd_opts;
  zstd_opts.compression = layer::Compression::Zstd;
  layer::LayerBlob zstd = layer::write_tree(root, dir_ / "l.tar.zst", zstd_opts, cancel_);
  EXPECT_EQ(zstd.media_type, "application/vnd.oci.image.layer.v1.tar+zstd");
  EXPECT_EQ(zstd.diff_id, gzip.diff_id) << "the same tar, compressed differently";
  EXPECT_EQ(imgbake::util::read_file(zstd.file).substr(0, 4), "\x28\xb5\x2f\xfd");
  if (!Shell("command -v zstd || true").empty()) {
    EXPECT_EQ(Sha256OfCommand("zstd -dc " + zstd.file.string()), zstd.diff_id);
  }

  layer::Options none_opts;
  none_opts.compression = layer::Compression::None;
  layer::LayerBlob none = layer::write_tree(root, dir_ / "l.tar", none_opts, cancel_);
  EXPECT_EQ(none.media_type, "application/vnd.oci.image.layer.v1.tar");
  EXPECT_EQ(none.digest, none.diff_id);
  EXPECT_EQ(none.diff_id, gzip.diff_id);
  EXPECT_EQ(none.size, fs::file_size(none.file));

  for (const auto& blob : {zstd, none}) {
    fs::path copy = dir_ / ("copy-" + blob.file.filename().string());
    fs::create_directories(copy);
    EXPECT_EQ(layer::apply(blob.file, copy, cancel_), blob.diff_id);
    EXPECT_EQ(Comparable(layer::scan(copy)), Comparable(layer::scan(root)));
  }

  layer::Options gzip9;
  gzip9.level = 9;
  EXPECT_EQ(layer::write_tree(root, dir_ / "l9.tar.gz", gzip9, cancel_).diff_id, gzip.diff_id);
  layer::Options bad;
  bad.level = 42;
  EXPECT_THROW(layer::write_tree(root, dir_ / "bad.tar.gz", bad, cancel_), BuildError);
  EXPECT_FALSE(fs::exists(dir_ / "bad.tar.gz"));
}

// ---- failure paths ------------------------------------------------------------------------------

TEST_F(LayerTest, CancelledWriteLeavesNoFile) {
  fs::path root = dir_ / "root";
  MakeRichTree(root);
  fs::create_directories(dir_ / "out");
  CancelToken cancelled;
  cancelled.cancel(SIGINT);
  EXPECT_THROW(layer::write_tree(root, dir_ / "out/l.tar.gz", {}, cancelled), Cancelled);
  EXPECT_TRUE(fs::is_empty(dir_ / "out")) << "the temp file must be gone";
  EXPECT_THROW(layer::write_tree(root, dir_ / "missing-dir/l.tar.gz", {}, cancel_), BuildError);
}

// A tar with the given entries: {name, symlink target or "" for a small file}.
void CraftTar(const fs::path& file, const std::vector<std::pair<std::string, std::string>>& entries) {
  archive* a = archive_write_new();
  archive_write_set_format_pax_restricted(a);
  ASSERT_EQ(archive_write_open_filename(a, file.c_str()), ARCHIVE_OK);
  for (const auto& [name, target] : entries) {
    archive_entry* e = archive_entry_new();
    archive_entry_copy_pathname(e, name.c_str());
    if (target.empty()) {
      archive_entry_set_filetype(e, AE_IFREG);
      archive_entry_set_perm(e, 0644);
      archive_entry_set_size(e, 5);
      archive_write_header(a, e);
      archive_write_data(a, "evil\n", 5);
    } else {
      archive_entry_set_filetype(e, AE_IFLNK);
      archive_entry_set_perm(e, 0777);
      archive_entry_copy_symlink(e, target.c_str());
      archive_write_header(a, e);
    }
    archive_entry_free(e);
  }
  archive_write_close(a);
  archive_write_free(a);
}

TEST_F(LayerTest, ApplyRefusesEntriesOutsideTheRoot) {
  fs::path root = dir_ / "root";
  fs::create_directories(root);
  fs::create_directories(dir_ / "outside");
  struct Case {
    std::vector<std::pair<std::string, std::string>> entries;
    std::string refused;
  };
  std::vector<Case> cases = {
      {{{"../x", ""}}, "../x"},
      {{{"/abs", ""}}, "/abs"},
      {{{"a/../../x", ""}}, "a/../../x"},
      {{{"esc", "../outside"}, {"esc/pwned", ""}}, "esc/pwned"},
      {{{"deep", "etc/../../outside"}, {"deep/pwned", ""}}, "deep/pwned"},
  };
  for (const auto& c : cases) {
    fs::path tar = dir_ / "evil.tar";
    CraftTar(tar, c.entries);
    try {
      layer::apply(tar, root, cancel_);
      ADD_FAILURE() << "applied " << c.refused;
    } catch (const BuildError& e) {
      EXPECT_THAT(e.what(), HasSubstr("'" + c.refused + "'"));
    }
    EXPECT_TRUE(fs::is_empty(dir_ / "outside")) << c.refused;
    EXPECT_FALSE(fs::exists(dir_ / "x")) << c.refused;
  }
}

TEST_F(LayerTest, ApplyFollowsSymlinksAsIfTheRootWereSlash) {
  fs::path root = dir_ / "root";
  fs::create_directories(root / "usr/lib");
  fs::create_symlink("usr/lib", root / "lib");   // merged /usr
  fs::create_symlink("/usr", root / "abs-usr");  // absolute: inside the root, not the host's /usr
  fs::path tar = dir_ / "ok.tar";
  CraftTar(tar, {{"lib/a", ""}, {"abs-usr/b", ""}, {"./c", ""}});
  layer::apply(tar, root, cancel_);
  EXPECT_EQ(imgbake::util::read_file(root / "usr/lib/a"), "evil\n");
  EXPECT_EQ(imgbake::util::read_file(root / "usr/b"), "evil\n");
  EXPECT_EQ(imgbake::util::read_file(root / "c"), "evil\n");
  EXPECT_TRUE(fs::is_symlink(root / "lib"));
  EXPECT_FALSE(fs::exists("/usr/b"));
}

// ---- scanning -----------------------------------------------------------------------------------

TEST_F(LayerTest, ScanSkipsMountPoints) {
  fs::path root = dir_ / "root";
  MakeRichTree(root);
  fs::create_directories(root / "proc");
  fs::create_directories(root / "tmp");
  std::vector<std::string> lines;
  CancelToken cancel;
  imgbake::ProcessSpec spec;
  spec.argv = {"mount", "-t", "tmpfs", "tmpfs", (root / "tmp").string()};
  spec.timeout = std::chrono::seconds(30);
  if (imgbake::run_process(
          spec, [](std::string_view) {}, [](std::string_view) {}, cancel) != 0) {
    GTEST_SKIP() << "cannot mount a tmpfs here";
  }
  WriteFile(root / "tmp/scratch", "x");
  layer::Snapshot s = layer::scan(root);
  spec.argv = {"umount", (root / "tmp").string()};
  EXPECT_EQ(imgbake::run_process(
                spec, [](std::string_view) {}, [](std::string_view) {}, cancel),
            0);
  EXPECT_EQ(s.entries.count("tmp"), 0u);
  EXPECT_EQ(s.entries.count("tmp/scratch"), 0u);
  EXPECT_EQ(s.entries.count("proc"), 1u);
  EXPECT_EQ(s.entries.at("usr/bin/tool").size, 300003u);
  EXPECT_EQ(s.entries.at("usr/hostname-link").link_target, "../etc/hostname");
  EXPECT_EQ(s.entries.at("usr/bin/tool").ino, s.entries.at("usr/bin/tool-alias").ino);
}

// ---- bench hook ---------------------------------------------------------------------------------

// bench/layer_export.py runs this with IMGBAKE_LAYER_BENCH_TREE and IMGBAKE_LAYER_BENCH_OUT set;
// it prints "write_tree_seconds=S bytes=N" for the script to read.
TEST(LayerBench, WriteTree) {
  const char* tree = std::getenv("IMGBAKE_LAYER_BENCH_TREE");
  const char* out = std::getenv("IMGBAKE_LAYER_BENCH_OUT");
  if (tree == nullptr || out == nullptr) GTEST_SKIP() << "set IMGBAKE_LAYER_BENCH_TREE and IMGBAKE_LAYER_BENCH_OUT";
  layer::Options opts;
  if (const char* c = std::getenv("IMGBAKE_LAYER_BENCH_COMPRESSION")) {
    auto parsed = layer::parse_compression(c);
    ASSERT_TRUE(parsed) << c;
    opts.compression = *parsed;
  }
  CancelToken cancel;
  auto start = std::chrono::steady_clock::now();
  layer::LayerBlob blob = layer::write_tree(tree, out, opts, cancel);
  std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
  std::cout << "write_tree_seconds=" << took.count() << " bytes=" << blob.size << " entries=" << blob.entries
            << " digest=" << blob.digest << std::endl;
}

}  // namespace
