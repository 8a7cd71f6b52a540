// load_template on HCL2 templates: the Packer schema lowered into the template model
// (variables and their sources, locals, sources, builds, provisioners, post-processors, the
// imgbake block) and the errors a user sees, with file:line:col.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "imgbake/error.h"
#include "imgbake/template.h"

namespace {

namespace fs = std::filesystem;
using imgbake::ConfigError;
using imgbake::Template;
using imgbake::VariableInputs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

class TemplateHclTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("imgbake-hcl-" + std::to_string(::getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string Write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name) << text;
    return (dir_ / name).string();
  }

  // All error messages (file:line:col: message) of loading `path`, joined by newlines.
  std::string Errors(const std::string& path, const VariableInputs& in = {}) {
    try {
      imgbake::load_template(path, in);
    } catch (const ConfigError& e) {
      std::string out;
      for (const auto& d : e.diagnostics()) out += d.str() + "\n";
      return out;
    }
    return "";
  }

  const imgbake::VariableDef& Var(const Template& t, const std::string& name) {
    const imgbake::VariableDef* v = t.variable(name);
    EXPECT_NE(v, nullptr) << name;
    static imgbake::VariableDef none;
    return v ? *v : none;
  }

  fs::path dir_;
};

const char* kSources = R"(
source "null" "a" {
  communicator = "none"
}
source "file" "b" {
  content = "x"
  target  = "out/b"
}
)";

TEST_F(TemplateHclTest, BuildsAreNamedAsPacker166NamesThem) {
  std::string p = Write("t.pkr.hcl", std::string(kSources) + R"(
build {
  sources = ["source.null.a", source.file.b]
}
build {
  name    = "second"
  sources = ["source.null.a"]
}
)");
  Template t = imgbake::load_template(p);
  ASSERT_EQ(t.builders.size(), 3u);
  EXPECT_TRUE(t.hcl);
  EXPECT_EQ(t.builders[0].name, "null.a");
  EXPECT_EQ(t.builders[0].type, "null");
  EXPECT_EQ(t.builders[0].build_name, "a");
  EXPECT_EQ(t.builders[1].name, "file.b");
  EXPECT_EQ(t.builders[1].config.find("target")->text, "out/b");
  EXPECT_EQ(t.builders[2].name, "second.null.a");
  // The position of an option is the argument's, so component errors point into the file.
  EXPECT_EQ(t.builders[1].config.find_member("target")->key_pos.line, 7);
  EXPECT_EQ(t.builders[1].config.find_member("target")->key_pos.col, 3);
}

TEST_F(TemplateHclTest, VariablePrecedenceDefaultEnvAutoFileVarFileVar) {
  Write("main.pkr.hcl", std::string(kSources) + R"(
variable "a" { default = "default" }
variable "b" { default = "default" }
variable "c" { default = "default" }
variable "d" { default = "default" }
variable "n" {
  type    = list(number)
  default = []
}
build { sources = ["source.null.a"] }
)");
  Write("x.auto.pkrvars.hcl", "b = \"auto\"\nc = \"auto\"\nd = \"auto\"\n");
  std::string vf = Write("v.pkrvars.hcl", "c = \"file\"\nd = \"file\"\n");
  std::string jf = Write("v.json", R"({"n": [1, 2.5]})");
  ::setenv("PKR_VAR_a", "env", 1);
  ::setenv("PKR_VAR_b", "env", 1);
  Template t = imgbake::load_template(dir_.string(), VariableInputs{{{"d", "flag"}}, {vf, jf}, true});
  ::unsetenv("PKR_VAR_a");
  ::unsetenv("PKR_VAR_b");
  EXPECT_EQ(Var(t, "a").default_value, "env");
  EXPECT_EQ(Var(t, "b").default_value, "auto");
  EXPECT_EQ(Var(t, "c").default_value, "file");
  EXPECT_EQ(Var(t, "d").default_value, "flag");
  EXPECT_EQ(Var(t, "n").default_value, "[1,2.5]");
}

