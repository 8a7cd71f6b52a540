// The qemu builder's options (read_config, parse_disk_size) and the qemu command line they
// make (qemu_command_line): what a user writes in a template and what qemu is started with.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "imgbake/config.h"
#include "imgbake/error.h"
#include "imgbake/json.h"
#include "imgbake/util.h"
#include "qemu/qemu_config.h"
#include "qemu/step_cache.h"

namespace {

using imgbake::ConfigReader;
using imgbake::Diagnostic;
using imgbake::Diagnostics;
using imgbake::qemu::Accelerator;
using imgbake::qemu::LaunchFacts;
using imgbake::qemu::parse_disk_size;
using imgbake::qemu::qemu_command_line;
using imgbake::qemu::QemuConfig;
using imgbake::qemu::read_config;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using namespace std::chrono_literals;

constexpr uint64_t kMiB = uint64_t{1} << 20;
constexpr uint64_t kGiB = uint64_t{1} << 30;

const std::string kHex = "3f1c9e7a5b2d4c6e8f0a1b2c3d4e5f60718293a4b5c6d7e8f9a0b1c2d3e4f5a6";

MATCHER_P2(At, line, col, "at " + std::to_string(line) + ":" + std::to_string(col)) {
  *result_listener << "is at " << arg.pos.line << ":" << arg.pos.col << " (" << arg.message << ")";
  return arg.pos.line == line && arg.pos.col == col;
}

MATCHER_P(Says, text, "a message containing \"" + std::string(text) + "\"") {
  *result_listener << "says \"" << arg.message << "\"";
  return arg.message.find(text) != std::string::npos;
}

// ---------------------------------------------------------------- parse_disk_size

TEST(QemuDiskSize, BareNumberIsMiB) {
  EXPECT_EQ(parse_disk_size("10240"), 10240 * kMiB);
  EXPECT_EQ(parse_disk_size("1"), kMiB);
  EXPECT_EQ(parse_disk_size(" 512 "), 512 * kMiB);
}

TEST(QemuDiskSize, BinaryUnitSuffixes) {
  EXPECT_EQ(parse_disk_size("64K"), 64 * uint64_t{1024});
  EXPECT_EQ(parse_disk_size("256M"), 256 * kMiB);
  EXPECT_EQ(parse_disk_size("10G"), 10 * kGiB);
  EXPECT_EQ(parse_disk_size("2T"), 2 * (uint64_t{1} << 40));
}

TEST(QemuDiskSize, OptionalBOrIBAfterTheUnit) {
  EXPECT_EQ(parse_disk_size("10GB"), 10 * kGiB);
  EXPECT_EQ(parse_disk_size("10GiB"), 10 * kGiB);
  EXPECT_EQ(parse_disk_size("256MB"), 256 * kMiB);
  EXPECT_EQ(parse_disk_size("256MiB"), 256 * kMiB);
}

TEST(QemuDiskSize, LowerCaseWorks) {
  EXPECT_EQ(parse_disk_size("10g"), 10 * kGiB);
  EXPECT_EQ(parse_disk_size("10gib"), 10 * kGiB);
  EXPECT_EQ(parse_disk_size("10gb"), 10 * kGiB);
  EXPECT_EQ(parse_disk_size("64k"), 64 * uint64_t{1024});
  EXPECT_EQ(parse_disk_size("1t"), uint64_t{1} << 40);
}

TEST(QemuDiskSize, GarbageAndEmptyAreRefused) {
  EXPECT_EQ(parse_disk_size(""), std::nullopt);
  EXPECT_EQ(parse_disk_size("   "), std::nullopt);
  EXPECT_EQ(parse_disk_size("G"), std::nullopt);
  EXPECT_EQ(parse_disk_size("ten"), std::nullopt);
  EXPECT_EQ(parse_disk_size("10X"), std::nullopt);
  EXPECT_EQ(parse_disk_size("10 G"), std::nullopt);
  EXPECT_EQ(parse_disk_size("10.5G"), std::nullopt);
  EXPECT_EQ(parse_disk_size("-10G"), std::nullopt);
  EXPECT_EQ(parse_disk_size("10GG"), std::nullopt);
  EXPECT_EQ(parse_disk_size("10PB"), std::nullopt);
}

TEST(QemuDiskSize, TooLargeIsRefusedNotWrappedAround) {
  // 100000000 TiB = 1.1e20 bytes > 2^64.
  EXPECT_EQ(parse_disk_size("100000000T"), std::nullopt);
  EXPECT_EQ(parse_disk_size("999999999999999"), std::nullopt);
}

TEST(QemuDiskSize, ByteSuffixAsInPacker) {
  EXPECT_EQ(parse_disk_size("1073741824b"), kGiB);
  EXPECT_EQ(parse_disk_size("1073741824B"), kGiB);
}

// ---------------------------------------------------------------- read_config

class QemuConfigTest : public ::testing::Test {
 protected:
  // Reads a builder's options as `imgbake validate` does: read_config, then finish() for
  // unknown keys.
  QemuConfig Read(const std::string& text) {
    value_ = imgbake::json::parse(text);
    ConfigReader reader(value_, "t.json", "builder 'vm' (qemu)", diags_);
    QemuConfig c;
    read_config(reader, c);
    reader.finish();
    return c;
  }

  // A valid minimal config plus `extra` (a JSON object's members, without braces).
  QemuConfig ReadWith(const std::string& extra) {
    return Read(R"({"iso_url": "file:///srv/os.iso", "iso_checksum": "sha256:)" + kHex +
                R"(", "ssh_username": "root")" + (extra.empty() ? "" : ", " + extra) + "}");
  }

