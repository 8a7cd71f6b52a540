// Sparse files through layers: a file with holes is written as a GNU sparse 1.0 entry (its holes
// neither read nor stored), applied back with its holes, read by GNU tar; the map is decided by
// content, so the same file gives the same layer however its zeros sit on disk.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "imgbake/cancel.h"
#include "imgbake/layer.h"
#include "imgbake/unique_fd.h"
#include "layer_fixture.h"
#include "layers/sparse.h"

namespace {

namespace fs = std::filesystem;
namespace layer = imgbake::layer;
using imgbake::layer::detail::DataExtent;
using imgbake::layer::detail::sparse_data_extents;
using layer_fixture::kFixedTime;
using layer_fixture::LayerTest;
using layer_fixture::Shell;
using ::testing::ElementsAre;

constexpr uint64_t kKiB = 1024;
constexpr uint64_t kMiB = 1024 * kKiB;
constexpr uint64_t kGiB = 1024 * kMiB;

// A file of `size` bytes, holes everywhere but `data` at the given offsets (truncate + pwrite).
void MakeSparse(const fs::path& p, uint64_t size, const std::vector<std::pair<uint64_t, std::string>>& data) {
  imgbake::util::UniqueFd fd(open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  ASSERT_TRUE(fd) << p;
  ASSERT_EQ(ftruncate(fd.get(), static_cast<off_t>(size)), 0);
  for (const auto& [offset, bytes] : data) {
    ASSERT_EQ(pwrite(fd.get(), bytes.data(), bytes.size(), static_cast<off_t>(offset)),
              static_cast<ssize_t>(bytes.size()));
  }
}
std::string ReadAt(const fs::path& p, uint64_t offset, size_t n) {
  imgbake::util::UniqueFd fd(open(p.c_str(), O_RDONLY | O_CLOEXEC));
  std::string out(n, '\0');
  ssize_t got = pread(fd.get(), out.data(), n, static_cast<off_t>(offset));
  out.resize(got < 0 ? 0 : static_cast<size_t>(got));
  return out;
}
uint64_t AllocatedBytes(const fs::path& p) {
  struct stat st {};
  EXPECT_EQ(stat(p.c_str(), &st), 0) << p;
  return static_cast<uint64_t>(st.st_blocks) * 512;
}
std::optional<std::vector<DataExtent>> Extents(const fs::path& p) {
  imgbake::util::UniqueFd fd(open(p.c_str(), O_RDONLY | O_CLOEXEC));
  return sparse_data_extents(fd.get(), fs::file_size(p), AllocatedBytes(p), p.string());
}

const std::string kHead = "head of the disk\n";
const std::string kMiddle(5000, 'm');
const std::string kTail = "tail\n";

TEST_F(LayerTest, ALargeSparseFileStaysSparseThroughWriteAndApply) {
  fs::path tree = dir_ / "tree";
  fs::create_directories(tree / "var/lib");
  const uint64_t size = 4 * kGiB;
  MakeSparse(tree / "var/lib/disk.img", size, {{0, kHead}, {2 * kGiB + 12345, kMiddle}, {size - kTail.size(), kTail}});
  // Written after the sparse file: libarchive must not carry its map over to the next entry.
  std::ofstream(tree / "var/lib/zz-plain") << "plain\n";
  SetAllMtimes(tree, kFixedTime);

  auto started = std::chrono::steady_clock::now();
  layer::LayerBlob blob = layer::write_tree(tree, dir_ / "layer.tar.gz", {}, cancel_);
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  EXPECT_LT(blob.size, 64 * kKiB) << "the holes were stored";
  EXPECT_LT(seconds, 20.0) << "the holes were read or compressed";

  // GNU tar, an independent reader, sees the real name and size.
  auto listing = Shell("tar -tvzf " + (dir_ / "layer.tar.gz").string() + " var/lib/disk.img var/lib/zz-plain");
  ASSERT_EQ(listing.size(), 2u);
  EXPECT_THAT(listing[0], ::testing::HasSubstr(" 4294967296 "));
  EXPECT_THAT(listing[0], ::testing::EndsWith(" var/lib/disk.img"));
  EXPECT_THAT(listing[1], ::testing::HasSubstr(" 6 "));

  fs::path out = dir_ / "out";
  fs::create_directories(out);
  EXPECT_EQ(layer::apply(dir_ / "layer.tar.gz", out, cancel_), blob.diff_id);
  fs::path copy = out / "var/lib/disk.img";
  EXPECT_EQ(fs::file_size(copy), size);
  EXPECT_EQ(ReadAt(copy, 0, kHead.size()), kHead);
  EXPECT_EQ(ReadAt(copy, 2 * kGiB + 12345, kMiddle.size()), kMiddle);
  EXPECT_EQ(ReadAt(copy, size - kTail.size(), kTail.size()), kTail);
  EXPECT_EQ(ReadAt(copy, kGiB, 4096), std::string(4096, '\0'));
  EXPECT_LT(AllocatedBytes(copy), 4 * kMiB) << "the applied file lost its holes";
  EXPECT_EQ(ReadAt(out / "var/lib/zz-plain", 0, 100), "plain\n");
  // Applying and writing again gives the same layer.
  SetAllMtimes(out, kFixedTime);
  EXPECT_EQ(layer::write_tree(out, dir_ / "again.tar.gz", {}, cancel_).digest, blob.digest);
}

TEST_F(LayerTest, ZerosStoredDenselyInALayerBecomeHolesWhenApplied) {
  // A tarball made without --sparse: the zeros are in the tar. Applying it makes holes, so the
  // layers written from the tree afterwards (a base layer, an export) do not hold the zeros.
  fs::create_directories(dir_ / "dense");
  {
    std::ofstream f(dir_ / "dense/disk.img", std::ios::binary);
    f << "head";
    f << std::string(64 * kMiB, '\0');
    f << "tail";
  }
  SetAllMtimes(dir_ / "dense", kFixedTime);
  ASSERT_GE(AllocatedBytes(dir_ / "dense/disk.img"), 64 * kMiB);
  auto dense = layer::write_tree(dir_ / "dense", dir_ / "dense.tar.gz", {}, cancel_);
  fs::create_directories(dir_ / "applied");
  layer::apply(dir_ / "dense.tar.gz", dir_ / "applied", cancel_);
  fs::path copy = dir_ / "applied/disk.img";
  EXPECT_EQ(fs::file_size(copy), 64 * kMiB + 8);
  EXPECT_EQ(ReadAt(copy, 0, 4), "head");
  EXPECT_EQ(ReadAt(copy, 64 * kMiB + 4, 4), "tail");
  EXPECT_LT(AllocatedBytes(copy), kMiB) << "the zeros were written out";
  SetAllMtimes(dir_ / "applied", kFixedTime);
  auto again = layer::write_tree(dir_ / "applied", dir_ / "again.tar.gz", {}, cancel_);
  EXPECT_LT(again.size, 64 * kKiB);
  EXPECT_GT(dense.size, again.size);
}

TEST_F(LayerTest, TheSparseMapDependsOnContentNotOnWhereTheDiskHasHoles) {
  // The same content twice: once with holes only, once with some of its zeros written out.
  for (const char* name : {"a", "b"}) fs::create_directories(dir_ / name);
  MakeSparse(dir_ / "a/f", 8 * kMiB, {{3 * kMiB, "x"}});
  MakeSparse(dir_ / "b/f", 8 * kMiB, {{0, std::string(kMiB, '\0')}, {3 * kMiB, "x"}});
  ASSERT_GT(AllocatedBytes(dir_ / "b/f"), AllocatedBytes(dir_ / "a/f"));
  SetAllMtimes(dir_ / "a", kFixedTime);
  SetAllMtimes(dir_ / "b", kFixedTime);
  auto a = layer::write_tree(dir_ / "a", dir_ / "a.tar", {layer::Compression::None, -1, {}}, cancel_);
  auto b = layer::write_tree(dir_ / "b", dir_ / "b.tar", {layer::Compression::None, -1, {}}, cancel_);
  EXPECT_EQ(a.digest, b.digest);
  EXPECT_LT(a.size, 64 * kKiB);
}

TEST_F(LayerTest, SparseDataExtentsAreWholeBlocksWithShortZeroRunsKept) {
  fs::path f = dir_ / "f";
  // Data at 0, a 16 KiB zero gap (too short for a hole), data, then a long hole, data at the end.
  MakeSparse(f, 10 * kMiB, {{0, "a"}, {20 * kKiB, "b"}, {5 * kMiB + 1, "c"}, {10 * kMiB - 1, "d"}});
  EXPECT_THAT(*Extents(f), ElementsAre(DataExtent{0, 24 * kKiB}, DataExtent{5 * kMiB, 4 * kKiB},
                                       DataExtent{10 * kMiB - 4 * kKiB, 4 * kKiB}));
  // Nothing but a hole: no extent at all, still sparse.
  MakeSparse(f, 10 * kMiB, {});
  EXPECT_THAT(Extents(f), ::testing::Optional(::testing::IsEmpty()));
  // No holes on disk: dense.
  std::ofstream(f, std::ios::binary | std::ios::trunc) << std::string(kMiB, 'z');
  EXPECT_EQ(Extents(f), std::nullopt);
  // Holes on disk, but no zero run long enough to be one in the layer: dense.
  MakeSparse(f, 96 * kKiB, {{0, std::string(60 * kKiB, 'y')}, {95 * kKiB, "z"}});
  ASSERT_LT(AllocatedBytes(f), 96 * kKiB);
  EXPECT_EQ(Extents(f), std::nullopt);
}

TEST_F(LayerTest, ASparseFileWithAVeryLongNameIsStoredDenselyUnderItsFullName) {
  fs::path tree = dir_ / "tree";
  const std::string name(150, 'n');  // needs a PAX path record
  fs::create_directories(tree);
  MakeSparse(tree / name, 2 * kMiB, {{kMiB, "x"}});
  SetAllMtimes(tree, kFixedTime);
  layer::write_tree(tree, dir_ / "layer.tar.gz", {}, cancel_);
  fs::path out = dir_ / "out";
  fs::create_directories(out);
  layer::apply(dir_ / "layer.tar.gz", out, cancel_);
  ASSERT_TRUE(fs::exists(out / name));
  EXPECT_EQ(fs::file_size(out / name), 2 * kMiB);
  EXPECT_EQ(ReadAt(out / name, kMiB, 1), "x");
}

}  // namespace