TEST_F(TemplateHclTest, TypedVariablesConvertAndValidate) {
  std::string p = Write("t.pkr.hcl", std::string(kSources) + R"(
variable "port" {
  type    = number
  default = "8080"
  validation {
    condition     = var.port < 65536
    error_message = "The port must be below 65536."
  }
}
build { sources = ["source.null.a"] }
)");
  EXPECT_EQ(Var(imgbake::load_template(p), "port").default_value, "8080");
  EXPECT_THAT(Errors(p, VariableInputs{{{"port", "70000"}}, {}, true}),
              HasSubstr("t.pkr.hcl:14:21: Invalid value for variable; The port must be below 65536."));
  EXPECT_THAT(Errors(p, VariableInputs{{{"port", "eighty"}}, {}, true}),
              HasSubstr("-var port: variable 'port': 'eighty' is not a valid number"));
}

TEST_F(TemplateHclTest, UnsetVariableIsAnErrorUnlessInspecting) {
  std::string p = Write("t.pkr.hcl", std::string(kSources) + R"(
variable "token" {
  type      = string
  sensitive = true
}
build { sources = ["source.null.a"] }
)");
  EXPECT_THAT(Errors(p), HasSubstr("t.pkr.hcl:10:10: Unset variable \"token\""));
  Template t = imgbake::load_template(p, VariableInputs{{}, {}, false});
  EXPECT_TRUE(Var(t, "token").required);
  EXPECT_TRUE(Var(t, "token").sensitive);
  Template given = imgbake::load_template(p, VariableInputs{{{"token", "hunter2"}}, {}, true});
  EXPECT_THAT(given.secrets, ::testing::Contains("hunter2"));
}

TEST_F(TemplateHclTest, LocalsInDependencyOrderAndCyclesReported) {
  std::string p = Write("t.pkr.hcl", std::string(kSources) + R"(
locals {
  c = "${local.b}-c"
  b = "${local.a}-b"
  a = upper("a")
}
build {
  sources = ["source.null.a"]
  provisioner "shell-local" {
    inline = [local.c]
  }
}
)");
  Template t = imgbake::load_template(p);
  ASSERT_EQ(t.provisioners.size(), 1u);
  EXPECT_EQ(t.provisioners[0].config.find("inline")->items[0].text, "A-b-c");

  std::string q = Write("c.pkr.hcl", std::string(kSources) + R"(
locals {
  x = local.y
  y = local.x
}
build { sources = ["source.null.a"] }
)");
  EXPECT_THAT(Errors(q), HasSubstr("c.pkr.hcl:12:7: Cycle in local values; local.y refers to local.x, which depends on "
                                   "it: local.x → local.y → local.x."));
}

TEST_F(TemplateHclTest, ProvisionersPerSourceWithOnlyOverrideAndGenericOptions) {
  std::string p = Write("t.pkr.hcl", std::string(kSources) + R"(
build {
  sources = ["source.null.a", "source.file.b"]
  provisioner "shell-local" {
    only         = ["null.a"]
    inline       = ["only-a"]
    pause_before = "2s"
    timeout      = "1m"
    max_retries  = 3
    cache        = false
  }
  provisioner "shell-local" {
    inline   = ["${source.type}:${source.name}"]
    override = { b = { inline = ["overridden"] } }
  }
}
)");
  Template t = imgbake::load_template(p);
  ASSERT_EQ(t.provisioners.size(), 3u);
  EXPECT_THAT(t.provisioners[0].only, ElementsAre("null.a"));
  EXPECT_EQ(t.provisioners[0].max_retries, 3);
  EXPECT_FALSE(t.provisioners[0].cache);
  EXPECT_TRUE(t.provisioners[1].cache);
  EXPECT_EQ(t.provisioners[0].pause_before, std::chrono::milliseconds(2000));
  EXPECT_EQ(t.provisioners[0].timeout, std::chrono::milliseconds(60000));
  EXPECT_EQ(t.provisioners[0].config.find("only"), nullptr);
  EXPECT_EQ(t.provisioners[1].config.find("inline")->items[0].text, "null:a");
  EXPECT_THAT(t.provisioners[2].only, ElementsAre("file.b"));
  EXPECT_EQ(t.provisioners[2].config.find("inline")->items[0].text, "overridden");

  std::string q = Write("q.pkr.hcl", std::string(kSources) + R"(
build {
  sources = ["source.null.a"]
  provisioner "shell-local" {
    only   = ["null.nope"]
    inline = ["x"]
  }
}
)");
  // Packer 1.6.6 accepts a name that matches no source (the provisioner never runs): a warning.
  Template tq = imgbake::load_template(q);
  EXPECT_TRUE(tq.provisioners.empty());
  ASSERT_EQ(tq.warnings.size(), 1u);
  EXPECT_THAT(
      tq.warnings[0].str(),
      HasSubstr("q.pkr.hcl:13:14: warning: Unknown source in only; \"null.nope\" is not a source of this build"));
}