  std::vector<Diagnostic> Errors() const { return diags_.errors(); }
  static std::vector<std::string> MessagesOf(const std::vector<Diagnostic>& diags) {
    std::vector<std::string> out;
    out.reserve(diags.size());
    for (const auto& d : diags) out.push_back(d.message);
    return out;
  }
  std::vector<std::string> ErrorMessages() const { return MessagesOf(diags_.errors()); }
  std::vector<std::string> WarningMessages() const { return MessagesOf(diags_.warnings()); }

  imgbake::json::Value value_;
  Diagnostics diags_;
};

TEST_F(QemuConfigTest, MinimalConfigIsValid) {
  ReadWith("");
  EXPECT_THAT(ErrorMessages(), IsEmpty());
  EXPECT_THAT(WarningMessages(), IsEmpty());
}

TEST_F(QemuConfigTest, Defaults) {
  QemuConfig c = ReadWith("");
  ASSERT_THAT(ErrorMessages(), IsEmpty());
  EXPECT_EQ(c.iso_urls, std::vector<std::string>{"file:///srv/os.iso"});
  EXPECT_EQ(c.iso_checksum, "sha256:" + kHex);
  EXPECT_EQ(c.iso_target_extension, "iso");
  EXPECT_FALSE(c.disk_image);
  EXPECT_FALSE(c.use_backing_file);

  EXPECT_EQ(c.accelerator, "auto");
  EXPECT_EQ(c.accel, Accelerator::Auto);
  EXPECT_EQ(c.accelerator_probe_timeout, 20s);
  EXPECT_EQ(c.memory, 512);
  EXPECT_EQ(c.cpus, 1);
  EXPECT_EQ(c.machine_type, "pc");
  EXPECT_EQ(c.cpu_model, "");
  EXPECT_EQ(c.net_device, "virtio-net");
  EXPECT_EQ(c.disk_interface, "virtio");
  EXPECT_EQ(c.disk_cache, "writeback");
  EXPECT_EQ(c.disk_discard, "ignore");
  EXPECT_EQ(c.disk_detect_zeroes, "off");
  EXPECT_EQ(c.disk_size, 40960 * kMiB);
  EXPECT_FALSE(c.disk_size_given);
  EXPECT_EQ(c.qemu_binary, "qemu-system-x86_64");
  EXPECT_EQ(c.format, "qcow2");
  EXPECT_EQ(c.vm_name, "") << "filled in with packer-NAME when the build runs";
  EXPECT_EQ(c.output_directory, "") << "filled in with output-NAME when the build runs";
  EXPECT_EQ(c.host_port_min, 2222);
  EXPECT_EQ(c.host_port_max, 4444);
  EXPECT_FALSE(c.skip_nat_mapping);

  EXPECT_EQ(c.boot_wait, 10s);
  EXPECT_FALSE(c.boot_key_interval.has_value());
  EXPECT_EQ(c.http_bind_address, "127.0.0.1");
  EXPECT_EQ(c.http_port_min, 8000);
  EXPECT_EQ(c.http_port_max, 9000);

  EXPECT_EQ(c.shutdown_command, "");
  EXPECT_EQ(c.shutdown_timeout, 5min);

  EXPECT_EQ(c.communicator, "ssh");
  EXPECT_EQ(c.ssh_port, 22);
  EXPECT_EQ(c.ssh.timeout, 5min);
  EXPECT_EQ(c.ssh.handshake_attempts, 10);
  EXPECT_TRUE(c.ssh_temporary_key_pair) << "no password and no key: a temporary key pair is made";
}

TEST_F(QemuConfigTest, NoTemporaryKeyPairWithAPasswordOrAKeyOrTheAgent) {
  EXPECT_FALSE(ReadWith(R"("ssh_password": "secret")").ssh_temporary_key_pair);
  std::string key = ::testing::TempDir() + "/imgbake-test-qemu-config-key";
  { std::ofstream(key) << "not checked when reading the config\n"; }
  EXPECT_FALSE(ReadWith(R"("ssh_private_key_file": ")" + key + "\"").ssh_temporary_key_pair);
  std::remove(key.c_str());
  EXPECT_FALSE(ReadWith(R"("ssh_agent_auth": true)").ssh_temporary_key_pair);
  EXPECT_TRUE(ReadWith(R"("ssh_password": "secret", "ssh_temporary_key_pair": true)").ssh_temporary_key_pair);
  EXPECT_THAT(ErrorMessages(), IsEmpty());
}

TEST_F(QemuConfigTest, OptionsAreRead) {
  QemuConfig c = ReadWith(R"("accelerator": "tcg", "accelerator_probe_timeout": "45s", "memory": 2048,
      "cpus": "4", "cpu_model": "host", "disk_size": "20G", "disk_additional_size": ["1G", 512],
      "format": "raw", "vm_name": "web.raw", "output_directory": "out", "boot_wait": "2s",
      "boot_key_interval": "10ms", "boot_command": ["<esc>", "linux<enter>"], "shutdown_command": "poweroff",
      "shutdown_timeout": "90s", "ssh_timeout": "20m", "ssh_port": 2022, "host_port_min": 5000,
      "host_port_max": 5010, "qemuargs": [["-m", "1G"], ["-nographic"]],
      "qemu_img_args": {"create": ["-o", "preallocation=metadata"]})");
  ASSERT_THAT(ErrorMessages(), IsEmpty());
  EXPECT_EQ(c.accel, Accelerator::Tcg);
  EXPECT_EQ(c.accelerator_probe_timeout, 45s);
  EXPECT_EQ(c.memory, 2048);
  EXPECT_EQ(c.cpus, 4);
  EXPECT_EQ(c.cpu_model, "host");
  EXPECT_EQ(c.disk_size, 20 * kGiB);
  EXPECT_TRUE(c.disk_size_given);
  EXPECT_THAT(c.disk_additional_size, ElementsAre(kGiB, 512 * kMiB));
  EXPECT_EQ(c.format, "raw");
  EXPECT_EQ(c.vm_name, "web.raw");
  EXPECT_EQ(c.output_directory, "out");
  EXPECT_EQ(c.boot_wait, 2s);
  EXPECT_EQ(c.boot_key_interval, 10ms);
  EXPECT_EQ(c.boot_command, "<esc>linux<enter>") << "the list is joined without separators";
  EXPECT_EQ(c.shutdown_command, "poweroff");
  EXPECT_EQ(c.shutdown_timeout, 90s);
  EXPECT_EQ(c.ssh.timeout, 20min);
  EXPECT_EQ(c.ssh_port, 2022);
  EXPECT_EQ(c.host_port_min, 5000);
  EXPECT_EQ(c.host_port_max, 5010);
  EXPECT_THAT(c.qemuargs, ElementsAre(ElementsAre("-m", "1G"), ElementsAre("-nographic")));
  EXPECT_THAT(c.qemu_img_args_create, ElementsAre("-o", "preallocation=metadata"));
  EXPECT_THAT(c.qemu_img_args_convert, IsEmpty());
}

