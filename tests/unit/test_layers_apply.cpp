// layer::apply: a tree layer reproducing the tree, and entries that would land outside the root
// (absolute, "..", through symlinks) refused.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <archive.h>
#include <archive_entry.h>

#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "imgbake/error.h"
#include "imgbake/layer.h"
#include "imgbake/util.h"
#include "layer_fixture.h"

namespace {

namespace fs = std::filesystem;
namespace layer = imgbake::layer;
using imgbake::BuildError;
using layer_fixture::Comparable;
using layer_fixture::Describe;
using layer_fixture::LayerTest;
using ::testing::HasSubstr;

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

TEST_F(LayerTest, ApplyRefusesWhiteoutsOfADirectoryItselfOrItsParent) {
  fs::path root = dir_ / "root";
  fs::create_directories(root / "etc");
  WriteFile(root / "etc/hostname", "base\n");
  WriteFile(root / "keep", "base\n");
  struct Case {
    std::string entry;
    std::string says;
  };
  std::vector<Case> cases = {
      {"etc/.wh..", "whiteout 'etc/.wh..' names '.', which the OCI image spec forbids"},
      {"etc/.wh...", "whiteout 'etc/.wh...' names '..', which the OCI image spec forbids"},
      {".wh.", "whiteout '.wh.' names no file, which the OCI image spec forbids"},
      {".wh..", "whiteout '.wh..' names '.', which the OCI image spec forbids"},
  };
  for (const auto& c : cases) {
    fs::path tar = dir_ / "evil.tar";
    CraftTar(tar, {{c.entry, ""}});
    try {
      layer::apply(tar, root, cancel_);
      ADD_FAILURE() << "applied " << c.entry;
    } catch (const BuildError& e) {
      EXPECT_THAT(e.what(), HasSubstr(c.says));
    }
    EXPECT_TRUE(fs::exists(root / "etc/hostname")) << c.entry;
    EXPECT_TRUE(fs::exists(root / "keep")) << c.entry;
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

}  // namespace
