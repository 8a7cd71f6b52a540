// Packer's HCL2 functions: cty's standard library (hcl module) and Packer's own (template
// module). The expected values are what Packer 1.6.6's `packer inspect` printed for the same
// calls (run by hand on this machine; docs/templates-hcl2.md#functions).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "hcl_test_util.h"
#include "template/hcl_load.h"

namespace {

namespace fs = std::filesystem;
using imgbake::hcl::EvalContext;
using imgbake::hcl::Value;
using imgbake::hcl::testing::eval_errors;
using imgbake::hcl::testing::eval_ok;
using ::testing::HasSubstr;

// The string form of `src`'s value: strings as they are, other values as JSON (what the
// lowering into the template model and `display` use).
EvalContext Ctx() {
  EvalContext ctx;
  ctx.functions = imgbake::hcl_template::packer_functions(".");
  return ctx;
}

std::string Eval(const std::string& src, const std::string& base_dir = ".") {
  EvalContext ctx;
  ctx.functions = imgbake::hcl_template::packer_functions(base_dir);
  return imgbake::hcl_template::display(eval_ok(src, ctx));
}

TEST(HclFunctions, FormatAsPacker166) {
  EXPECT_EQ(Eval(R"(format("%5.2f|%-4s|%03d|%v|%q|%x", 3.14159, "ab", 7, [1,"a"], "x<", 255))"),
            R"( 3.14|ab  |007|[1,"a"]|"x\u003c"|ff)");
  EXPECT_EQ(Eval(R"(formatlist("%s-%d", ["a","b"], 3))"), R"(["a-3","b-3"])");
  EXPECT_THAT(eval_errors(R"(format("%d", 1.5))"), HasSubstr("an integer is required"));
  EXPECT_THAT(eval_errors(R"(format("%s %s", "a"))"), HasSubstr("not enough arguments"));
}

TEST(HclFunctions, StringsAsPacker166) {
  EXPECT_EQ(Eval(R"~(regex_replace("hello world", "(o)", "[$1]"))~"), "hell[o] w[o]rld");
  EXPECT_EQ(Eval(R"(split(",", "a,,b"))"), R"(["a","","b"])");
  EXPECT_EQ(Eval(R"(substr("héllo", -3, 2))"), "ll");
  EXPECT_EQ(Eval(R"(replace("aaa", "a", "b"))"), "bbb");
  EXPECT_EQ(Eval(R"(trim("xxhixx", "x"))"), "hi");
  EXPECT_EQ(Eval(R"(trimspace("  a b \n"))"), "a b");
  EXPECT_EQ(Eval(R"(trimprefix("foobar", "foo"))"), "bar");
  EXPECT_EQ(Eval(R"(trimsuffix("foobar", "bar"))"), "foo");
}

TEST(HclFunctions, CollectionsAsPacker166) {
  EXPECT_EQ(Eval(R"(jsonencode({b = 1, a = "<&>", c = [true, null]}))"),
            R"({"a":"\u003c\u0026\u003e","b":1,"c":[true,null]})");
  EXPECT_EQ(Eval(R"(element(["a","b"], 3))"), "b");
  EXPECT_EQ(Eval(R"(coalesce(null, "", "x"))"), "x");
  EXPECT_EQ(Eval(R"(flatten([[1,[2]],3]))"), "[1,2,3]");
  EXPECT_EQ(Eval(R"(lookup({a=1}, "b", 2))"), "2");
  EXPECT_EQ(Eval(R"(keys({b=1,a=2}))"), R"(["a","b"])");
  EXPECT_EQ(Eval(R"(merge({a=1},{b="c"}))"), R"({"a":1,"b":"c"})");
  EXPECT_EQ(Eval(R"(distinct([1,2,1]))"), "[1,2]");
  EXPECT_EQ(Eval(R"(contains(["a", "b"], "b"))"), "true");
  EXPECT_EQ(Eval(R"(jsondecode("{\"a\": [1, \"x\"]}").a[1])"), "x");
}

TEST(HclFunctions, TryAndCanSeeErrors) {
  EvalContext ctx;
  ctx.functions = imgbake::hcl_template::packer_functions(".");
  ctx.variables["var"] = Value::object({{"a", Value::string("set")}});
  EXPECT_EQ(eval_ok("try(var.nope, \"fallback\")", ctx).as_string(), "fallback");
  EXPECT_EQ(eval_ok("try(var.a, \"fallback\")", ctx).as_string(), "set");
  EXPECT_FALSE(eval_ok("can(var.nope)", ctx).as_bool());
  EXPECT_TRUE(eval_ok("can(var.a)", ctx).as_bool());
  EXPECT_THAT(eval_errors("try(var.nope)", ctx), HasSubstr("no expression succeeded"));
}

TEST(HclFunctions, HashesEncodingsPathsAndTimeAsPacker166) {
  EXPECT_EQ(Eval(R"(md5("x"))"), "9dd4e461268c8034f5c8564e155c67a6");
  EXPECT_EQ(Eval(R"(sha256("x"))"), "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881");
  EXPECT_EQ(Eval(R"(base64encode("hi"))"), "aGk=");
  EXPECT_EQ(Eval(R"(base64decode("aGk="))"), "hi");
  EXPECT_EQ(Eval(R"(basename("/a/b.c"))"), "b.c");
  EXPECT_EQ(Eval(R"(dirname("/a/b/c"))"), "/a/b");
  EXPECT_EQ(Eval(R"(formatdate("YYYY-MM-DD hh:mm:ss ZZZ EEE MMM", "2020-01-02T03:04:05Z"))"),
            "2020-01-02 03:04:05 UTC Thu Jan");
  EXPECT_EQ(Eval(R"(formatdate("YY M D h H:m:s AA aa ZZZZ ZZZZZ 'lit' EEEE MMMM", "2020-01-02T15:04:05+02:00"))"),
            "20 1 2 15 3:4:5 PM pm +0200 +02:00 lit Thursday January");
  EXPECT_THAT(Eval("timestamp()"), ::testing::MatchesRegex("[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z"));
  EXPECT_THAT(Eval("uuidv4()"),
              ::testing::MatchesRegex("[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}"));
}

TEST(HclFunctions, FilesetFileAndTemplatefileStartAtTheTemplateDirectory) {
  fs::path dir = fs::temp_directory_path() / ("imgbake-hclfn-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir / "sub/deep");
  std::ofstream(dir / "b.tpl") << "hi ${name} %{ for x in xs }[${x}]%{ endfor }\n";
  std::ofstream(dir / "sub/deep/z.tpl") << "";
  std::ofstream(dir / "a.pkr.hcl") << "";
  EXPECT_EQ(Eval(R"(fileset(".", "**/*.tpl"))", dir.string()), R"(["b.tpl","sub/deep/z.tpl"])");
  EXPECT_EQ(Eval(R"(fileset(".", "*.hcl"))", dir.string()), R"(["a.pkr.hcl"])");
  EXPECT_EQ(Eval(R"(templatefile("b.tpl", {name = "n", xs = [1, 2]}))", dir.string()), "hi n [1][2]\n");
  EXPECT_EQ(Eval(R"(file("b.tpl"))", dir.string()), "hi ${name} %{ for x in xs }[${x}]%{ endfor }\n");
  fs::remove_all(dir);
}

// Values Packer 1.6.6's `packer console` printed for the same calls.
TEST(HclFunctions, NetworksIdsAndUrlencodeAsPacker166) {
  EXPECT_EQ(Eval(R"(cidrhost("10.12.112.0/20", 16))"), "10.12.112.16");
  EXPECT_EQ(Eval(R"(cidrhost("10.12.112.0/20", -2))"), "10.12.127.254");
  EXPECT_EQ(Eval(R"(cidrhost("fd00:fd12:3456:7890::/56", 16))"), "fd00:fd12:3456:7800::10");
  EXPECT_THAT(eval_errors(R"(cidrhost("10.0.0.0/30", 4))", Ctx()),
              HasSubstr("prefix of 30 does not accommodate a host numbered 4"));
  EXPECT_THAT(eval_errors(R"(cidrhost("x", 1))", Ctx()), HasSubstr("invalid CIDR expression: invalid CIDR address: x"));
  EXPECT_EQ(Eval(R"(cidrnetmask("172.16.0.0/12"))"), "255.240.0.0");
  EXPECT_EQ(Eval(R"(cidrnetmask("fd00::/56"))"), "ffff:ffff:ffff:ff00::");
  EXPECT_EQ(Eval(R"(cidrsubnet("172.16.0.0/12", 4, 2))"), "172.18.0.0/16");
  EXPECT_EQ(Eval(R"(cidrsubnet("10.1.2.0/24", 4, 15))"), "10.1.2.240/28");
  EXPECT_EQ(Eval(R"(cidrsubnet("fd00:fd12:3456:7890::/56", 16, 162))"), "fd00:fd12:3456:7800:a200::/72");
  EXPECT_THAT(eval_errors(R"(cidrsubnet("10.0.0.0/30", 4, 1))", Ctx()),
              HasSubstr("insufficient address space to extend prefix of 30 by 4"));
  EXPECT_THAT(eval_errors(R"(cidrsubnet("10.0.0.0/8", 8, 256))", Ctx()),
              HasSubstr("prefix extension of 8 does not accommodate a subnet numbered 256"));
  EXPECT_EQ(Eval(R"(cidrsubnets("10.1.0.0/16", 4, 4, 8, 4))"),
            R"(["10.1.0.0/20","10.1.16.0/20","10.1.32.0/24","10.1.48.0/20"])");
  EXPECT_EQ(Eval(R"(cidrsubnets("fd00:fd12:3456:7890::/56", 16, 16, 16, 32))"),
            R"(["fd00:fd12:3456:7800::/72","fd00:fd12:3456:7800:100::/72","fd00:fd12:3456:7800:200::/72",)"
            R"("fd00:fd12:3456:7800:300::/88"])");
  EXPECT_EQ(Eval(R"(cidrsubnets("10.0.0.0/8"))"), "[]");
  EXPECT_THAT(eval_errors(R"(cidrsubnets("10.0.0.0/30", 1, 1, 1))", Ctx()),
              HasSubstr("not enough remaining address space for a subnet with a prefix of 31 bits after 10.0.0.2/31"));
  EXPECT_EQ(Eval(R"(uuidv5("dns", "www.example.com"))"), "2ed6657d-e927-568b-95e1-2665a8aea6a2");
  EXPECT_EQ(Eval(R"(uuidv5("url", "https://x"))"), "48d34be5-10a3-5c30-96ef-9cf9a60110f2");
  EXPECT_EQ(Eval(R"(uuidv5("6ba7b814-9dad-11d1-80b4-00c04fd430c8", "cn=x"))"), "a951fb6d-5aab-5a72-8e2e-9aa8df8d1f8f");
  EXPECT_THAT(eval_errors(R"(uuidv5("nope", "x"))", Ctx()),
              HasSubstr("uuidv5() doesn't support namespace nope (invalid UUID length: 4)"));
  EXPECT_EQ(Eval(R"(urlencode("a b/c?d=\u00e9&~"))"), "a+b%2Fc%3Fd%3D%C3%A9%26~");
  EXPECT_THAT(eval_errors(R"(vault("secret/x", "k"))", Ctx()), HasSubstr("vault() is not available in imgbake"));
  EXPECT_THAT(eval_errors(R"(aws_secretsmanager("x", "k"))", Ctx()),
              HasSubstr("aws_secretsmanager() is not available in imgbake"));
}

// bcrypt's salt is random: the hash is checked by an independent implementation, Apache's
// htpasswd (APR's bcrypt), as Packer's hashes verify there.
TEST(HclFunctions, BcryptHashesVerifyWithHtpasswd) {
  if (std::system("command -v htpasswd >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "htpasswd (apache2-utils) is not installed";
  std::string hash = Eval(R"(bcrypt("s3cret pass"))");
  EXPECT_THAT(hash, ::testing::MatchesRegex("\\$2a\\$10\\$[./A-Za-z0-9]{53}"));
  EXPECT_THAT(Eval(R"(bcrypt("x", 5))"), ::testing::StartsWith("$2a$05$"));
  EXPECT_THAT(Eval(R"(bcrypt("x", 3))"), ::testing::StartsWith("$2a$10$"));  // below the minimum: the default
  fs::path file = fs::temp_directory_path() / ("imgbake-bcrypt-" + std::to_string(::getpid()));
  std::ofstream(file) << "u:" << hash << "\n";
  std::string cmd = "htpasswd -vb '" + file.string() + "' u ";
  EXPECT_EQ(std::system((cmd + "'s3cret pass' >/dev/null 2>&1").c_str()), 0) << hash;
  EXPECT_NE(std::system((cmd + "'wrong' >/dev/null 2>&1").c_str()), 0);
  fs::remove(file);
}

// A key and a ciphertext made with the openssl CLI (genrsa; pkeyutl -encrypt, PKCS #1 v1.5);
// Packer 1.6.6's console decrypts it to the same text.
TEST(HclFunctions, RsadecryptReadsWhatOpensslEncrypted) {
  const char* key = R"(-----BEGIN RSA PRIVATE KEY-----
MIICXAIBAAKBgQDOaIFbVNZwEzvXxWdFbU3h69KbVEcmpyJ1AARxi+E+3YeIOIcn
iYCfCROMuVEFHjOHsXOnnZ+ScJNC08dRJYc1tZOaGnxKVau39LY7UMqyXjKipbRs
0XBrsfMzxGK7EYcOULaZ1FGJmaxXQAe/T/GS8PvJB8bOBTjs2dfAY9MkowIDAQAB
AoGAGUF6SoWX84C2+tDhsQIN3I3xaCYoypb6xVwqLwaRmhKbKdTY3MKbZVpD9R0b
x8eJQJo675B+3Pk/W5b0NX6lC3n13VpyJa08y7lWoDO6T36bX67IgDLSL6XKNT25
35T89o248kgW9UlYN4PpJHJKo4Tifud3GZwKJSEkVPr51nECQQD2zEQuabwyv2en
sjfnXiuxe/WCkotQn1hGHJqIuKnO9scPmltsJ3g4/CDcPPownTqnxmckyaL52u8F
WyN3LcULAkEA1hq2KeTFo+njf7tmhm04p5P3KhYBcvMHOhriJmYv0N068Q95Vnh+
W2/LP4mBbeRkj2CdTH+LSpW5ylohhxGtyQJAZNYW8YPAIlf0KR93GfBvF8hXCm+H
vnwsnBDpzvzsXKSVtrlRq0IBK/9QCcxcSOqk4ZH96Jj+HuomCOEw/2vS+wJAZ+u7
M4ZpL/Bcjikl0GW/NAer1m+r8GFpxpg54K2E0/otm8gI+yGtIzCWFJbnjbFn5ffd
Ib5em6sk7MTmtSqtkQJBAMagpD9BvvPN1leySIAjSbDxYjx+YZSeXKYrD/9mMlz3
Ycr9q3hQP0MEztpIM56T1M4PVw1Ns1CyrN9scsOIgkQ=
-----END RSA PRIVATE KEY-----)";
  const char* cipher =
      "t82xG/7oQ2VKkP2hDK9/"
      "jfp7hddFTH2jCWuBDYcGNegxf8mcjD52cfBabdUQrUWSHxZ7ldQDJJy5X7ZIpKhSekhbOjfsyoWNOnAb4+LLIW5l7W+"
      "3NZGE910ZBDzPN34VLAGn8kdi5kzTP68NHoxOAn0PurXPfzhOFKBseKz8QH8=";
  EvalContext ctx = Ctx();
  ctx.variables["k"] = Value::string(key);
  EXPECT_EQ(eval_ok(std::string("rsadecrypt(\"") + cipher + "\", k)", ctx).as_string(), "secret text");
  EXPECT_THAT(eval_errors("rsadecrypt(\"%%\", k)", ctx),
              HasSubstr("failed to decode input \"%%\": cipher text must be base64-encoded"));
  EXPECT_THAT(eval_errors(std::string("rsadecrypt(\"") + cipher + "\", \"nokey\")", ctx),
              HasSubstr("invalid private key"));
}

}  // namespace
