// TempFile and the process's private temporary directory.
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "imgbake/temp_file.h"

namespace fs = std::filesystem;

namespace {

TEST(ProcessTempDir, IsPrivateNamedForThisProcessAndHoldsTheTempFiles) {
  const fs::path& dir = imgbake::process_temp_dir();
  struct stat st {};
  ASSERT_EQ(::lstat(dir.c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0700U);
  EXPECT_TRUE(dir.filename().string().starts_with("imgbake-" + std::to_string(::getpid()) + "-")) << dir;
  imgbake::TempFile f("secret", "imgbake-test", 0600);
  EXPECT_EQ(fs::path(f.path()).parent_path(), dir);
}

TEST(ProcessTempDir, TheDirectoryOfAKilledProcessIsSweptAndNoOtherOne) {
  std::string tmpl = (fs::temp_directory_path() / "imgbake-sweep-test-XXXXXX").string();
  ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
  const fs::path root = tmpl;
  // A process that made its directory and was killed with SIGKILL.
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    fs::path mine = root / ("imgbake-" + std::to_string(::getpid()) + "-Ab12Cd");
    ::mkdir(mine.c_str(), 0700);
    std::ofstream(mine / "imgbake-shell-XXXXXX") << "echo hi\n";
    ::raise(SIGKILL);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status));
  const fs::path dead = root / ("imgbake-" + std::to_string(child) + "-Ab12Cd");
  ASSERT_TRUE(fs::is_directory(dead));
  // A live process's (this one's, and init's), and names that are not a process's directory.
  const fs::path alive = root / ("imgbake-" + std::to_string(::getpid()) + "-Zz99Yy");
  const fs::path init = root / "imgbake-1-Qq11Ww";
  const fs::path other = root / "imgbake-shell-local-abcdef";
  for (const auto& d : {alive, init, other}) fs::create_directories(d);

  EXPECT_EQ(imgbake::sweep_stale_temp_dirs(root), 1U);
  EXPECT_FALSE(fs::exists(dead));
  EXPECT_TRUE(fs::exists(alive));
  EXPECT_TRUE(fs::exists(init));
  EXPECT_TRUE(fs::exists(other));
  fs::remove_all(root);
}

}  // namespace