TEST_F(QemuConfigTest, OlderSpellingsOfPortsAndTimeouts) {
  // Packer before 1.6 named the forwarded port range ssh_host_port_*, the NAT switch
  // ssh_skip_nat_mapping and the SSH wait ssh_wait_timeout.
  QemuConfig c = ReadWith(R"("ssh_host_port_min": 6000, "ssh_host_port_max": 6001,
      "ssh_skip_nat_mapping": true, "ssh_wait_timeout": "7m")");
  ASSERT_THAT(ErrorMessages(), IsEmpty());
  EXPECT_EQ(c.host_port_min, 6000);
  EXPECT_EQ(c.host_port_max, 6001);
  EXPECT_TRUE(c.skip_nat_mapping);
  EXPECT_EQ(c.ssh.timeout, 7min);
}

TEST_F(QemuConfigTest, IsoUrlsListAndDiskImage) {
  QemuConfig c = Read(R"({"iso_urls": ["https://a/os.qcow2", "https://b/os.qcow2"], "iso_checksum": ")" + kHex +
                      R"(", "disk_image": true, "use_backing_file": true, "ssh_username": "root"})");
  ASSERT_THAT(ErrorMessages(), IsEmpty());
  EXPECT_THAT(c.iso_urls, ElementsAre("https://a/os.qcow2", "https://b/os.qcow2"));
  EXPECT_TRUE(c.disk_image);
  EXPECT_TRUE(c.use_backing_file);
}

TEST_F(QemuConfigTest, IsoChecksumTypeLegacyFormIsCombined) {
  QemuConfig c = Read(R"({"iso_url": "file:///srv/os.iso", "iso_checksum": ")" + kHex +
                      R"(", "iso_checksum_type": "sha256", "ssh_username": "root"})");
  EXPECT_THAT(ErrorMessages(), IsEmpty());
  EXPECT_EQ(c.iso_checksum, "sha256:" + kHex);
}

TEST_F(QemuConfigTest, IsoChecksumTypeNoneTurnsTheCheckOffWithAWarning) {
  QemuConfig c = Read(R"({"iso_url": "file:///srv/os.iso", "iso_checksum": "", "iso_checksum_type": "none",
                          "ssh_username": "root"})");
  EXPECT_THAT(ErrorMessages(), IsEmpty());
  EXPECT_EQ(c.iso_checksum, "none");
  EXPECT_THAT(WarningMessages(), ElementsAre(HasSubstr("write \"iso_checksum\": \"none\" and drop 'iso_checksum_type'"),
                                             HasSubstr("will not be verified")));
}

TEST_F(QemuConfigTest, IsoChecksumWithItsOwnTypeIgnoresIsoChecksumType) {
  QemuConfig c = Read(R"({"iso_url": "file:///srv/os.iso", "iso_checksum": "sha256:)" + kHex +
                      R"(", "iso_checksum_type": "md5", "ssh_username": "root"})");
  EXPECT_THAT(ErrorMessages(), IsEmpty());
  EXPECT_EQ(c.iso_checksum, "sha256:" + kHex);
}

TEST_F(QemuConfigTest, IsoUrlAndIsoChecksumAreRequired) {
  Read("{\n  \"ssh_username\": \"root\"\n}");
  auto errs = Errors();
  ASSERT_EQ(errs.size(), 2u);
  // Both at the builder's object: there is no value to point at.
  EXPECT_THAT(errs[0], At(1, 1));
  EXPECT_THAT(errs[0], Says("'iso_url' or 'iso_urls' is required"));
  EXPECT_THAT(errs[0], Says("builder 'vm' (qemu)"));
  EXPECT_EQ(errs[0].file, "t.json");
  EXPECT_THAT(errs[1], At(1, 1));
  EXPECT_THAT(errs[1], Says("'iso_checksum' is required"));
  EXPECT_THAT(errs[1], Says("none"));
}

TEST_F(QemuConfigTest, MalformedIsoChecksumIsAnErrorAtItsValue) {
  Read(R"({
  "iso_url": "file:///srv/os.iso",
  "iso_checksum": "sha256:abc",
  "ssh_username": "root"
})");
  auto errs = Errors();
  ASSERT_EQ(errs.size(), 1u);
  EXPECT_THAT(errs[0], At(3, 19));
  EXPECT_THAT(errs[0], Says("sha256"));
}

TEST_F(QemuConfigTest, MisspelledChecksumTypeSaysDidYouMean) {
  Read(R"({"iso_url": "file:///srv/os.iso", "iso_checksum": "sha265:)" + kHex + R"(", "ssh_username": "root"})");
  EXPECT_THAT(ErrorMessages(), ElementsAre(HasSubstr("did you mean 'sha256'?")));
}

TEST_F(QemuConfigTest, IsoUrlAndIsoUrlsTogetherAreAnError) {
  Read(R"({"iso_url": "file:///a.iso", "iso_urls": ["file:///b.iso"], "iso_checksum": "none",
           "ssh_username": "root"})");
  EXPECT_THAT(ErrorMessages(), ElementsAre(HasSubstr("either 'iso_url' or 'iso_urls'")));
}

