// Name -> factory maps for builders, provisioners and post-processors. Each
// component's folder registers itself with one IMGBAKE_REGISTER_* line; adding one
// never edits a switch elsewhere. The maps are function-local statics, so they
// exist before the first registration whatever the static-initialisation order.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace imgbake {

template <class T>
class ComponentRegistry {
 public:
  using Factory = std::function<std::unique_ptr<T>()>;

  static ComponentRegistry& instance() {
    static ComponentRegistry registry;
    return registry;
  }

  // Two components of one kind with the same name are a programming error: the second would
  // silently replace the first. Thrown during static initialisation, it stops the program
  // with this message before main.
  bool add(const std::string& name, Factory f) {
    if (!factories_.emplace(name, std::move(f)).second)
      throw std::logic_error("two components register the name '" + name + "'");
    return true;
  }
  bool has(const std::string& name) const { return factories_.count(name) != 0; }
  std::unique_ptr<T> create(const std::string& name) const {
    auto it = factories_.find(name);
    return it == factories_.end() ? nullptr : it->second();
  }
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const auto& [n, f] : factories_) out.push_back(n);
    return out;
  }

 private:
  std::map<std::string, Factory> factories_;
};

}  // namespace imgbake

#define IMGBAKE_CONCAT_INNER(a, b) a##b
#define IMGBAKE_CONCAT(a, b) IMGBAKE_CONCAT_INNER(a, b)
#define IMGBAKE_REGISTER(BASE, NAME, CLASS)                                                                            \
  namespace {                                                                                                          \
  [[maybe_unused]] const bool IMGBAKE_CONCAT(imgbake_registered_,                                                      \
                                             __LINE__) = ::imgbake::ComponentRegistry<BASE>::instance().add(NAME, [] { \
    return std::make_unique<CLASS>();                                                                                  \
  });                                                                                                                  \
  }
