// The in-toto Statement v1 with a SLSA provenance v1 predicate (https://slsa.dev/spec/v1.0/provenance).
#include <time.h>

#include <chrono>
#include <string>
#include <string_view>

#include "imgbake/provenance.h"

namespace imgbake::provenance {

namespace {

using nlohmann::json;

constexpr std::string_view kSha256Prefix = "sha256:";

// RFC 3339 in UTC with whole seconds, e.g. 2026-11-22T03:04:05Z, as SLSA's Timestamp asks.
std::string rfc3339_utc(std::chrono::system_clock::time_point t) {
  time_t secs = std::chrono::system_clock::to_time_t(std::chrono::floor<std::chrono::seconds>(t));
  struct tm tm {};
  gmtime_r(&secs, &tm);
  char buf[32];
  size_t n = strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return std::string(buf, n);
}

std::string strip_sha256(std::string_view digest) {
  if (digest.starts_with(kSha256Prefix)) digest.remove_prefix(kSha256Prefix.size());
  return std::string(digest);
}

bool is_sha256_digest(std::string_view s) {
  if (!s.starts_with(kSha256Prefix)) return false;
  s.remove_prefix(kSha256Prefix.size());
  if (s.size() != 64) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) return false;
  }
  return true;
}

json descriptor(const Subject& s) { return json{{"name", s.name}, {"digest", {{"sha256", s.sha256}}}}; }

// The remote as a URI for "git+<uri>". The statement is signed and published, so
// credentials in the remote (https://user:token@host/...) must not leak into it; and the
// scp-like form git@host:org/repo is not a URI, so it becomes ssh://git@host/org/repo.
std::string remote_uri(std::string remote) {
  if (remote.starts_with("git+")) remote.erase(0, 4);
  auto scheme_end = remote.find("://");
  if (scheme_end == std::string::npos) {
    if (remote.starts_with("/")) return "file://" + remote;
    auto colon = remote.find(':');
    auto slash = remote.find('/');
    if (colon != std::string::npos && colon > 0 && (slash == std::string::npos || colon < slash))
      return "ssh://" + remote.substr(0, colon) + "/" + remote.substr(colon + 1);
    return remote;
  }
  std::string scheme = remote.substr(0, scheme_end);
  auto authority_begin = scheme_end + 3;
  auto authority_end = remote.find_first_of("/?#", authority_begin);
  if (authority_end == std::string::npos) authority_end = remote.size();
  auto at = remote.rfind('@', authority_end - 1);
  if (at == std::string::npos || at < authority_begin) return remote;
  if (scheme == "http" || scheme == "https") {
    // Over http(s) a user name alone is commonly a token (https://TOKEN@github.com/...).
    remote.erase(authority_begin, at + 1 - authority_begin);
  } else {
    auto colon = remote.find(':', authority_begin);
    if (colon != std::string::npos && colon < at) remote.erase(colon, at - colon);  // keep the user, drop ":password"
  }
  return remote;
}

}  // namespace

json make_statement(const BuildFacts& facts) {
  json subjects = json::array();
  for (const auto& s : facts.subjects) subjects.push_back(descriptor(s));

  // Only what the user controls: the template, its variables (already redacted by the
  // caller: we must not add or drop anything) and the build selection.
  json external = {
      {"template", {{"path", facts.template_path}, {"digest", {{"sha256", facts.template_sha256}}}}},
      {"variables", json(facts.variables)},
  };
  if (!facts.only.empty()) external["only"] = facts.only;
  if (!facts.except.empty()) external["except"] = facts.except;

  json deps = json::array();
  if (facts.git_commit) {
    json repo = {
        {"uri", "git+" + (facts.git_remote ? remote_uri(*facts.git_remote) : std::string("file:"))},
        {"digest", {{"gitCommit", *facts.git_commit}}},
        {"annotations", {{"dirty", facts.git_dirty}}},
    };
    if (facts.git_branch) repo["annotations"]["branch"] = *facts.git_branch;
    deps.push_back(std::move(repo));
  }
  if (facts.parent) {
    // A digest pins the parent by content; a store ref names it (and the store resolves it).
    json parent = {{"name", "parent"}};
    if (is_sha256_digest(*facts.parent))
      parent["digest"] = {{"sha256", strip_sha256(*facts.parent)}};
    else
      parent["uri"] = *facts.parent;
    deps.push_back(std::move(parent));
  }
  for (const auto& input : facts.inputs) deps.push_back(descriptor(input));
  for (const auto& d : facts.builder_dependencies) deps.push_back(d);

  json build_definition = {
      {"buildType", "https://imgbake.dev/buildtypes/packer-json/v1"},
      {"externalParameters", std::move(external)},
      {"internalParameters", {{"builder_type", facts.builder_type}, {"build_name", facts.build_name}}},
  };
  if (!facts.builder_parameters.empty()) build_definition["internalParameters"]["builder"] = facts.builder_parameters;
  if (!deps.empty()) build_definition["resolvedDependencies"] = std::move(deps);

  // An unset time (the epoch) or run id is unknown, not 1970: leave it out.
  json metadata = json::object();
  if (!facts.invocation_id.empty()) metadata["invocationId"] = facts.invocation_id;
  if (facts.started != std::chrono::system_clock::time_point{}) metadata["startedOn"] = rfc3339_utc(facts.started);
  if (facts.finished != std::chrono::system_clock::time_point{}) metadata["finishedOn"] = rfc3339_utc(facts.finished);

  json byproducts = json::array();
  for (const auto& step : facts.steps) {
    byproducts.push_back({
        {"name", "step/" + step.name},
        {"digest", {{"sha256", strip_sha256(step.key)}}},
        {"annotations", {{"duration_s", step.duration_s}}},
    });
  }

  json run_details = {
      {"builder",
       {{"id", "https://imgbake.dev/imgbake@" + facts.imgbake_version},
        {"version", {{"imgbake", facts.imgbake_version}}}}},
  };
  if (!metadata.empty()) run_details["metadata"] = std::move(metadata);
  if (!byproducts.empty()) run_details["byproducts"] = std::move(byproducts);

  return json{
      {"_type", "https://in-toto.io/Statement/v1"},
      {"subject", std::move(subjects)},
      {"predicateType", "https://slsa.dev/provenance/v1"},
      {"predicate", {{"buildDefinition", std::move(build_definition)}, {"runDetails", std::move(run_details)}}},
  };
}

}  // namespace imgbake::provenance