TEST_F(QemuConfigTest, BadFormatIsAnErrorAtItsValue) {
  ReadWith("\n  \"format\": \"vmdk\"\n");
  auto errs = Errors();
  ASSERT_EQ(errs.size(), 1u);
  EXPECT_THAT(errs[0], At(2, 13));
  EXPECT_THAT(errs[0], Says("'vmdk' must be qcow2 or raw"));
}

TEST_F(QemuConfigTest, BadAcceleratorIsAnErrorThatListsTheChoices) {
  ReadWith("\n  \"accelerator\": \"kvmm\"\n");
  auto errs = Errors();
  ASSERT_EQ(errs.size(), 1u);
  EXPECT_THAT(errs[0], At(2, 18));
  EXPECT_THAT(errs[0], Says("'kvmm' is not an accelerator"));
  EXPECT_THAT(errs[0], Says("auto, kvm, tcg, none"));
}

TEST_F(QemuConfigTest, EveryAcceleratorPackerKnowsIsAccepted) {
  EXPECT_EQ(ReadWith(R"("accelerator": "kvm")").accel, Accelerator::Kvm);
  EXPECT_EQ(ReadWith(R"("accelerator": "none")").accel, Accelerator::None);
  EXPECT_EQ(ReadWith(R"("accelerator": "auto")").accel, Accelerator::Auto);
  EXPECT_EQ(ReadWith(R"("accelerator": "")").accel, Accelerator::Auto) << "Packer's empty = detect";
  for (const char* other : {"xen", "hax", "hvf", "whpx"}) {
    QemuConfig c = ReadWith(std::string(R"("accelerator": ")") + other + "\"");
    EXPECT_EQ(c.accel, Accelerator::Other) << other;
    EXPECT_EQ(c.accelerator, other);
  }
  EXPECT_THAT(ErrorMessages(), IsEmpty());
}

TEST_F(QemuConfigTest, BadDiskCacheIsAnErrorThatListsTheModes) {
  ReadWith("\n  \"disk_cache\": \"fast\"\n");
  auto errs = Errors();
  ASSERT_EQ(errs.size(), 1u);
  EXPECT_THAT(errs[0], At(2, 17));
  EXPECT_THAT(errs[0], Says("'fast' is not a cache mode: writethrough, writeback, none, unsafe, directsync"));
}

TEST_F(QemuConfigTest, BadDiskDiscardAndDetectZeroes) {
  ReadWith(R"("disk_discard": "trim", "disk_detect_zeroes": "yes")");
  EXPECT_THAT(ErrorMessages(),
              ElementsAre(HasSubstr("'trim' must be ignore or unmap"), HasSubstr("'yes' must be off, on or unmap")));
}

TEST_F(QemuConfigTest, BadDiskSizeIsAnErrorAtItsValue) {
  ReadWith("\n  \"disk_size\": \"ten gigs\"\n");
  auto errs = Errors();
  ASSERT_EQ(errs.size(), 1u);
  EXPECT_THAT(errs[0], At(2, 16));
  EXPECT_THAT(errs[0], Says("'ten gigs' is not a size"));
}

TEST_F(QemuConfigTest, DiskSizeAsANumberIsMiB) {
  QemuConfig c = ReadWith(R"("disk_size": 10240)");
  EXPECT_THAT(ErrorMessages(), IsEmpty());
  EXPECT_EQ(c.disk_size, 10 * kGiB);
}

TEST_F(QemuConfigTest, DiskSizeZeroOrEmptyMeansTheDefaultAsInPacker) {
  QemuConfig zero = ReadWith(R"("disk_size": "0")");
  EXPECT_EQ(zero.disk_size, 40960 * kMiB);
  QemuConfig empty = ReadWith(R"("disk_size": "")");
  EXPECT_EQ(empty.disk_size, 40960 * kMiB);
  EXPECT_THAT(ErrorMessages(), IsEmpty());
}

TEST_F(QemuConfigTest, DiskAdditionalSizeAsOneStringIsOneDisk) {
  QemuConfig c = ReadWith(R"("disk_additional_size": "10G")");
  EXPECT_THAT(ErrorMessages(), IsEmpty());
  EXPECT_THAT(c.disk_additional_size, ElementsAre(10 * kGiB));
}

TEST_F(QemuConfigTest, MemoryAndCpusHaveLowerBounds) {
  ReadWith(R"("memory": 8, "cpus": 0)");
  EXPECT_THAT(ErrorMessages(), ElementsAre(HasSubstr("at least 16"), HasSubstr("cpus must be at least 1")));
}

TEST_F(QemuConfigTest, UseBackingFileWithoutDiskImageIsAnError) {
  ReadWith("\n  \"use_backing_file\": true\n");
  auto errs = Errors();
  ASSERT_EQ(errs.size(), 1u);
  EXPECT_THAT(errs[0], At(2, 23));
  EXPECT_THAT(errs[0], Says("use_backing_file needs disk_image: true"));
}

TEST_F(QemuConfigTest, UseBackingFileWithFormatRawIsAnError) {
  Read(R"({"iso_url": "file:///srv/os.qcow2", "iso_checksum": "none", "disk_image": true,
           "use_backing_file": true, "format": "raw", "ssh_username": "root"})");
  EXPECT_THAT(ErrorMessages(), ElementsAre(HasSubstr("use_backing_file")));
}

TEST_F(QemuConfigTest, DiskCompressionNeedsQcow2) {
  ReadWith(R"("format": "raw", "disk_compression": true)");
  EXPECT_THAT(ErrorMessages(), ElementsAre(HasSubstr("disk_compression needs format qcow2")));
}

