// Writing OCI layers of real trees (files, dirs, symlinks, hardlinks, fifos, device nodes, owners,
// long names): what the layer holds, read back with libarchive and with GNU tar; digests;
// reproducible bytes; compressions; cancellation.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <clocale>
#include <cstring>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "imgbake/cancel.h"
#include "imgbake/error.h"
#include "imgbake/layer.h"
#include "imgbake/util.h"
#include "layer_fixture.h"

namespace {

namespace fs = std::filesystem;
namespace layer = imgbake::layer;
using imgbake::BuildError;
using imgbake::Cancelled;
using imgbake::CancelToken;
using layer_fixture::Comparable;
using layer_fixture::Find;
using layer_fixture::kFixedTime;
using layer_fixture::kLongDir;
using layer_fixture::kLongFile;
using layer_fixture::kLongName;
using layer_fixture::LayerTest;
using layer_fixture::ListLayer;
using layer_fixture::Paths;
using layer_fixture::Sha256OfCommand;
using layer_fixture::Shell;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;

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

}  // namespace
