// Registry credentials, looked up the way docker does (config.json: credHelpers, credsStore, auths),
// then in imgbake's own auth.json written by `imgbake login`.
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "imgbake/oci_client.h"
#include "imgbake/process.h"
#include "imgbake/provenance.h"
#include "imgbake/util.h"

namespace imgbake::registry {

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

// A helper that asks for a keychain password may wait for a person; a minute is plenty otherwise.
constexpr auto kHelperTimeout = 60s;
// Docker Hub's credentials are stored under its historic index address.
constexpr const char* kDockerHubKey = "https://index.docker.io/v1/";

fs::path home_dir() {
  if (const char* h = std::getenv("HOME"); h && *h) return h;
  if (const passwd* pw = getpwuid(getuid()); pw && pw->pw_dir) return pw->pw_dir;
  return "/";
}

fs::path docker_config_path() {
  if (const char* d = std::getenv("DOCKER_CONFIG"); d && *d) return fs::path(d) / "config.json";
  return home_dir() / ".docker" / "config.json";
}

fs::path imgbake_auth_path() {
  if (const char* c = std::getenv("IMGBAKE_CONFIG_HOME"); c && *c) return fs::path(c) / "auth.json";
  if (const char* x = std::getenv("XDG_CONFIG_HOME"); x && *x) return fs::path(x) / "imgbake" / "auth.json";
  return home_dir() / ".config" / "imgbake" / "auth.json";
}

bool is_docker_hub(const std::string& registry) {
  return registry == "registry-1.docker.io" || registry == "docker.io" || registry == "index.docker.io";
}

// "https://ghcr.io/v2/" → "ghcr.io": config files carry keys in both spellings.
std::string host_of_key(std::string key) {
  if (size_t p = key.find("://"); p != std::string::npos) key = key.substr(p + 3);
  if (size_t p = key.find('/'); p != std::string::npos) key = key.substr(0, p);
  return key;
}

bool key_matches(const std::string& key, const std::string& registry) {
  std::string host = host_of_key(key);
  return host == registry || (is_docker_hub(registry) && is_docker_hub(host));
}

// The key a credential helper is asked about: what `docker login` stored it under.
std::string helper_server_url(const std::string& registry) {
  return is_docker_hub(registry) ? kDockerHubKey : registry;
}

std::optional<nlohmann::json> read_json_file(const fs::path& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return std::nullopt;
  try {
    return nlohmann::json::parse(util::read_file(path));
  } catch (const nlohmann::json::exception& e) {
    throw BuildError(path.string() + " is not valid JSON (" + e.what() + "); fix or remove it");
  } catch (const std::runtime_error& e) {
    throw BuildError(e.what());
  }
}

std::string string_field(const nlohmann::json& object, const char* name) {
  auto it = object.find(name);
  return it != object.end() && it->is_string() ? it->get<std::string>() : "";
}

// Runs `docker-credential-HELPER get` with the server URL on its standard input.
std::optional<Credentials> ask_helper(const std::string& helper, const std::string& registry, const fs::path& config) {
  std::string out, err;
  ProcessSpec spec;
  // run_process has no stdin: a shell pipe feeds it; the values are arguments, never script text.
  spec.argv = {
      "/bin/sh", "-c", "printf '%s' \"$1\" | exec \"docker-credential-$2\" get", "sh", helper_server_url(registry),
      helper};
  spec.timeout = kHelperTimeout;
  int status = run_process(
      spec, [&](std::string_view line) { out.append(line).append("\n"); },
      [&](std::string_view line) { err.append(line).append(" "); }, global_cancel());
  if (status == 127)
    throw BuildError(config.string() + " names the credential helper '" + helper + "', but docker-credential-" +
                     helper + " is not on PATH; install it or remove it from " + config.string());
  if (status != 0) {
    // Helpers say "credentials not found in native keychain" when they have nothing: anonymous.
    if (out.find("credentials not found") != std::string::npos ||
        err.find("credentials not found") != std::string::npos)
      return std::nullopt;
    throw BuildError("credential helper docker-credential-" + helper + " failed for " + registry + " (exit " +
                     std::to_string(status) + "): " + util::trim(err.empty() ? out : err));
  }
  nlohmann::json answer;
  try {
    answer = nlohmann::json::parse(out);
  } catch (const nlohmann::json::exception&) {
    throw BuildError("credential helper docker-credential-" + helper + " answered something that is not JSON for " +
                     registry + "; check the helper by running: echo " + helper_server_url(registry) +
                     " | docker-credential-" + helper + " get");
  }
  Credentials c;
  c.username = string_field(answer, "Username");
  std::string secret = string_field(answer, "Secret");
  if (c.username == "<token>") {  // docker's marker for an identity token
    c.username.clear();
    c.identity_token = secret;
  } else {
    c.password = secret;
  }
  if (c.username.empty() && c.password.empty() && c.identity_token.empty()) return std::nullopt;
  return c;
}

// auths[registry] of a docker-format file.
std::optional<Credentials> from_auths(const nlohmann::json& config, const std::string& registry, const fs::path& path) {
  auto auths = config.find("auths");
  if (auths == config.end() || !auths->is_object()) return std::nullopt;
  for (const auto& [key, entry] : auths->items()) {
    if (!key_matches(key, registry) || !entry.is_object()) continue;
    Credentials c;
    if (std::string encoded = string_field(entry, "auth"); !encoded.empty()) {
      std::string decoded;
      try {
        decoded = provenance::base64_decode(encoded);
      } catch (const std::exception&) {
        throw BuildError(path.string() + ": auths[\"" + key +
                         "\"].auth is not base64; log in again (imgbake login / docker login)");
      }
      size_t colon = decoded.find(':');
      if (colon == std::string::npos)
        throw BuildError(path.string() + ": auths[\"" + key +
                         "\"].auth is not USER:PASSWORD in base64; log in again (imgbake login / docker login)");
      c.username = decoded.substr(0, colon);
      c.password = decoded.substr(colon + 1);
    } else {
      c.username = string_field(entry, "username");
      c.password = string_field(entry, "password");
    }
    c.identity_token = string_field(entry, "identitytoken");
    if (!c.username.empty() || !c.password.empty() || !c.identity_token.empty()) return c;
  }
  return std::nullopt;
}

}  // namespace

