// What the record model shares with the remote channel operations (private to the registry
// module): the record actions, reading a JSON string field, and checking a DSSE signature
// against the trusted keys.
#pragma once

#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "imgbake/provenance.h"

namespace imgbake::registry::detail {

// The actions a record can have: promote, rollback, revoke.
const std::set<std::string>& record_actions();

// j[key] when it is a string, else "".
std::string json_string(const nlohmann::json& j, const char* key);

// provenance::verify_envelope with the trusted keys (the first that verifies, else the most
// telling failure, as verify_image reports it); with no key, the error says how to get one.
provenance::EnvelopeCheck check_signature(const nlohmann::json& envelope,
                                          const std::vector<provenance::VerifyingKey>& keys);

}  // namespace imgbake::registry::detail
