// The flags and the client every verb that talks to a registry shares.
#include <unistd.h>

#include <algorithm>
#include <iostream>

#include "imgbake/oci_client.h"
#include "imgbake/progress.h"
#include "imgbake/publish.h"
#include "imgbake/registries_conf.h"
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

registry::ClientOptions client_options(const std::string& host, const RegistryFlags& f) {
  // --insecure-registry, or registries.conf (podman's and skopeo's file, or imgbake's own).
  registry::RegistrySettings conf = registry::RegistriesConf::load().settings_for(host);
  if (conf.blocked) throw BuildError("registry " + host + " is blocked by " + conf.source + " (registries.conf)");
  registry::ClientOptions o;
  o.plain_http = conf.insecure || std::find(f.insecure.begin(), f.insecure.end(), host) != f.insecure.end();
  o.tls_verify = f.tls_verify && !conf.insecure;
  return o;
}

std::unique_ptr<registry::Client> make_registry_client(const std::string& host, const RegistryFlags& f, Ui& ui,
                                                       bool progress) {
  registry::ClientOptions o = client_options(host, f);
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

}  // namespace imgbake::cli
