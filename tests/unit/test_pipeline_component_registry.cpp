// The name -> factory maps the components register in.
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <stdexcept>
#include <string>

#include "imgbake/component_registry.h"

namespace {

struct Widget {
  virtual ~Widget() = default;
  virtual std::string kind() const = 0;
};
struct Round : Widget {
  std::string kind() const override { return "round"; }
};
struct Square : Widget {
  std::string kind() const override { return "square"; }
};

TEST(ComponentRegistry, CreatesByNameAndListsNames) {
  auto& r = imgbake::ComponentRegistry<Widget>::instance();
  r.add("test-round", [] { return std::make_unique<Round>(); });
  EXPECT_TRUE(r.has("test-round"));
  EXPECT_EQ(r.create("test-round")->kind(), "round");
  EXPECT_EQ(r.create("test-none"), nullptr);
  const auto names = r.names();
  EXPECT_NE(std::find(names.begin(), names.end(), "test-round"), names.end());
}

TEST(ComponentRegistry, RefusesASecondComponentOfTheSameName) {
  auto& r = imgbake::ComponentRegistry<Widget>::instance();
  r.add("test-dup", [] { return std::make_unique<Round>(); });
  try {
    r.add("test-dup", [] { return std::make_unique<Square>(); });
    ADD_FAILURE() << "the duplicate was accepted";
  } catch (const std::logic_error& e) {
    EXPECT_STREQ(e.what(), "two components register the name 'test-dup'");
  }
  // The first registration stays.
  EXPECT_EQ(r.create("test-dup")->kind(), "round");
}

}  // namespace
