// Diff layers between two snapshots: changes, whiteouts and opaque directories, and a base plus a
// diff applied reproducing the changed tree.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "imgbake/layer.h"
#include "imgbake/util.h"
#include "layer_fixture.h"

namespace {

namespace fs = std::filesystem;
namespace layer = imgbake::layer;
using layer_fixture::Comparable;
using layer_fixture::Describe;
using layer_fixture::Find;
using layer_fixture::kFixedTime;
using layer_fixture::LayerTest;
using layer_fixture::ListLayer;
using layer_fixture::Paths;
using ::testing::ElementsAreArray;

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

}  // namespace