TEST_F(QemuConfigTest, PortRangesMustBeRanges) {
  ReadWith(R"("host_port_min": 5000, "host_port_max": 4000, "http_port_min": 0)");
  EXPECT_THAT(ErrorMessages(), ElementsAre(HasSubstr("host_port_min..host_port_max must be a range of TCP ports"),
                                           HasSubstr("http_port_min..http_port_max must be a range of TCP ports")));
}

TEST_F(QemuConfigTest, HttpDirectoryMustExist) {
  ReadWith(R"("http_directory": "/nonexistent/imgbake-http")");
  EXPECT_THAT(ErrorMessages(), ElementsAre(HasSubstr("'/nonexistent/imgbake-http' is not a directory")));
  EXPECT_EQ(ReadWith(R"("http_directory": "/")").http_directory, "/");
}

TEST_F(QemuConfigTest, QemuargsMustBeListsThatStartWithAFlag) {
  // The empty entry and the bare string make the same message at the same place: shown once.
  ReadWith(R"("qemuargs": [["m", "1G"], [], "-nographic"])");
  EXPECT_THAT(ErrorMessages(), ElementsAre(HasSubstr("'m' is not a qemu flag"), HasSubstr("non-empty list")));
  ReadWith(R"("qemuargs": "-nographic")");
  EXPECT_THAT(ErrorMessages(), Contains(HasSubstr("must be a list of lists of strings")));
}

TEST_F(QemuConfigTest, FloppyFilesAreRefused) {
  ReadWith("\n  \"floppy_files\": [\"ks.cfg\"],\n  \"floppy_dirs\": [\"d\"]\n");
  auto errs = Errors();
  ASSERT_EQ(errs.size(), 2u);
  EXPECT_THAT(errs[0], At(2, 19));
  EXPECT_THAT(errs[0], Says("floppy_files is not supported: use cd_files"));
  EXPECT_THAT(errs[1], At(3, 18));
  EXPECT_THAT(errs[1], Says("floppy_dirs is not supported"));
}

TEST_F(QemuConfigTest, WinrmIsRefused) {
  Read(R"({
  "iso_url": "file:///srv/os.iso",
  "iso_checksum": "none",
  "communicator": "winrm",
  "winrm_username": "Administrator"
})");
  auto errs = Errors();
  ASSERT_EQ(errs.size(), 1u) << "winrm_* options are accepted; only the communicator is refused";
  EXPECT_THAT(errs[0], At(4, 19));
  EXPECT_THAT(errs[0], Says("winrm communicator is not supported"));
}

TEST_F(QemuConfigTest, UnknownCommunicatorIsAnError) {
  ReadWith(R"("communicator": "telnet")");
  EXPECT_THAT(ErrorMessages(), ElementsAre(HasSubstr("'telnet' must be ssh or none")));
}

