#include <iostream>

#include "imgbake/error.h"
#include "store_verbs.h"

namespace imgbake::cli {

Action setup_label(CLI::App& sub, const GlobalOptions&) {
  struct Opts {
    std::string ref;
    std::vector<std::string> pairs;
  };
  auto o = std::make_shared<Opts>();
  sub.add_option("ref", o->ref, "The image")->required();
  sub.add_option("labels", o->pairs, "key=value (one or more)")->required();
  return [o] {
    std::map<std::string, std::string> labels;
    for (const auto& kv : o->pairs) {
      size_t eq = kv.find('=');
      if (eq == std::string::npos || eq == 0) throw UsageError("label '" + kv + "': expected key=value");
      labels[kv.substr(0, eq)] = kv.substr(eq + 1);
    }
    auto st = open_store();
    st->label(o->ref, labels);
    std::cout << "labelled " << st->resolve(o->ref).ref() << "\n";
    return 0;
  };
}

}  // namespace imgbake::cli
