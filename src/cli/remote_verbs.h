// What the channel verbs (promote, rollback, history, revoke) share when they act on a registry
// repository instead of the local store.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "imgbake/oci_client.h"
#include "imgbake/records.h"
#include "store_verbs.h"

namespace imgbake::cli {

// What a verb on a registry repository needs: the keys the local store trusts, and a client.
struct Remote {
  Remote(const GlobalOptions& global, const std::string& host, const RegistryFlags& flags);
  Remote(const Remote&) = delete;
  Remote& operator=(const Remote&) = delete;
  std::vector<provenance::VerifyingKey> keys;
  Ui ui;  // the client reports through it
  std::unique_ptr<registry::Client> client;
};

// The author of a signed record: the signing key and user@host.
registry::RecordAuthor author_with(const provenance::SigningKey& key);

// "REPO:CHANNEL -> DIGEST (was DIGEST); record DIGEST".
void print_move(const registry::ChannelMove& m);

}  // namespace imgbake::cli
