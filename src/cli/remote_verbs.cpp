#include "remote_verbs.h"

#include <iostream>

#include "imgbake/publish.h"

namespace imgbake::cli {

Remote::Remote(const GlobalOptions& global, const std::string& host, const RegistryFlags& flags)
    : keys(trusted_keys(*open_store())), ui(make_ui(global, nullptr)), client(make_registry_client(host, flags, ui)) {}

registry::RecordAuthor author_with(const provenance::SigningKey& key) {
  registry::RecordAuthor a;
  a.key = &key;
  a.who = util::current_user() + "@" + util::hostname();
  return a;
}

void print_move(const registry::ChannelMove& m) {
  std::cout << m.repository << ":" << m.channel << " -> " << m.to_digest
            << (m.from_digest.empty() ? "" : " (was " + m.from_digest + ")") << "; record " << m.record_digest << "\n";
}

}  // namespace imgbake::cli
