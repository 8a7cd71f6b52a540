// Packer's -machine-readable lines (the format of `packer build -machine-readable`; the e2e suite
// test_machine_readable.sh compares a whole build's stream with Packer 1.6.6's).
#include <gtest/gtest.h>

#include <cstdio>
#include <memory>
#include <string>

#include "imgbake/machine_readable.h"
#include "imgbake/ui.h"
#include "imgbake/util.h"

using namespace imgbake;

TEST(PackerLine, EscapesCommasAndLineBreaksInDataOnly) {
  EXPECT_EQ(packer_line(1796477298, "f1", "ui", {"message", "a,b\r\nc"}),
            "1796477298,f1,ui,message,a%!(PACKER_COMMA)b\\r\\nc\n");
  EXPECT_EQ(packer_line(7, "", "version-prelease", {""}), "7,,version-prelease,\n");
  EXPECT_EQ(packer_line(7, "", "error-count", {}), "7,,error-count\n");
}

TEST(PackerLine, BuilderIdsArePackers) {
  EXPECT_EQ(packer_builder_id("file"), "packer.file");
  EXPECT_EQ(packer_builder_id("qemu"), "transcend.qemu");
  EXPECT_EQ(packer_builder_id("manifest"), "packer.post-processor.manifest");
  EXPECT_EQ(packer_builder_id("rootfs"), "imgbake.rootfs");
}

namespace {

// Runs `body` against a Machine-mode Ui and returns its lines without the timestamps.
template <typename F>
std::vector<std::string> machine_lines(std::shared_ptr<Masker> masker, F body) {
  char* buf = nullptr;
  size_t len = 0;
  FILE* out = open_memstream(&buf, &len);
  {
    Ui ui(OutputMode::Machine, out, out, false, masker);
    body(ui);
  }
  std::fclose(out);
  std::string text(buf, len);
  std::free(buf);
  std::vector<std::string> lines;
  for (auto& l : util::split(text, '\n')) {
    if (l.empty()) continue;
    size_t comma = l.find(',');
    EXPECT_NE(comma, std::string::npos) << l;
    EXPECT_EQ(l.find_first_not_of("0123456789"), comma) << "no Unix timestamp first: " << l;
    lines.push_back(l.substr(comma + 1));
  }
  return lines;
}

}  // namespace

TEST(MachineReadableUi, SecretsAreMaskedBeforeEscaping) {
  auto masker = std::make_shared<Masker>();
  masker->add("s3,cr3t");  // escaping first would leave "s3%!(PACKER_COMMA)cr3t" unmasked
  auto lines = machine_lines(masker, [](Ui& ui) {
    ui.output("f1", Stream::Stdout, "token=s3,cr3t");
    ui.error("f1", "bad s3,cr3t");
  });
  ASSERT_EQ(lines.size(), 2U);
  EXPECT_EQ(lines[0], ",ui,message,    f1: token=<sensitive>");
  EXPECT_EQ(lines[1], ",ui,error,f1: bad <sensitive>");
}

TEST(MachineReadableUi, SummaryListsErrorsThenArtifactsAsPackerDoes) {
  auto art = std::make_shared<Artifact>();
  art->builder_type = "file";
  art->id = "sha256:abc";
  art->files = {{"out.txt", 3, "", ""}};
  BuildSummary ok;
  ok.name = "f1";
  ok.ok = true;
  ok.artifacts = {art};
  ok.image_ref = "hello:3";
  BuildSummary bad;
  bad.name = "n1";
  bad.error = "Script exited with non-zero exit status: 3";
  auto lines = machine_lines(nullptr, [&](Ui& ui) {
    ui.artifact("f1", *art);  // listed at the end, not here
    ui.summary({ok, bad});
  });
  std::vector<std::string> want = {
      ",error-count,1",
      ",ui,error,\\n==> Some builds didn't complete successfully and had errors:",
      "n1,error,Script exited with non-zero exit status: 3",
      ",ui,error,--> n1: Script exited with non-zero exit status: 3",
      ",ui,say,\\n==> Builds finished. The artifacts of successful builds are:",
      "f1,artifact-count,1",
      "f1,artifact,0,builder-id,packer.file",
      "f1,artifact,0,id,sha256:abc",
      "f1,artifact,0,string," + packer_escape(art->describe()),
      "f1,artifact,0,files-count,1",
      "f1,artifact,0,file,0,out.txt",
      "f1,artifact,0,end",
      ",ui,say,--> f1: " + packer_escape(art->describe()),
      "f1,image,hello:3",
  };
  EXPECT_EQ(lines, want);
}

TEST(MachineReadableUi, NoArtifactsSaysSo) {
  BuildSummary bad;
  bad.name = "n1";
  bad.cancelled = true;
  auto lines = machine_lines(nullptr, [&](Ui& ui) { ui.summary({bad}); });
  ASSERT_FALSE(lines.empty());
  EXPECT_EQ(lines.back(), ",ui,say,\\n==> Builds finished but no artifacts were created.");
  EXPECT_EQ(lines[2], "n1,error,cancelled");
}