TEST_F(QemuConfigTest, CommunicatorNoneNeedsNoUsername) {
  QemuConfig c = Read(R"({"iso_url": "file:///srv/os.iso", "iso_checksum": "none", "communicator": "none"})");
  EXPECT_THAT(ErrorMessages(), IsEmpty());
  EXPECT_EQ(c.communicator, "none");
  EXPECT_FALSE(c.ssh_temporary_key_pair);
}

TEST_F(QemuConfigTest, SshUsernameIsRequired) {
  Read(R"({"iso_url": "file:///srv/os.iso", "iso_checksum": "none"})");
  EXPECT_THAT(ErrorMessages(), ElementsAre(HasSubstr("'ssh_username' is required")));
}

TEST_F(QemuConfigTest, MissingPrivateKeyFileIsAnError) {
  ReadWith(R"("ssh_private_key_file": "/nonexistent/id_ed25519")");
  EXPECT_THAT(ErrorMessages(), ElementsAre(HasSubstr("'/nonexistent/id_ed25519' does not exist")));
}

TEST_F(QemuConfigTest, NetBridgeBastionProxyAndCertificatesAreRefused) {
  ReadWith(R"("net_bridge": "br0", "ssh_bastion_host": "jump", "ssh_proxy_host": "proxy",
              "ssh_certificate_file": "c.pub")");
  EXPECT_THAT(Errors(),
              ElementsAre(Says("net_bridge is not supported"), Says("ssh_bastion_host is not supported"),
                          Says("ssh_proxy_host is not supported"), Says("ssh_certificate_file is not supported")));
}

TEST_F(QemuConfigTest, OnlyEd25519TemporaryKeys) {
  ReadWith(R"("temporary_key_pair_type": "rsa")");
  EXPECT_THAT(ErrorMessages(), ElementsAre(HasSubstr("only ed25519")));
}

TEST_F(QemuConfigTest, PackerOptionsWithoutAnEffectAreAccepted) {
  ReadWith(R"("vnc_bind_address": "0.0.0.0", "vnc_port_min": 5900, "vnc_port_max": 6000, "vnc_use_password": true,
              "disable_vnc": true, "qmp_enable": true, "qmp_socket_path": "/tmp/q", "run_once": true,
              "floppy_label": "x", "http_interface": "eth0", "boot_keygroup_interval": "1s",
              "ssh_clear_authorized_keys": true, "ssh_file_transfer_method": "sftp", "ssh_interface": "eth0",
              "temporary_key_pair_bits": 4096, "ssh_bastion_port": 22, "winrm_use_ssl": true,
              "ssh_local_tunnels": [], "_comment": "ignored")");
  EXPECT_THAT(ErrorMessages(), IsEmpty());
}

TEST_F(QemuConfigTest, UnknownOptionSaysDidYouMean) {
  Read(R"({
  "iso_url": "file:///srv/os.iso",
  "iso_checksum": "none",
  "ssh_username": "root",
  "shutdown_comand": "poweroff"
})");
  auto errs = Errors();
  ASSERT_EQ(errs.size(), 1u);
  EXPECT_THAT(errs[0], At(5, 3));
  EXPECT_THAT(errs[0], Says("unknown option 'shutdown_comand' (did you mean 'shutdown_command'?)"));
}

TEST_F(QemuConfigTest, BadDurationIsAnErrorAtItsValue) {
  ReadWith("\n  \"boot_wait\": \"ten seconds\"\n");
  auto errs = Errors();
  ASSERT_EQ(errs.size(), 1u);
  EXPECT_THAT(errs[0], At(2, 16));
  EXPECT_THAT(errs[0], Says("'boot_wait' is not a valid duration"));
}

// ---------------------------------------------------------------- qemu_command_line

class QemuCommandLineTest : public ::testing::Test {
 protected:
  QemuCommandLineTest() {
    config.vm_name = "vm1";
    config.headless = true;  // -display none whatever $DISPLAY says
    facts.accelerator = "tcg";
    facts.disk_path = "/out/vm1";
    facts.iso_path = "/cache/os.iso";
    facts.qmp_socket = "/tmp/w/qmp.sock";
    facts.serial_log = "/tmp/w/serial.log";
    facts.host_port = 3333;
  }

  std::vector<std::string> Argv(const std::vector<std::vector<std::string>>& qemuargs = {}) const {
    return qemu_command_line(config, facts, qemuargs);
  }

  // The value after each occurrence of `flag`.
  static std::vector<std::string> ValuesOf(const std::vector<std::string>& argv, const std::string& flag) {
    std::vector<std::string> out;
    for (size_t i = 0; i + 1 < argv.size(); ++i)
      if (argv[i] == flag) out.push_back(argv[i + 1]);
    return out;
  }

  QemuConfig config;
  LaunchFacts facts;
};

TEST_F(QemuCommandLineTest, DefaultArgvForAnIsoBuild) {
  EXPECT_THAT(Argv(), ElementsAre("qemu-system-x86_64",                                        //
                                  "-name", "vm1",                                              //
                                  "-machine", "type=pc,accel=tcg",                             //
                                  "-netdev", "user,id=user.0,hostfwd=tcp:127.0.0.1:3333-:22",  //
                                  "-device", "virtio-net,netdev=user.0",                       //
                                  "-drive", "file=/out/vm1,if=virtio,cache=writeback,discard=ignore,format=qcow2",
                                  "-drive", "file=/cache/os.iso,media=cdrom",         //
                                  "-boot", "once=d",                                  //
                                  "-m", "512M",                                       //
                                  "-smp", "cpus=1,sockets=1",                         //
                                  "-display", "none",                                 //
                                  "-qmp", "unix:/tmp/w/qmp.sock,server=on,wait=off",  //
                                  "-serial", "file:/tmp/w/serial.log"));
}

TEST_F(QemuCommandLineTest, DiskImageBootsFromTheDiskWithoutTheSourceAsCd) {
  config.disk_image = true;
  facts.iso_path.clear();
  auto argv = Argv();
  EXPECT_THAT(ValuesOf(argv, "-boot"), ElementsAre("c"));
  EXPECT_THAT(ValuesOf(argv, "-drive"),
              ElementsAre("file=/out/vm1,if=virtio,cache=writeback,discard=ignore,format=qcow2"));
}

TEST_F(QemuCommandLineTest, StepCacheRunsTheVmOnAQcow2OverlayAndResumesWithIncoming) {
  config.disk_image = true;
  config.format = "raw";  // the output's format; the VM writes to the cache's qcow2 overlay
  facts.iso_path.clear();
  facts.disk_path = "/store/tmp/qemu-x/top-2.qcow2";
  facts.disk_format = "qcow2";
  facts.incoming = "exec:gzip -dc < '/store/blobs/sha256/ab'";
  auto argv = Argv();
  EXPECT_THAT(ValuesOf(argv, "-drive"),
              ElementsAre("file=/store/tmp/qemu-x/top-2.qcow2,if=virtio,cache=writeback,discard=ignore,format=qcow2"));
  EXPECT_THAT(ValuesOf(argv, "-incoming"), ElementsAre("exec:gzip -dc < '/store/blobs/sha256/ab'"));
  facts.incoming.clear();
  EXPECT_THAT(ValuesOf(Argv(), "-incoming"), ElementsAre());
}

TEST(QemuStepCache, SaysWhyABuildIsNotCached) {
  using imgbake::qemu::cache_refusal;
  using imgbake::qemu::CacheEligibility;
  CacheEligibility e;
  e.communicator = "ssh";
  EXPECT_EQ(cache_refusal(e), "");
  auto with = [&](auto change) {
    CacheEligibility c = e;
    change(c);
    return cache_refusal(c);
  };
  EXPECT_EQ(with([](CacheEligibility& c) { c.no_cache = true; }), "--no-cache");
  EXPECT_NE(with([](CacheEligibility& c) { c.communicator = "none"; }).find("'none', not ssh"), std::string::npos);
  EXPECT_NE(with([](CacheEligibility& c) { c.temporary_key = true; }).find("ssh_private_key_file"), std::string::npos);
  EXPECT_NE(with([](CacheEligibility& c) { c.use_backing_file = true; }).find("use_backing_file"), std::string::npos);
  EXPECT_NE(with([](CacheEligibility& c) { c.additional_disks = true; }).find("disk_additional_size"),
            std::string::npos);
  EXPECT_NE(with([](CacheEligibility& c) { c.user_drives = true; }).find("-drive"), std::string::npos);
  EXPECT_NE(with([](CacheEligibility& c) { c.secrets = true; }).find("sensitive variables"), std::string::npos);
}

TEST_F(QemuCommandLineTest, MachineOptionsFollowTheConfig) {
  config.machine_type = "q35";
  config.cpu_model = "host";
  config.memory = 2048;
  config.cpus = 4;
  config.firmware = "/usr/share/ovmf/OVMF.fd";
  config.qemu_binary = "/opt/qemu/bin/qemu-system-x86_64";
  config.ssh_port = 2022;
  config.net_device = "e1000";
  config.format = "raw";
  config.disk_interface = "ide";
  config.disk_cache = "unsafe";
  config.disk_discard = "unmap";
  config.disk_detect_zeroes = "unmap";
  facts.accelerator = "kvm";
  auto argv = Argv();
  EXPECT_EQ(argv.front(), "/opt/qemu/bin/qemu-system-x86_64");
  EXPECT_THAT(ValuesOf(argv, "-machine"), ElementsAre("type=q35,accel=kvm"));
  EXPECT_THAT(ValuesOf(argv, "-cpu"), ElementsAre("host"));
  EXPECT_THAT(ValuesOf(argv, "-m"), ElementsAre("2048M"));
  EXPECT_THAT(ValuesOf(argv, "-smp"), ElementsAre("cpus=4,sockets=4"));
  EXPECT_THAT(ValuesOf(argv, "-bios"), ElementsAre("/usr/share/ovmf/OVMF.fd"));
  EXPECT_THAT(ValuesOf(argv, "-netdev"), ElementsAre("user,id=user.0,hostfwd=tcp:127.0.0.1:3333-:2022"));
  EXPECT_THAT(ValuesOf(argv, "-device"), ElementsAre("e1000,netdev=user.0"));
  EXPECT_THAT(ValuesOf(argv, "-drive"),
              ElementsAre("file=/out/vm1,if=ide,cache=unsafe,discard=unmap,format=raw,detect-zeroes=unmap",
                          "file=/cache/os.iso,media=cdrom"));
}

TEST_F(QemuCommandLineTest, AcceleratorNoneOmitsAccel) {
  facts.accelerator = "none";
  EXPECT_THAT(ValuesOf(Argv(), "-machine"), ElementsAre("type=pc"));
}

TEST_F(QemuCommandLineTest, SkipNatMappingGivesNoHostfwd) {
  facts.host_port = 0;
  EXPECT_THAT(ValuesOf(Argv(), "-netdev"), ElementsAre("user,id=user.0"));
}

TEST_F(QemuCommandLineTest, IsoThenSeedCdThenExtraDisks) {
  facts.cd_path = "/tmp/w/cd.iso";
  facts.extra_disks = {"/out/vm1-1", "/out/vm1-2"};
  EXPECT_THAT(ValuesOf(Argv(), "-drive"),
              ElementsAre("file=/out/vm1,if=virtio,cache=writeback,discard=ignore,format=qcow2",
                          "file=/out/vm1-1,if=virtio,cache=writeback,discard=ignore,format=qcow2",
                          "file=/out/vm1-2,if=virtio,cache=writeback,discard=ignore,format=qcow2",
                          "file=/cache/os.iso,media=cdrom", "file=/tmp/w/cd.iso,media=cdrom"));
}

TEST_F(QemuCommandLineTest, CdromInterfaceIsGivenToBothCds) {
  facts.cd_path = "/tmp/w/cd.iso";
  config.cdrom_interface = "ide";
  auto drives = ValuesOf(Argv(), "-drive");
  ASSERT_EQ(drives.size(), 3u);
  EXPECT_EQ(drives[1], "file=/cache/os.iso,media=cdrom,if=ide");
  EXPECT_EQ(drives[2], "file=/tmp/w/cd.iso,media=cdrom,if=ide");
}

TEST_F(QemuCommandLineTest, VirtioScsiInterfacesMakeAValidCommandLine) {
  config.disk_interface = "virtio-scsi";
  config.cdrom_interface = "virtio-scsi";
  auto argv = Argv();
  for (const auto& d : ValuesOf(argv, "-drive")) EXPECT_THAT(d, Not(HasSubstr("if=virtio-scsi")));
  EXPECT_THAT(ValuesOf(argv, "-device"), Contains(HasSubstr("virtio-scsi")));
}

TEST_F(QemuCommandLineTest, DisplayChoices) {
  config.headless = false;
  config.display = "sdl";
  EXPECT_THAT(ValuesOf(Argv(), "-display"), ElementsAre("sdl"));
  config.headless = true;
  EXPECT_THAT(ValuesOf(Argv(), "-display"), ElementsAre("sdl")) << "an explicit display wins over headless";
  config.display.clear();
  EXPECT_THAT(ValuesOf(Argv(), "-display"), ElementsAre("none"));

  // With a desktop: gtk, or qemu's own choice with use_default_display.
  const char* saved = std::getenv("DISPLAY");
  std::string saved_value = saved ? saved : "";
  ::setenv("DISPLAY", ":99", 1);
  config.headless = false;
  EXPECT_THAT(ValuesOf(Argv(), "-display"), ElementsAre("gtk"));
  config.use_default_display = true;
  auto argv = Argv();
  EXPECT_EQ(std::count(argv.begin(), argv.end(), "-display"), 0);
  ::unsetenv("DISPLAY");
  EXPECT_THAT(ValuesOf(Argv(), "-display"), ElementsAre("none")) << "no $DISPLAY: nothing to show a window on";
  if (saved) ::setenv("DISPLAY", saved_value.c_str(), 1);
}

TEST_F(QemuCommandLineTest, QemuargsFlagReplacesTheDefaultInPlace) {
  auto argv = Argv({{"-m", "2048M"}});
  EXPECT_THAT(ValuesOf(argv, "-m"), ElementsAre("2048M"));
  auto defaults = Argv();
  auto at = [](const std::vector<std::string>& v, const char* flag) {
    return std::find(v.begin(), v.end(), flag) - v.begin();
  };
  EXPECT_EQ(at(argv, "-m"), at(defaults, "-m"));
  EXPECT_EQ(argv.size(), defaults.size());
}

TEST_F(QemuCommandLineTest, QemuargsDeviceReplacesAllDefaultDevices) {
  auto argv = Argv({{"-device", "virtio-rng-pci"}, {"-device", "virtio-net,netdev=user.0"}});
  EXPECT_THAT(ValuesOf(argv, "-device"), ElementsAre("virtio-rng-pci", "virtio-net,netdev=user.0"));
  // As in Packer 1.6.6 (its issue #6804): without a network card among them, the default one
  // is added back, or the guest would have no network and SSH would never come up.
  EXPECT_THAT(ValuesOf(Argv({{"-device", "virtio-rng-pci"}}), "-device"),
              ElementsAre("virtio-rng-pci", "virtio-net,netdev=user.0"));
}

TEST_F(QemuCommandLineTest, QemuargsDriveReplacesAllDefaultDrives) {
  facts.cd_path = "/tmp/w/cd.iso";
  auto argv = Argv({{"-drive", "file=/out/vm1,if=virtio,format=qcow2"}});
  EXPECT_THAT(ValuesOf(argv, "-drive"), ElementsAre("file=/out/vm1,if=virtio,format=qcow2"));
}

TEST_F(QemuCommandLineTest, NewFlagsAreAppendedInOrder) {
  auto argv = Argv({{"-kernel", "/k/vmlinuz"}, {"-initrd", "/k/initrd"}, {"-append", "console=ttyS0 panic=-1"}});
  auto defaults = Argv();
  ASSERT_EQ(argv.size(), defaults.size() + 6);
  EXPECT_TRUE(std::equal(defaults.begin(), defaults.end(), argv.begin()));
  EXPECT_THAT(std::vector<std::string>(argv.end() - 6, argv.end()),
              ElementsAre("-kernel", "/k/vmlinuz", "-initrd", "/k/initrd", "-append", "console=ttyS0 panic=-1"));
}

TEST_F(QemuCommandLineTest, RepeatedNewFlagKeepsItsValuesTogetherInOrder) {
  auto argv =
      Argv({{"-object", "rng-random,id=rng0,filename=/dev/urandom"}, {"-nographic"}, {"-object", "iothread,id=io0"}});
  auto defaults = Argv();
  EXPECT_THAT(
      std::vector<std::string>(argv.begin() + static_cast<long>(defaults.size()), argv.end()),
      ElementsAre("-object", "rng-random,id=rng0,filename=/dev/urandom", "-object", "iothread,id=io0", "-nographic"));
}

TEST_F(QemuCommandLineTest, FlagWithoutValueIsEmittedBare) {
  auto argv = Argv({{"-nographic"}, {"-no-reboot"}});
  ASSERT_GE(argv.size(), 2u);
  EXPECT_EQ(argv[argv.size() - 2], "-nographic");
  EXPECT_EQ(argv[argv.size() - 1], "-no-reboot");
}

TEST_F(QemuCommandLineTest, MultiPartEntryIsJoinedWithoutSeparator) {
  auto argv = Argv({{"-netdev", "user,id=user.0,", "hostfwd=tcp::2222-:22"}});
  EXPECT_THAT(ValuesOf(argv, "-netdev"), ElementsAre("user,id=user.0,hostfwd=tcp::2222-:22"));
}

TEST_F(QemuCommandLineTest, EmptyValueIsABareFlagAsInPacker) {
  auto argv = Argv({{"-nographic", ""}});
  EXPECT_EQ(argv.back(), "-nographic");
}

}  // namespace

