// The registry client's authentication: WWW-Authenticate challenges (Basic, Bearer), bearer tokens
// per scope from the token service (with basic credentials or an identity token), renewed
// before they expire. Credentials and tokens never reach a log or an error message.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "client_impl.h"
#include "imgbake/provenance.h"
#include "imgbake/util.h"

namespace imgbake::registry {

namespace client_detail {

std::optional<Challenge> parse_challenge(std::string_view header) {
  Challenge c;
  size_t i = 0;
  while (i < header.size() && header[i] == ' ') ++i;
  size_t start = i;
  while (i < header.size() && header[i] != ' ') ++i;
  c.scheme = lower(header.substr(start, i - start));
  if (c.scheme.empty()) return std::nullopt;
  while (i < header.size()) {
    while (i < header.size() && (header[i] == ' ' || header[i] == ',')) ++i;
    size_t key_start = i;
    while (i < header.size() && header[i] != '=' && header[i] != ',') ++i;
    std::string key = lower(util::trim(header.substr(key_start, i - key_start)));
    if (i >= header.size() || header[i] != '=') continue;
    ++i;
    std::string value;
    if (i < header.size() && header[i] == '"') {
      for (++i; i < header.size() && header[i] != '"'; ++i) {
        if (header[i] == '\\' && i + 1 < header.size()) ++i;
        value += header[i];
      }
      ++i;
    } else {
      size_t value_start = i;
      while (i < header.size() && header[i] != ',') ++i;
      value = util::trim(header.substr(value_start, i - value_start));
    }
    if (!key.empty()) c.params[key] = value;
  }
  return c;
}

}  // namespace client_detail

std::string Client::Impl::basic_authorization() const {
  return "Authorization: Basic " + provenance::base64_encode(credentials->username + ":" + credentials->password);
}

std::string Client::Impl::authorization(const std::vector<std::string>& scopes, const CancelToken& cancel) {
  if (!challenge) return "";
  if (challenge->scheme == "basic") return credentials ? basic_authorization() : "";
  if (challenge->scheme != "bearer") return "";
  std::string key = util::join(scopes, " ");
  auto it = tokens.find(key);
  // A token about to expire is renewed before it is used: a refused PATCH would have sent a
  // whole chunk for nothing.
  if (it != tokens.end() && Clock::now() >= it->second.renew_after) {
    tokens.erase(it);
    it = tokens.end();
  }
  if (it == tokens.end()) it = tokens.emplace(key, fetch_token(scopes, cancel)).first;
  return it->second.value.empty() ? "" : "Authorization: Bearer " + it->second.value;
}

Client::Impl::Token Client::Impl::fetch_token(const std::vector<std::string>& scopes, const CancelToken& cancel) {
  std::string realm = challenge->params["realm"];
  if (realm.empty())
    throw RegistryError("registry " + registry + " asked for a bearer token but named no token service (realm)", 401,
                        "UNAUTHORIZED");
  std::string service = challenge->params["service"];
  Request req;
  req.registry_auth = false;
  req.cancel = &cancel;
  std::string form;
  if (credentials && !credentials->identity_token.empty()) {
    // An identity token is an OAuth2 refresh token: POST it to the realm.
    form = "grant_type=refresh_token&client_id=imgbake&service=" + util::percent_encode(service) +
           "&refresh_token=" + util::percent_encode(credentials->identity_token);
    for (const std::string& s : scopes) form += "&scope=" + util::percent_encode(s);
    req.method = "POST";
    req.url = realm;
    req.headers = {"Content-Type: application/x-www-form-urlencoded"};
    req.body = Body::of_bytes(form);
  } else {
    req.url = realm;
    if (!service.empty()) req.url = with_query(req.url, "service=" + util::percent_encode(service));
    for (const std::string& s : scopes) req.url = with_query(req.url, "scope=" + util::percent_encode(s));
    if (credentials) req.fixed_authorization = basic_authorization();
  }
  Response resp = send(req);
  Token token;
  if (resp.status == 200) {
    // The token specification's default lifetime is 60 s when the service names none.
    int64_t lifetime_seconds = 60;
    try {
      auto doc = nlohmann::json::parse(resp.body);
      token.value = doc.value("token", "");
      if (token.value.empty()) token.value = doc.value("access_token", "");
      if (auto e = doc.find("expires_in"); e != doc.end() && e->is_number_integer() && e->get<int64_t>() > 0)
        lifetime_seconds = e->get<int64_t>();
    } catch (const nlohmann::json::exception&) {
    }
    // Renewed a little early (clocks and the time the request takes), at most 30 s early.
    token.renew_after =
        Clock::now() + std::chrono::seconds(lifetime_seconds - std::min<int64_t>(30, lifetime_seconds / 4));
    if (token.value.empty())
      throw RegistryError("the token service of registry " + registry + " (" + http::authority_of(realm) +
                              ") answered without a token; check the registry's auth configuration",
                          200, "");
    return token;
  }
  auto [errors, code] = registry_errors(resp.body);
  throw RegistryError("the token service of registry " + registry + " (" + http::authority_of(realm) + path_of(realm) +
                          ") refused a token: HTTP " + std::to_string(resp.status) +
                          (errors.empty() ? "" : ": " + errors) + credentials_hint(resp.status),
                      static_cast<int>(resp.status), code);
}

std::string Client::Impl::credentials_hint(long status) const {
  if (status == 401)
    return credentials
               ? "; the credentials for " + registry + " were refused: log in again (imgbake login " + registry + ")"
               : "; " + registry + " needs credentials: imgbake login " + registry + " (or docker login)";
  if (status == 403) return "; the credentials lack permission for this repository";
  return "";
}

// Learns the challenge of a 401; false when there is nothing better to send.
bool Client::Impl::answer_challenge(const Response& resp, const Request& req, const CancelToken& cancel) {
  auto parsed = parse_challenge(resp.header("www-authenticate"));
  if (!parsed) return false;
  challenge = parsed;
  if (parsed->scheme == "basic") return credentials.has_value();
  if (parsed->scheme != "bearer") return false;
  tokens.erase(util::join(req.scopes, " "));  // expired or too narrow: ask again once
  authorization(req.scopes, cancel);
  return true;
}

}  // namespace imgbake::registry