TEST_F(TemplateHclTest, PostProcessorChainsAndSourceOverrides) {
  std::string p = Write("t.pkr.hcl", std::string(kSources) + R"(
build {
  source "file.b" {
    name   = "renamed"
    target = "out/other"
  }
  post-processor "checksum" {
    keep_input_artifact = false
  }
  post-processors {
    post-processor "checksum" {
      name           = "sums"
      checksum_types = ["sha256"]
    }
    post-processor "manifest" {}
  }
}
)");
  Template t = imgbake::load_template(p);
  ASSERT_EQ(t.builders.size(), 1u);
  EXPECT_EQ(t.builders[0].name, "file.renamed");
  EXPECT_EQ(t.builders[0].build_name, "renamed");
  EXPECT_EQ(t.builders[0].config.find("target")->text, "out/other");
  EXPECT_EQ(t.builders[0].config.find("content")->text, "x");
  ASSERT_EQ(t.post_processors.size(), 2u);
  EXPECT_EQ(t.post_processors[0][0].keep_input_artifact, false);
  ASSERT_EQ(t.post_processors[1].size(), 2u);
  EXPECT_EQ(t.post_processors[1][0].name, "sums");
  EXPECT_EQ(t.post_processors[1][1].type, "manifest");
}

TEST_F(TemplateHclTest, NestedBlocksAreObjectOptionsAndImgbakeBlock) {
  std::string p = Write("t.pkr.hcl", R"(
source "rootfs" "r" {
  source = "debootstrap"
  debootstrap {
    suite = "bookworm"
  }
}
build { sources = ["source.rootfs.r"] }
imgbake {
  image  = "web"
  labels = { team = "web" }
  config {
    Cmd = ["/bin/sh"]
  }
}
)");
  Template t = imgbake::load_template(p);
  EXPECT_EQ(t.builders[0].config.find("debootstrap")->find("suite")->text, "bookworm");
  ASSERT_TRUE(t.imgbake);
  EXPECT_EQ(t.imgbake->find("image")->text, "web");
  EXPECT_EQ(t.imgbake->find("config")->find("Cmd")->items[0].text, "/bin/sh");

  std::string q = Write("q.pkr.hcl", R"(
source "null" "n" {
  communicator = "none"
}
build { sources = ["source.null.n"] }
imgbake {
  image  = "Not Valid"
  lables = {}
}
)");
  std::string errors = Errors(q);
  EXPECT_THAT(errors, HasSubstr("q.pkr.hcl:8:3: Unsupported argument; An argument named \"lables\""));
  EXPECT_THAT(errors, HasSubstr("is not a valid OCI repository name"));
}

TEST_F(TemplateHclTest, UnknownBlocksAttributesAndSourcesAreErrorsWithTheSourceLine) {
  std::string p = Write("t.pkr.hcl", R"(
sourc "null" "n" {}
region = "x"
build {
  sources = ["source.null.n"]
  provisoner "shell-local" {}
}
data "amazon-ami" "x" {}
)");
  std::string errors = Errors(p);
  EXPECT_THAT(errors, HasSubstr("t.pkr.hcl:2:1: Unsupported block type; Blocks of type \"sourc\" are not expected "
                                "here. (did you mean 'source'?)\n  2 | sourc \"null\" \"n\" {}\n    | ^^^^^"));
  EXPECT_THAT(errors, HasSubstr("t.pkr.hcl:3:1: Unsupported argument"));
  EXPECT_THAT(errors, HasSubstr("t.pkr.hcl:5:14: Unknown source; There is no source \"null.n\""));
  EXPECT_THAT(errors, HasSubstr("t.pkr.hcl:6:3: Unsupported block type; Blocks of type \"provisoner\""));
  EXPECT_THAT(errors,
              HasSubstr("t.pkr.hcl:8:6: Unsupported data source; Data source \"amazon-ami\" is not "
                        "available in imgbake: it would query a cloud or a service while the template is read."));
}