namespace {

// The source disk's digest, remembered by file identity (step_cache.h, source_digest).
class QemuSourceDigest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("source-digest-" + std::to_string(getpid()));
    std::filesystem::create_directories(dir_);
    file_ = dir_ / "disk.raw";
    std::ofstream(file_) << "disk bytes";
    memo_ = dir_ / "cache" / "file-digests.json";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  // Rewrites the memo's entry for the file: digest and when it was recorded (ns since the epoch).
  void Forge(const std::string& digest, int64_t recorded_ns) {
    auto m = nlohmann::json::parse(imgbake::util::read_file(memo_));
    auto& e = m[std::filesystem::absolute(file_).lexically_normal().string()];
    e["sha256"] = digest;
    e["recorded_ns"] = recorded_ns;
    imgbake::util::write_file_atomic(memo_, m.dump());
  }
  int64_t CtimeNs() const {
    struct stat sb {};
    ::stat(file_.c_str(), &sb);
    return static_cast<int64_t>(sb.st_ctim.tv_sec) * 1000000000 + sb.st_ctim.tv_nsec;
  }
  std::filesystem::path dir_, file_, memo_;
};

TEST_F(QemuSourceDigest, RemembersByIdentityAndRehashesAChangedFile) {
  const std::string real = imgbake::util::sha256_hex("disk bytes");
  EXPECT_EQ(imgbake::qemu::source_digest(file_, memo_), real);
  ASSERT_TRUE(std::filesystem::exists(memo_));
  // An entry recorded well after the file's last change is trusted: the memo answers (a forged
  // digest shows that the file was not read).
  const std::string forged(64, 'a');
  Forge(forged, CtimeNs() + 10'000'000'000LL);
  EXPECT_EQ(imgbake::qemu::source_digest(file_, memo_), forged);
  // One recorded within 2 s of the change is not ("racy"): the file is hashed again.
  Forge(forged, CtimeNs() + 1'000'000'000LL);
  EXPECT_EQ(imgbake::qemu::source_digest(file_, memo_), real);
  // A changed file (new ctime, size, mtime) is hashed again whatever the memo says.
  Forge(forged, CtimeNs() + 10'000'000'000LL);
  std::ofstream(file_, std::ios::app) << "!";
  EXPECT_EQ(imgbake::qemu::source_digest(file_, memo_), imgbake::util::sha256_hex("disk bytes!"));
  // An unreadable memo is no memo.
  imgbake::util::write_file_atomic(memo_, "not json");
  EXPECT_EQ(imgbake::qemu::source_digest(file_, memo_), imgbake::util::sha256_hex("disk bytes!"));
}

}  // namespace
