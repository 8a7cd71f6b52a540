// What push, pull and copy share: the report they print.
#pragma once

#include <string>

#include "imgbake/transfer.h"
#include "store_verbs.h"

namespace imgbake::cli {

// Prints a transfer's report (one JSON object with --output json) and returns the exit status.
int finish(const GlobalOptions& global, const std::string& verb, const std::string& what,
           const registry::TransferReport& r);

}  // namespace imgbake::cli