TEST_F(TemplateHclTest, NullDataSourceOutputIsItsInput) {
  std::string p = Write("t.pkr.hcl", R"(
variable "v" {
  default = "x"
}
data "null" "n" {
  input = "in-${var.v}"
}
locals {
  l = data.null.n.output
}
source "file" "b" {
  content = local.l
  target  = "out/b"
}
build {
  sources = ["source.file.b"]
}
)");
  Template t = imgbake::load_template(p);
  ASSERT_EQ(t.builders.size(), 1u);
  EXPECT_EQ(t.builders[0].config.find("content")->text, "in-x");
}

TEST_F(TemplateHclTest, SyntaxOnlyChecksFilesBlocksAndVariablesAsPacker166) {
  // Packer 1.6.6's validate -syntax-only: an unknown block inside a build, an unset variable
  // and an unknown source pass; an unknown top-level block and a bad default do not.
  std::string p = Write("t.pkr.hcl", std::string(kSources) + R"(
variable "unset" {}
build {
  sources = ["source.null.nope"]
  provisoner "shell-local" {}
}
)");
  VariableInputs syntax{{}, {}, false, true};
  EXPECT_EQ(Errors(p, syntax), "");
  EXPECT_THAT(Errors(p), HasSubstr("Unsupported block type"));
  std::string q = Write("q.pkr.hcl", R"(
foo "x" {}
variable "n" {
  type    = number
  default = "abc"
}
)");
  std::string errors = Errors(q, syntax);
  EXPECT_THAT(errors, HasSubstr("q.pkr.hcl:2:1: Unsupported block type"));
  EXPECT_THAT(errors, HasSubstr("q.pkr.hcl:5:13: Invalid default value for variable"));
}

TEST_F(TemplateHclTest, NoBuildBlockIsValidAndBuildNameIsTheBuildBlocks) {
  std::string p = Write("t.pkr.hcl", "variable \"x\" { default = \"a\" }\n");
  EXPECT_TRUE(imgbake::load_template(p).builders.empty());
  std::string q = Write("q.pkr.hcl", std::string(kSources) + R"(
build {
  name    = "bb"
  sources = ["source.null.a"]
  provisioner "shell-local" {
    inline = ["${build.name} ${source.name}"]
  }
  provisioner "shell-local" {
    inline = [build.ID]
  }
}
)");
  EXPECT_THAT(Errors(q), HasSubstr("q.pkr.hcl:17:14: Value not known before the build"));
}

TEST_F(TemplateHclTest, RequiredVersionIsCheckedAgainstPacker166) {
  std::string ok = Write("ok.pkr.hcl", std::string("packer {\n  required_version = \"~> 1.6.0\"\n}\n") + kSources +
                                           "build { sources = [\"source.null.a\"] }\n");
  EXPECT_EQ(Errors(ok), "");
  std::string bad = Write("bad.pkr.hcl", std::string("packer {\n  required_version = \">= 1.7.0\"\n}\n") + kSources +
                                             "build { sources = [\"source.null.a\"] }\n");
  EXPECT_THAT(Errors(bad), HasSubstr("bad.pkr.hcl:2:22: Unsupported Packer Core version"));
}

TEST_F(TemplateHclTest, ADirectoryIsEveryPkrHclFileInIt) {
  Write("a.pkr.hcl", kSources);
  Write("b.pkr.hcl", "build { sources = [\"source.null.a\"] }\n");
  Write("notes.hcl", "this is not read");
  Template t = imgbake::load_template(dir_.string());
  EXPECT_EQ(t.files.size(), 2u);
  ASSERT_EQ(t.builders.size(), 1u);
  EXPECT_EQ(t.path, (dir_ / "b.pkr.hcl").string());  // the file of the first build block
  EXPECT_TRUE(imgbake::is_hcl_template(dir_.string()));
  EXPECT_FALSE(imgbake::is_hcl_template((dir_ / "notes.hcl").string()));
}

