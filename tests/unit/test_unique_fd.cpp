#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cerrno>

#include "imgbake/unique_fd.h"

using imgbake::util::UniqueFd;

namespace {

bool is_open(int fd) { return fcntl(fd, F_GETFD) != -1 || errno != EBADF; }

int open_null() { return open("/dev/null", O_RDONLY | O_CLOEXEC); }

}  // namespace

TEST(UniqueFd, ClosesWhenItGoesOutOfScope) {
  int raw = open_null();
  ASSERT_GE(raw, 0);
  {
    UniqueFd fd(raw);
    EXPECT_TRUE(fd.valid());
    EXPECT_EQ(fd.get(), raw);
  }
  EXPECT_FALSE(is_open(raw));
}

TEST(UniqueFd, MoveTransfersOwnershipAndAssignmentClosesTheOldOne) {
  int a = open_null();
  int b = open_null();
  UniqueFd first(a);
  UniqueFd second(b);
  second = std::move(first);
  EXPECT_FALSE(is_open(b));
  EXPECT_TRUE(is_open(a));
  EXPECT_EQ(second.get(), a);
  EXPECT_FALSE(first.valid());  // NOLINT(bugprone-use-after-move): the moved-from state is the contract
  UniqueFd third(std::move(second));
  EXPECT_EQ(third.get(), a);
  third.reset();
  EXPECT_FALSE(is_open(a));
}

TEST(UniqueFd, ReleaseGivesUpWithoutClosing) {
  int raw = open_null();
  int released = -1;
  {
    UniqueFd fd(raw);
    released = fd.release();
    EXPECT_FALSE(fd.valid());
  }
  EXPECT_EQ(released, raw);
  EXPECT_TRUE(is_open(raw));
  close(raw);
}

TEST(UniqueFd, CloseReportsTheResultOnce) {
  UniqueFd fd(open_null());
  EXPECT_EQ(fd.close(), 0);
  EXPECT_FALSE(fd.valid());
  EXPECT_EQ(fd.close(), 0);  // nothing open: nothing to report
}
