// Lists a template's parts without evaluating them, like `packer inspect`; with
// --machine-readable the same facts as Packer's CSV lines
// (timestamp,target,type,data...) and with --output json one document.
#include <iostream>

#include "cli.h"
#include "imgbake/machine_readable.h"
#include "imgbake/template.h"

namespace imgbake::cli {

Action setup_inspect(CLI::App& sub, const GlobalOptions& global) {
  struct Opts {
    std::string path;
    bool machine_readable = false;
  };
  auto o = std::make_shared<Opts>();
  sub.add_flag("--machine-readable", o->machine_readable, "CSV lines as Packer's -machine-readable");
  sub.add_option("template", o->path, "The template")->required();
  return [o, &global] {
    Template t = load_template(o->path, VariableInputs{{}, {}, false});
    auto value_of = [](const VariableDef& v) { return v.sensitive ? std::string("<sensitive>") : v.default_value; };

    if (global.output == "json") {
      nlohmann::ordered_json j;
      j["description"] = t.description;
      j["variables"] = nlohmann::ordered_json::array();
      for (const auto& v : t.variables)
        j["variables"].push_back(
            {{"name", v.name}, {"required", v.required}, {"default", value_of(v)}, {"sensitive", v.sensitive}});
      j["builders"] = nlohmann::ordered_json::array();
      for (const auto& b : t.builders) j["builders"].push_back({{"name", b.name}, {"type", b.type}});
      j["provisioners"] = nlohmann::ordered_json::array();
      for (const auto& p : t.provisioners)
        j["provisioners"].push_back({{"type", p.type}, {"only", p.only}, {"except", p.except}});
      j["post_processors"] = nlohmann::ordered_json::array();
      for (const auto& chain : t.post_processors) {
        auto c = nlohmann::ordered_json::array();
        for (const auto& pp : chain) c.push_back({{"name", pp.name}, {"type", pp.type}});
        j["post_processors"].push_back(c);
      }
      std::cout << j.dump(2) << "\n";
      return 0;
    }

    if (o->machine_readable) {
      auto line = [](const std::string& type, const std::vector<std::string>& data) {
        std::cout << packer_line("", type, data);
      };
      if (!t.description.empty()) line("template-description", {t.description});
      for (const auto& v : t.variables) line("template-variable", {v.name, value_of(v), v.required ? "1" : "0"});
      for (const auto& b : t.builders) line("template-builder", {b.name, b.type});
      for (const auto& p : t.provisioners) line("template-provisioner", {p.type});
      for (size_t c = 0; c < t.post_processors.size(); ++c)
        for (const auto& pp : t.post_processors[c])
          line("template-post-processor", {std::to_string(c + 1), pp.name, pp.type});
      return 0;
    }

    if (!t.description.empty()) std::cout << "Description:\n\n  " << t.description << "\n\n";
    std::vector<const VariableDef*> required, optional;
    size_t width = 0;
    for (const auto& v : t.variables) {
      (v.required ? required : optional).push_back(&v);
      if (!v.required) width = std::max(width, v.name.size());
    }
    if (t.variables.empty()) std::cout << "Variables:\n\n  <No variables>\n\n";
    if (!required.empty()) {
      std::cout << "Required variables:\n\n";
      for (auto* v : required) std::cout << "  " << v->name << "\n";
      std::cout << "\n";
    }
    if (!optional.empty()) {
      std::cout << "Optional variables and their defaults:\n\n";
      for (auto* v : optional)
        std::cout << "  " << v->name << std::string(width - v->name.size(), ' ') << " = " << value_of(*v) << "\n";
      std::cout << "\n";
    }
    std::cout << "Builders:\n\n";
    if (t.builders.empty()) std::cout << "  <No builders>\n";
    for (const auto& b : t.builders)
      std::cout << "  " << b.name << (b.name == b.type ? "" : " (" + b.type + ")") << "\n";
    std::cout << "\nProvisioners:\n\n";
    if (t.provisioners.empty()) std::cout << "  <No provisioners>\n";
    for (const auto& p : t.provisioners) std::cout << "  " << p.type << "\n";
    std::cout << "\nPost-processors:\n\n";
    if (t.post_processors.empty()) std::cout << "  <No post-processors>\n";
    for (size_t c = 0; c < t.post_processors.size(); ++c) {
      std::cout << "  " << c + 1 << ": ";
      for (size_t j = 0; j < t.post_processors[c].size(); ++j)
        std::cout << (j ? " -> " : "") << t.post_processors[c][j].name;
      std::cout << "\n";
    }
    std::cout << "\nNote: build names that use variables or functions are shown as written;\n"
                 "they are rendered at build time.\n";
    return 0;
  };
}

}  // namespace imgbake::cli