// HCL's JSON syntax (*.pkr.json): the same template written both ways lowers to the same
// builders, provisioners, post-processors and variables.
TEST_F(TemplateHclTest, PkrJsonIsTheSameTemplateAsItsNativeTwin) {
  std::string native = Write("n.pkr.hcl", R"(
variable "region" {
  type    = string
  default = "eu"
  validation {
    condition     = length(var.region) > 1
    error_message = "short"
  }
}
variable "sizes" {
  type    = list(number)
  default = [1, 2]
}
locals {
  out = "out-${var.region}"
}
local "n" {
  expression = length(var.sizes)
}
source "file" "b" {
  content = "x"
  target  = "${local.out}/b"
  nested {
    a = 1
  }
}
build {
  name    = "main"
  sources = ["source.file.b"]
  provisioner "shell-local" {
    inline      = ["echo ${local.n} ${source.name}"]
    max_retries = 2
  }
  provisioner "shell-local" {
    inline = ["two"]
  }
  post-processors {
    post-processor "manifest" {
      output = "m.json"
    }
  }
}
)");
  fs::create_directories(dir_ / "j");
  std::string json = Write("j/j.pkr.json", R"J({
  "//": "the same template in HCL's JSON syntax",
  "variable": {
    "region": {"type": "string", "default": "eu",
               "validation": {"condition": "${length(var.region) > 1}", "error_message": "short"}},
    "sizes": {"type": "list(number)", "default": [1, 2]}
  },
  "locals": {"out": "out-${var.region}"},
  "local": {"n": {"expression": "${length(var.sizes)}"}},
  "source": {"file": {"b": {"content": "x", "target": "${local.out}/b", "nested": {"a": 1}}}},
  "build": {
    "name": "main",
    "sources": ["source.file.b"],
    "provisioner": [
      {"shell-local": {"inline": ["echo ${local.n} ${source.name}"], "max_retries": 2}},
      {"shell-local": {"inline": ["two"]}}
    ],
    "post-processors": {"post-processor": {"manifest": {"output": "m.json"}}}
  }
})J");
  Template a = imgbake::load_template(native);
  Template b = imgbake::load_template(json);
  ASSERT_EQ(b.builders.size(), 1u);
  EXPECT_EQ(b.builders[0].name, "main.file.b");
  EXPECT_EQ(imgbake::json::serialize(b.builders[0].config), imgbake::json::serialize(a.builders[0].config));
  ASSERT_EQ(b.provisioners.size(), 2u);
  EXPECT_EQ(b.provisioners[0].max_retries, 2);
  for (size_t i = 0; i < 2; ++i)
    EXPECT_EQ(imgbake::json::serialize(b.provisioners[i].config), imgbake::json::serialize(a.provisioners[i].config));
  EXPECT_EQ(b.provisioners[0].config.find("inline")->items[0].text, "echo 2 b");
  ASSERT_EQ(b.post_processors.size(), 1u);
  EXPECT_EQ(imgbake::json::serialize(b.post_processors[0][0].config),
            imgbake::json::serialize(a.post_processors[0][0].config));
  EXPECT_EQ(Var(b, "sizes").default_value, Var(a, "sizes").default_value);
  EXPECT_TRUE(imgbake::is_hcl_template(json));
  EXPECT_TRUE(imgbake::is_hcl_template((dir_ / "j").string()));
}

TEST_F(TemplateHclTest, PkrJsonErrorsHaveFileLineAndColumn) {
  std::string p = Write("e.pkr.json", "{\n  \"source\": {\"null\": {\"a\": {\"communicator\": \"none\",}}}\n}\n");
  EXPECT_THAT(Errors(p), HasSubstr("e.pkr.json:2:51: Trailing comma in object"));
  std::string q = Write("q.pkr.json", R"({
  "variable": {"x": {"type": "string", "defualt": "a"}},
  "locals": {"y": "${var.nope}"}
})");
  EXPECT_THAT(Errors(q), HasSubstr("q.pkr.json:2:40: Unsupported argument; An argument named \"defualt\" is not "
                                   "expected in a variable block. (did you mean 'default'?)"));
  std::string s = Write("s.pkr.json", "{\"source\": {\"null\": \"x\"}}");
  EXPECT_THAT(Errors(s), HasSubstr("s.pkr.json:1:21: Incorrect JSON value type; Either a JSON object or JSON array of "
                                   "objects is required here, to specify name labels for this block."));
  std::string r = Write("r.pkr.json", R"({"variable": {"x": {"default": "a"}}, "locals": {"y": "${var.nope}"}})");
  EXPECT_THAT(Errors(r), HasSubstr("r.pkr.json:1:61: Unsupported attribute"));
}

