// registries.conf, as podman and skopeo read it (containers-registries.conf(5)).
#include <gtest/gtest.h>

#include <string>

#include "imgbake/error.h"
#include "imgbake/registries_conf.h"

using imgbake::BuildError;
using imgbake::registry::RegistriesConf;

TEST(RegistriesConf, Version2RegistryTables) {
  RegistriesConf conf;
  conf.parse(R"(# podman's example, shortened
unqualified-search-registries = ["docker.io",
  "quay.io"]

[[registry]]
location = "127.0.0.1:5000"   # the test registry
insecure = true

[[registry]]
prefix = "blocked.example.com/team"
blocked = true

[[registry]]
location = "mirrored.example.com"
[[registry.mirror]]
location = "127.0.0.1:6000"
insecure = true

[aliases]
"fedora" = "registry.fedoraproject.org/fedora"
)",
             "registries.conf");
  EXPECT_TRUE(conf.settings_for("127.0.0.1:5000").insecure);
  EXPECT_EQ(conf.settings_for("127.0.0.1:5000").source, "registries.conf:5");
  EXPECT_FALSE(conf.settings_for("127.0.0.1:5001").insecure);
  EXPECT_TRUE(conf.settings_for("blocked.example.com").blocked);
  // A mirror's settings belong to the mirror, not to the registry it mirrors.
  EXPECT_FALSE(conf.settings_for("mirrored.example.com").insecure);
  EXPECT_FALSE(conf.settings_for("127.0.0.1:6000").insecure);
  EXPECT_FALSE(conf.settings_for("docker.io").insecure);
}

TEST(RegistriesConf, Version1ListsAndWildcards) {
  RegistriesConf conf;
  conf.parse(R"([registries.search]
registries = ['docker.io']
[registries.insecure]
registries = ['localhost:5000', "10.0.0.1:5000"]
[registries.block]
registries = []
)",
             "v1.conf");
  EXPECT_TRUE(conf.settings_for("localhost:5000").insecure);
  EXPECT_TRUE(conf.settings_for("10.0.0.1:5000").insecure);
  EXPECT_FALSE(conf.settings_for("docker.io").insecure);
  RegistriesConf wild;
  wild.parse("[[registry]]\nlocation = \"*.internal.example\"\ninsecure = true\n", "w.conf");
  EXPECT_TRUE(wild.settings_for("reg.internal.example").insecure);
  EXPECT_FALSE(wild.settings_for("internal.example").insecure);
}

TEST(RegistriesConf, LaterEntriesWin) {
  RegistriesConf conf;
  conf.parse("[[registry]]\nlocation = \"r:1\"\ninsecure = true\n", "/etc/containers/registries.conf");
  conf.parse("[[registry]]\nlocation = \"r:1\"\ninsecure = false\n", "imgbake/registries.conf");
  EXPECT_FALSE(conf.settings_for("r:1").insecure);
  EXPECT_EQ(conf.settings_for("r:1").source, "imgbake/registries.conf:1");
}

TEST(RegistriesConf, ErrorsNameFileAndLine) {
  auto error_of = [](const std::string& text) {
    try {
      RegistriesConf().parse(text, "bad.conf");
    } catch (const BuildError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_EQ(error_of("[[registry]]\nlocation = \"a\"\ninsecure = yes\n"),
            "bad.conf:3: 'insecure' must be true or false, not yes");
  EXPECT_EQ(error_of("\n[[registry]]\nlocation = unquoted\n"),
            "bad.conf:3: 'location' must be a quoted string, not unquoted");
  EXPECT_EQ(error_of("just words\n"), "bad.conf:1: expected KEY = VALUE, got 'just words'");
}
