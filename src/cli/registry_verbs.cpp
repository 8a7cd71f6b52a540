// push, pull, copy, login: images between the store and OCI registries.
#include <unistd.h>

#include <iostream>

#include "cli/store_verbs.h"
#include "imgbake/cancel.h"
#include "imgbake/oci_client.h"
#include "registry/transfer.h"

namespace imgbake::cli {
namespace {

struct RegistryFlags {
  std::vector<std::string> insecure;  // HOST:PORT served over plain HTTP
  bool tls_verify = true;
};

void add_registry_flags(CLI::App& sub, RegistryFlags& f) {
  sub.add_option("--insecure-registry", f.insecure,
                 "HOST:PORT of a registry spoken to over plain HTTP (e.g. a registry on 127.0.0.1); repeatable");
  sub.add_flag("!--no-tls-verify", f.tls_verify, "Do not verify the registry's TLS certificate");
}

std::unique_ptr<registry::Client> make_client(const std::string& host, const RegistryFlags& f, Ui& ui) {
  registry::ClientOptions o;
  o.plain_http = std::find(f.insecure.begin(), f.insecure.end(), host) != f.insecure.end();
  o.tls_verify = f.tls_verify;
  o.log = [&ui](std::string_view line) { ui.message("", line); };
  return std::make_unique<registry::Client>(host, o, registry::find_credentials(host));
}

nlohmann::json report_json(const registry::TransferReport& r) {
  return {{"digest", r.manifest_digest},      {"tags", r.tags},
          {"blobs_sent", r.blobs_sent},       {"blobs_skipped", r.blobs_skipped},
          {"blobs_mounted", r.blobs_mounted}, {"blob_bytes", r.blob_bytes},
          {"referrer", r.referrer_digest},    {"referrers_tag_schema", r.referrers_tag_schema},
          {"local_ref", r.local_ref}};
}

int finish(const GlobalOptions& global, const std::string& verb, const std::string& what,
           const registry::TransferReport& r) {
  if (global.output == "json") {
    nlohmann::json j = report_json(r);
    j["type"] = verb;
    j["ref"] = what;
    std::cout << j.dump() << "\n";
  } else {
    std::cout << what << " " << r.manifest_digest << ": " << r.blobs_sent << " blob(s) moved (" << r.blob_bytes
              << " bytes), " << r.blobs_skipped << " already there, " << r.blobs_mounted << " mounted"
              << (r.referrer_digest.empty() ? "" : "; provenance referrer " + r.referrer_digest) << "\n";
  }
  return 0;
}

}  // namespace

Action setup_push(CLI::App& sub, const GlobalOptions& global) {
  struct Opts {
    std::string ref, dest;
    std::vector<std::string> tags;
    RegistryFlags reg;
  };
  auto o = std::make_shared<Opts>();
  sub.add_option("ref", o->ref, "The image in the store (NAME, NAME:VERSION, NAME:CHANNEL, NAME@DIGEST)")->required();
  sub.add_option("dest", o->dest, "REGISTRY/REPOSITORY[:TAG] (default tag: the image's version)")->required();
  sub.add_option("--tag", o->tags, "Another tag to set; repeatable");
  add_registry_flags(sub, o->reg);
  return [o, &global] {
    auto st = open_store();
    store::ImageRecord img = st->resolve(o->ref);
    registry::Reference dest = registry::Reference::parse(o->dest);
    if (!dest.digest.empty()) throw UsageError("push: the destination takes a tag, not a digest");
    Ui ui = make_ui(global, nullptr);
    auto client = make_client(dest.registry, o->reg, ui);
    auto rep = registry::push_image(
        *st, img, *client, dest, o->tags, [&](std::string_view l) { ui.message("", l); }, global_cancel());
    return finish(global, "push", dest.registry + "/" + dest.repository, rep);
  };
}

Action setup_pull(CLI::App& sub, const GlobalOptions& global) {
  struct Opts {
    std::string src, name, version;
    RegistryFlags reg;
  };
  auto o = std::make_shared<Opts>();
  sub.add_option("src", o->src, "REGISTRY/REPOSITORY:TAG or REGISTRY/REPOSITORY@DIGEST")->required();
  sub.add_option("--name", o->name, "The image's name in the store (default: its own, else the repository's)");
  sub.add_option("--version", o->version, "The version to record (default: the image's own)");
  add_registry_flags(sub, o->reg);
  return [o, &global] {
    auto st = open_store();
    registry::Reference src = registry::Reference::parse(o->src);
    Ui ui = make_ui(global, nullptr);
    auto client = make_client(src.registry, o->reg, ui);
    auto rep = registry::pull_image(
        *st, *client, src, o->name, o->version, [&](std::string_view l) { ui.message("", l); }, global_cancel());
    return finish(global, "pull", rep.local_ref, rep);
  };
}

Action setup_copy(CLI::App& sub, const GlobalOptions& global) {
  struct Opts {
    std::string src, dest;
    RegistryFlags reg;
  };
  auto o = std::make_shared<Opts>();
  sub.add_option("src", o->src, "REGISTRY/REPOSITORY:TAG or @DIGEST")->required();
  sub.add_option("dest", o->dest, "REGISTRY/REPOSITORY[:TAG]")->required();
  add_registry_flags(sub, o->reg);
  return [o, &global] {
    registry::Reference src = registry::Reference::parse(o->src);
    registry::Reference dest = registry::Reference::parse(o->dest);
    Ui ui = make_ui(global, nullptr);
    auto from = make_client(src.registry, o->reg, ui);
    auto to = make_client(dest.registry, o->reg, ui);
    const char* tmpdir = std::getenv("TMPDIR");
    auto rep = registry::copy_image(
        *from, src, *to, dest, tmpdir && *tmpdir ? tmpdir : "/tmp", [&](std::string_view l) { ui.message("", l); },
        global_cancel());
    return finish(global, "copy", dest.registry + "/" + dest.repository, rep);
  };
}

Action setup_login(CLI::App& sub, const GlobalOptions&) {
  struct Opts {
    std::string registry, username, password;
    bool password_stdin = false;
    RegistryFlags reg;
  };
  auto o = std::make_shared<Opts>();
  sub.add_option("registry", o->registry, "HOST[:PORT] of the registry")->required();
  sub.add_option("-u,--username", o->username, "User name")->required();
  sub.add_option("-p,--password", o->password, "Password (prefer --password-stdin: a flag shows in ps)");
  sub.add_flag("--password-stdin", o->password_stdin, "Read the password from standard input");
  add_registry_flags(sub, o->reg);
  return [o] {
    std::string password = o->password;
    if (o->password_stdin) {
      std::getline(std::cin, password);
    }
    if (password.empty()) throw UsageError("login: give the password with --password-stdin (or -p)");
    registry::Credentials c;
    c.username = o->username;
    c.password = password;
    registry::ClientOptions opts;
    opts.plain_http = std::find(o->reg.insecure.begin(), o->reg.insecure.end(), o->registry) != o->reg.insecure.end();
    opts.tls_verify = o->reg.tls_verify;
    registry::Client client(o->registry, opts, c);
    client.ping();  // the credentials work before they are stored
    registry::store_credentials(o->registry, c);
    std::cout << "Login Succeeded: credentials for " << o->registry << " stored\n";
    return 0;
  };
}

}  // namespace imgbake::cli
