// push, pull, copy, login: images between the store and OCI registries.
#include <unistd.h>

#include <iostream>

#include "imgbake/cancel.h"
#include "imgbake/oci_client.h"
#include "imgbake/progress.h"
#include "imgbake/publish.h"
#include "imgbake/transfer.h"
#include "store_verbs.h"

namespace imgbake::cli {

void add_registry_flags(CLI::App& sub, RegistryFlags& f, bool signs_records) {
  sub.add_option("--insecure-registry", f.insecure,
                 "HOST:PORT of a registry spoken to over plain HTTP (e.g. a registry on 127.0.0.1); repeatable");
  sub.add_flag("!--no-tls-verify", f.tls_verify, "Do not verify the registry's TLS certificate");
  if (signs_records)
    sub.add_option("--signing-key", f.signing_key,
                   "Private key (PEM) the registry records are signed with (default: $IMGBAKE_SIGNING_KEY, else "
                   "the default key)");
}

std::unique_ptr<registry::Client> make_registry_client(const std::string& host, const RegistryFlags& f, Ui& ui,
                                                       bool progress) {
  registry::ClientOptions o;
  o.plain_http = std::find(f.insecure.begin(), f.insecure.end(), host) != f.insecure.end();
  o.tls_verify = f.tls_verify;
  o.log = [&ui](std::string_view line) { ui.message("", line); };
  // A line per blob on a terminal; progress events with --output json; nothing otherwise.
  if (!progress) {
    // Verbs that print one JSON document (history, verify) move only small blobs.
  } else if (ui.mode() == OutputMode::Json) {
    o.progress = json_progress_events([](const std::string& l) { std::cout << l << '\n' << std::flush; });
  } else if (BlobProgressRenderer::is_terminal(stderr)) {
    BlobProgressRenderer::Options opts;
    opts.terminal = true;
    static BlobProgressRenderer renderer(stderr, opts);
    o.progress = renderer.callback();
  }
  return std::make_unique<registry::Client>(host, o, registry::find_credentials(host));
}

provenance::SigningKey record_signing_key(const RegistryFlags& f) {
  std::string path = f.signing_key;
  if (const char* e = std::getenv("IMGBAKE_SIGNING_KEY"); path.empty() && e && *e) path = e;
  bool created = false;
  provenance::SigningKey key = load_signing_key(path, created);
  if (created) std::cerr << "imgbake: made a new signing key " << default_signing_key_path().string() << "\n";
  return key;
}

namespace {

nlohmann::json report_json(const registry::TransferReport& r) {
  return {{"digest", r.manifest_digest},      {"tags", r.tags},
          {"blobs_sent", r.blobs_sent},       {"blobs_skipped", r.blobs_skipped},
          {"blobs_mounted", r.blobs_mounted}, {"blob_bytes", r.blob_bytes},
          {"referrer", r.referrer_digest},    {"referrers_tag_schema", r.referrers_tag_schema},
          {"local_ref", r.local_ref},         {"blobs_staged", r.blobs_staged},
          {"records", r.record_digests},      {"revocation", r.revocation}};
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
              << (r.referrer_digest.empty() ? "" : "; provenance referrer " + r.referrer_digest)
              << (r.record_digests.empty() ? "" : "; " + std::to_string(r.record_digests.size()) + " record(s)")
              << (r.revocation.empty() ? "" : "; REVOKED (record " + r.revocation + ")") << "\n";
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
  add_registry_flags(sub, o->reg, true);
  return [o, &global] {
    auto st = open_store();
    store::ImageRecord img = st->resolve(o->ref);
    registry::Reference dest = registry::Reference::parse(o->dest);
    if (!dest.digest.empty()) throw UsageError("push: the destination takes a tag, not a digest");
    Ui ui = make_ui(global, nullptr);
    auto client = make_registry_client(dest.registry, o->reg, ui, true);
    // The image's local promotions, rollbacks and revocations go along as signed records.
    std::optional<provenance::SigningKey> key;
    for (const auto& e : st->history(img.name))
      if ((e.action == "promote" || e.action == "rollback" || e.action == "revoke") && e.to_ref == img.ref()) {
        key = record_signing_key(o->reg);
        break;
      }
    auto rep = registry::push_image(
        *st, img, *client, dest, o->tags, key ? &*key : nullptr, [&](std::string_view l) { ui.message("", l); },
        global_cancel());
    return finish(global, "push", dest.registry + "/" + dest.repository, rep);
  };
}

Action setup_pull(CLI::App& sub, const GlobalOptions& global) {
  struct Opts {
    std::string src, name, version;
    bool allow_revoked = false;
    RegistryFlags reg;
  };
  auto o = std::make_shared<Opts>();
  sub.add_option("src", o->src, "REGISTRY/REPOSITORY:TAG or REGISTRY/REPOSITORY@DIGEST")->required();
  sub.add_option("--name", o->name, "The image's name in the store (default: its own, else the repository's)");
  sub.add_option("--version", o->version, "The version to record (default: the image's own)");
  sub.add_flag("--allow-revoked", o->allow_revoked,
               "Pull an image that has a trusted revocation record (it is revoked in the store too)");
  add_registry_flags(sub, o->reg);
  return [o, &global] {
    auto st = open_store();
    registry::Reference src = registry::Reference::parse(o->src);
    Ui ui = make_ui(global, nullptr);
    auto client = make_registry_client(src.registry, o->reg, ui, true);
    auto keys = trusted_keys(*st);
    registry::RevocationPolicy policy{&keys, o->allow_revoked};
    auto rep = registry::pull_image(
        *st, *client, src, o->name, o->version, policy, [&](std::string_view l) { ui.message("", l); },
        global_cancel());
    return finish(global, "pull", rep.local_ref, rep);
  };
}

Action setup_copy(CLI::App& sub, const GlobalOptions& global) {
  struct Opts {
    std::string src, dest;
    bool allow_revoked = false;
    RegistryFlags reg;
  };
  auto o = std::make_shared<Opts>();
  sub.add_option("src", o->src, "REGISTRY/REPOSITORY:TAG or @DIGEST")->required();
  sub.add_option("dest", o->dest, "REGISTRY/REPOSITORY[:TAG]")->required();
  sub.add_flag("--allow-revoked", o->allow_revoked, "Copy an image that has a trusted revocation record");
  add_registry_flags(sub, o->reg);
  return [o, &global] {
    registry::Reference src = registry::Reference::parse(o->src);
    registry::Reference dest = registry::Reference::parse(o->dest);
    Ui ui = make_ui(global, nullptr);
    auto from = make_registry_client(src.registry, o->reg, ui, true);
    auto to = make_registry_client(dest.registry, o->reg, ui, true);
    // The trusted keys are the store's (its trusted/ directory and the default key).
    auto keys = trusted_keys(*open_store());
    registry::RevocationPolicy policy{&keys, o->allow_revoked};
    const char* tmpdir = std::getenv("TMPDIR");
    auto rep = registry::copy_image(
        *from, src, *to, dest, tmpdir && *tmpdir ? tmpdir : "/tmp", policy,
        [&](std::string_view l) { ui.message("", l); }, global_cancel());
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
