// accelerator auto: the choice, and what earlier builds on this host learnt about KVM.
#include <gtest/gtest.h>

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "qemu/accelerator.h"

namespace {

namespace fs = std::filesystem;
using imgbake::qemu::AcceleratorVerdicts;
using imgbake::qemu::choose_accelerator;

TEST(QemuAccelerator, ConfiguredOnesAreTakenAsTheyAre) {
  for (const char* a : {"kvm", "tcg", "none", "xen"}) {
    auto c = choose_accelerator(a, false, true, "/v.json");
    EXPECT_EQ(c.accel, a);
    EXPECT_EQ(c.message, "");
  }
}

TEST(QemuAccelerator, AutoPrefersKvmWhenUsableAndNotKnownStuck) {
  auto c = choose_accelerator("auto", true, false, "/v.json");
  EXPECT_EQ(c.accel, "kvm");
  EXPECT_EQ(c.message, "");
  EXPECT_EQ(choose_accelerator("", true, false, "/v.json").accel, "kvm");
}

TEST(QemuAccelerator, AutoFallsBackToTcgAndSaysWhy) {
  auto unusable = choose_accelerator("auto", false, false, "/v.json");
  EXPECT_EQ(unusable.accel, "tcg");
  EXPECT_EQ(unusable.message, "accelerator auto: /dev/kvm is not usable here, using tcg (software emulation)");
  auto stuck = choose_accelerator("auto", true, true, "/cache/accel-verdicts.json");
  EXPECT_EQ(stuck.accel, "tcg");
  EXPECT_EQ(stuck.message,
            "accelerator auto: an earlier build found that guests make no progress under kvm on this host "
            "(/cache/accel-verdicts.json), using tcg");
}

class QemuAcceleratorVerdicts : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "imgbake-accel-XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

TEST_F(QemuAcceleratorVerdicts, RememberedPerHostKey) {
  fs::path file = dir_ / "sub" / "accel-verdicts.json";
  AcceleratorVerdicts a(file, "qemu-system-x86_64|6.1|#1"), b(file, "qemu-system-x86_64|6.2|#1");
  EXPECT_FALSE(a.kvm_stuck());  // no file yet
  a.remember_kvm_stuck();
  EXPECT_TRUE(a.kvm_stuck());
  EXPECT_FALSE(b.kvm_stuck());  // another kernel: probed again
  b.remember_kvm_stuck();
  EXPECT_TRUE(AcceleratorVerdicts(file, "qemu-system-x86_64|6.1|#1").kvm_stuck());
  EXPECT_TRUE(AcceleratorVerdicts(file, "qemu-system-x86_64|6.2|#1").kvm_stuck());
}

TEST_F(QemuAcceleratorVerdicts, AnUnreadableFileMeansNothingKnownAndIsReplaced) {
  fs::path file = dir_ / "accel-verdicts.json";
  std::ofstream(file) << "not json";
  AcceleratorVerdicts v(file, "k");
  EXPECT_FALSE(v.kvm_stuck());
  v.remember_kvm_stuck();
  EXPECT_TRUE(v.kvm_stuck());
}

TEST(QemuAcceleratorHostKey, NamesTheQemuBinaryAndTheKernel) {
  std::string key = AcceleratorVerdicts::host_key("/usr/bin/qemu-system-x86_64");
  EXPECT_EQ(key.rfind("/usr/bin/qemu-system-x86_64|", 0), 0u) << key;
  EXPECT_GT(key.size(), std::string("/usr/bin/qemu-system-x86_64|").size() + 2);
}

}  // namespace
