// Reading Packer's HCL2 templates (`*.pkr.hcl`) into the template model (private to the
// template module). One HclLoad holds what the files say and the evaluation context; its
// parts live in hcl_load.cpp (files, the top-level blocks, `packer`, `imgbake`),
// hcl_variables.cpp (variables, their values, locals) and hcl_builds.cpp (sources, builds,
// provisioners, post-processors, values lowered to JSON).
#pragma once

#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "imgbake/hcl_dynblock.h"
#include "imgbake/hcl_eval.h"
#include "imgbake/hcl_parse.h"
#include "imgbake/template.h"

namespace imgbake::hcl_template {

// A block and the file it was read from.
struct BlockRef {
  const hcl::Block* block = nullptr;
  const hcl::File* file = nullptr;
};

struct AttributeRef {
  const hcl::Attribute* attr = nullptr;
  const hcl::File* file = nullptr;
};

class HclLoad {
 public:
  HclLoad(Template& t, Diagnostics& d, const VariableInputs& in) : t_(t), d_(d), in_(in) {}

  // Reads `path` (a file or a directory) and fills the template.
  void run(const std::string& path);

  // An error (or warning) at `r` in `file`, printed with the source line and a caret.
  void error(const hcl::File& file, hcl::Range r, const std::string& summary, const std::string& detail = {},
             bool warning = false);
  void report(const hcl::Diagnostics& ds);
  // The blocks of `body` with its dynamic blocks expanded (`labels_of`: the block types
  // expected there and their label counts); problems reported.
  std::vector<hcl::BlockView> blocks_of(const hcl::Body& body, const hcl::File& file, const hcl::EvalContext& ctx,
                                        const hcl::LabelCount& labels_of);
  const std::string& source_of(const std::string& filename) const;
  hcl::Value eval(const hcl::Expr& e, const hcl::File& file, const hcl::EvalContext& ctx);

  // Checks a body against the attributes and block types it may hold; the others are errors.
  void check_body(const hcl::Body& body, const hcl::File& file, const std::string& what,
                  const std::vector<std::string>& attributes, const std::vector<std::string>& blocks);

  void data_sources();
  // hcl_variables.cpp
  void variables();
  void locals();
  // hcl_builds.cpp
  void builds();
  // One source of a build block: its provisioners and post-processors, lowered for it.
  struct SourceUse;
  void lower_build_parts(const BlockRef& build, const SourceUse& use, const std::vector<std::string>& build_sources);
  std::optional<ProvisionerDef> provisioner(const hcl::BlockView& b, const hcl::File& f, const hcl::EvalContext& ctx,
                                            const SourceUse& use, const std::vector<std::string>& build_sources);
  std::optional<PostProcessorDef> post_processor(const hcl::BlockView& b, const hcl::File& f,
                                                 const hcl::EvalContext& ctx, const SourceUse& use,
                                                 const std::vector<std::string>& build_sources);
  // only/except of a provisioner or post-processor: whether it applies to `use`.
  bool applies(const hcl::Body& body, const hcl::File& f, const hcl::EvalContext& ctx, const SourceUse& use,
               const std::vector<std::string>& build_sources);
  // A body's attributes (evaluated) and blocks (as objects, or arrays of objects when
  // repeated; dynamic blocks expanded) as a JSON object; `skip` names attributes/blocks
  // handled by the caller.
  json::Value lower_body(const hcl::Body& body, const hcl::File& file, const hcl::EvalContext& ctx,
                         const std::set<std::string>& skip);
  json::Value lower_value(const hcl::Value& v, const hcl::File& file, hcl::Range where);

  Template& t_;
  Diagnostics& d_;
  const VariableInputs& in_;
  std::vector<std::unique_ptr<hcl::File>> files_;
  std::map<std::string, std::vector<BlockRef>> blocks_;  // by block type, in load order
  hcl::EvalContext ctx_;                                 // var, local, path and the functions
  bool mute_ = false;            // diagnostics are dropped (a build's second source: reported once)
  bool quiet_ = false;           // diagnostics are dropped (inspect: values are not checked)
  bool values_missing_ = false;  // a variable has no value (already reported): no follow-on errors
  std::string loaded_dir_;       // the directory given (empty when a file was)
};

// The files of `dir` whose names end with `suffix`, in name order (as Packer loads them).
std::vector<std::string> files_with_suffix(const std::string& dir, std::string_view suffix);

// How a value is shown as text: strings as they are, other values as JSON.
std::string display(const hcl::Value& v);
// Every string inside `v` (what a sensitive value's masking must cover).
void string_leaves(const hcl::Value& v, std::vector<std::string>& out);

// Packer's functions (hcl_functions*.cpp): HCL's standard ones plus Packer's set;
// `base_dir` is where relative paths of file(), fileset() and templatefile() start.
std::map<std::string, hcl::Function> packer_functions(const std::string& base_dir);
// Standard base64 (Go's base64.StdEncoding); nullopt when `in` is not.
std::optional<std::string> base64_decode(std::string_view in);
// cidr*, uuidv5, bcrypt, urlencode, rsadecrypt, and vault/consul_key/aws_secretsmanager as "not
// available" (hcl_functions_net.cpp).
void add_network_and_id_functions(std::map<std::string, hcl::Function>& f);

}  // namespace imgbake::hcl_template