std::optional<Credentials> find_credentials(const std::string& registry) {
  fs::path docker_path = docker_config_path();
  if (auto config = read_json_file(docker_path)) {
    if (auto helpers = config->find("credHelpers"); helpers != config->end() && helpers->is_object()) {
      for (const auto& [key, helper] : helpers->items())
        if (key_matches(key, registry) && helper.is_string() && !helper.get<std::string>().empty())
          return ask_helper(helper.get<std::string>(), registry, docker_path);
    }
    if (std::string store = string_field(*config, "credsStore"); !store.empty()) {
      if (auto c = ask_helper(store, registry, docker_path)) return c;
    }
    if (auto c = from_auths(*config, registry, docker_path)) return c;
  }
  fs::path own_path = imgbake_auth_path();
  if (auto config = read_json_file(own_path)) return from_auths(*config, registry, own_path);
  return std::nullopt;
}

void store_credentials(const std::string& registry, const Credentials& c) {
  fs::path path = imgbake_auth_path();
  nlohmann::json config = read_json_file(path).value_or(nlohmann::json::object());
  if (!config.is_object()) config = nlohmann::json::object();
  nlohmann::json& auths = config["auths"];
  if (!auths.is_object()) auths = nlohmann::json::object();
  nlohmann::json entry = nlohmann::json::object();
  if (!c.username.empty() || !c.password.empty())
    entry["auth"] = provenance::base64_encode(c.username + ":" + c.password);
  if (!c.identity_token.empty()) entry["identitytoken"] = c.identity_token;
  auths[registry] = entry;
  std::error_code ec;
  fs::create_directories(path.parent_path(), ec);
  if (ec)
    throw BuildError("cannot create " + path.parent_path().string() + " for the credentials: " + ec.message() +
                     "; set IMGBAKE_CONFIG_HOME to a writable directory");
  ::chmod(path.parent_path().c_str(), 0700);
  util::write_file_atomic(path, config.dump(2) + "\n", 0600);
}

bool remove_credentials(const std::string& registry) {
  fs::path path = imgbake_auth_path();
  std::optional<nlohmann::json> config = read_json_file(path);
  if (!config || !config->is_object() || !config->contains("auths") || !(*config)["auths"].is_object() ||
      !(*config)["auths"].contains(registry))
    return false;
  (*config)["auths"].erase(registry);
  util::write_file_atomic(path, config->dump(2) + "\n", 0600);
  return true;
}

}  // namespace imgbake::registry