// A directory: its *.pkr.hcl files, then its *.pkr.json files (as Packer 1.6.6 loads them),
// and *.auto.pkrvars.hcl then *.auto.pkrvars.json.
TEST_F(TemplateHclTest, ADirectoryMixesNativeAndJsonFiles) {
  Write("a.pkr.json",
        R"({"source": {"null": {"a": {"communicator": "none"}}}, "variable": {"v": {"type": "string"}}})");
  Write("b.pkr.hcl", "build {\n  sources = [\"source.null.a\"]\n}\n");
  Write("x.auto.pkrvars.json", R"({"v": "from-json"})");
  Template t = imgbake::load_template(dir_.string());
  EXPECT_EQ(t.files.size(), 2u);
  EXPECT_EQ(t.files[0], (dir_ / "b.pkr.hcl").string());
  ASSERT_EQ(t.builders.size(), 1u);
  EXPECT_EQ(Var(t, "v").default_value, "from-json");
}

// dynamic blocks (hcl's dynblock), where Packer 1.6.6 expands them: in sources, provisioners
// and post-processors (nested blocks of options) and in build blocks (provisioners,
// post-processors); in HCL's JSON syntax too.
TEST_F(TemplateHclTest, DynamicBlocksExpandInSourcesAndBuilds) {
  std::string p = Write("d.pkr.hcl", R"(
locals {
  disks = { a = 10, b = 20 }
  steps = ["one", "two"]
}
source "file" "b" {
  content = "x"
  target  = "out/b"
  dynamic "disk" {
    for_each = local.disks
    iterator = d
    content {
      name = "sd${d.key}"
      size = d.value
      dynamic "part" {
        for_each = [1, 2]
        content {
          n = part.value * d.value
        }
      }
    }
  }
}
build {
  sources = ["source.file.b"]
  dynamic "provisioner" {
    for_each = local.steps
    labels   = ["shell-local"]
    content {
      inline = ["echo ${provisioner.key} ${provisioner.value} ${source.name}"]
    }
  }
}
)");
  auto compact = [](const imgbake::json::Value* v) {
    std::string s = v ? imgbake::json::serialize(*v) : "";
    std::erase_if(s, [](char c) { return c == ' ' || c == '\n'; });
    return s;
  };
  Template t = imgbake::load_template(p);
  ASSERT_EQ(t.builders.size(), 1u);
  EXPECT_EQ(
      compact(t.builders[0].config.find("disk")),
      R"([{"name":"sda","size":10,"part":[{"n":10},{"n":20}]},{"name":"sdb","size":20,"part":[{"n":20},{"n":40}]}])");
  ASSERT_EQ(t.provisioners.size(), 2u);
  EXPECT_EQ(t.provisioners[1].config.find("inline")->items[0].text, "echo 1 two b");

  std::string j = Write("d.pkr.json", R"J({
  "source": {"file": {"b": {"content": "x", "target": "out/b",
    "dynamic": {"disk": {"for_each": "${[1, 2]}", "iterator": "d", "content": {"size": "${d.value}"}}}}}},
  "build": {"sources": ["source.file.b"],
    "dynamic": {"provisioner": {"for_each": ["x"], "labels": ["shell-local"], "content": {"inline": ["${provisioner.value}"]}}}}
})J");
  Template tj = imgbake::load_template(j);
  EXPECT_EQ(compact(tj.builders[0].config.find("disk")), R"([{"size":1},{"size":2}])");
  ASSERT_EQ(tj.provisioners.size(), 1u);
  EXPECT_EQ(tj.provisioners[0].config.find("inline")->items[0].text, "x");

  std::string bad = Write("bad.pkr.hcl", R"(
source "null" "n" {
  communicator = "none"
}
build {
  sources = ["source.null.n"]
  dynamic "provisioner" {
    for_each = 3
    labels   = ["shell-local"]
    content {}
  }
  dynamic "provisioner" {
    for_each = [1]
    content {}
  }
}
)");
  std::string e = Errors(bad);
  EXPECT_THAT(e, HasSubstr("bad.pkr.hcl:8:16: Invalid dynamic for_each value; Cannot use a number value in for_each. "
                           "An iterable collection is required."));
  EXPECT_THAT(e, HasSubstr("bad.pkr.hcl:12:25: Missing required argument; The argument \"labels\" is required"));
}

}  // namespace
