// Image references as docker and skopeo spell them: [docker://][REGISTRY/]REPOSITORY[:TAG][@DIGEST].
#include <algorithm>
#include <cctype>
#include <string>
#include <string_view>

#include "imgbake/oci_client.h"
#include "imgbake/util.h"

namespace imgbake::registry {

namespace {

constexpr std::string_view kDockerHub = "registry-1.docker.io";
constexpr size_t kMaxTagLength = 128;

bool is_lower_alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }
bool is_hex(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

// A path component of the distribution grammar: [a-z0-9]+ joined by ".", "_", "__" or "-"+.
bool is_valid_component(std::string_view c) {
  if (c.empty() || !is_lower_alnum(c.front()) || !is_lower_alnum(c.back())) return false;
  for (size_t i = 0; i < c.size(); ++i) {
    if (is_lower_alnum(c[i])) continue;
    if (c[i] == '-') continue;  // runs of dashes are allowed
    if (c[i] == '.' && is_lower_alnum(c[i + 1])) continue;
    if (c[i] == '_' && (is_lower_alnum(c[i + 1]) || (c[i + 1] == '_' && is_lower_alnum(c[i + 2])))) {
      if (c[i + 1] == '_') ++i;
      continue;
    }
    return false;
  }
  return true;
}

bool is_valid_tag(std::string_view t) {
  if (t.empty() || t.size() > kMaxTagLength) return false;
  auto word = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; };
  if (!word(t.front())) return false;
  return std::all_of(t.begin(), t.end(), [&](char c) { return word(c) || c == '.' || c == '-'; });
}

bool is_valid_digest(std::string_view d) {
  if (d.starts_with("sha256:")) return d.size() == 7 + 64 && is_hex(d.substr(7));
  if (d.starts_with("sha512:")) return d.size() == 7 + 128 && is_hex(d.substr(7));
  return false;
}

// The first component names a registry when it looks like a host: it has a dot or a port, or it
// is "localhost" (docker's rule; "team/app" is a Docker Hub repository).
bool looks_like_host(std::string_view first) {
  return first.find_first_of(".:") != std::string_view::npos || first == "localhost" ||
         std::any_of(first.begin(), first.end(), [](char c) { return std::isupper(static_cast<unsigned char>(c)); });
}

}  // namespace

Reference Reference::parse(const std::string& text) {
  const std::string shown = "image reference '" + text + "'";
  std::string_view rest = text;
  if (rest.starts_with("docker://")) rest.remove_prefix(9);
  if (rest.empty()) throw UsageError(shown + " is empty; write REGISTRY/REPOSITORY[:TAG][@sha256:DIGEST]");

  Reference ref;
  if (size_t at = rest.find('@'); at != std::string_view::npos) {
    ref.digest = std::string(rest.substr(at + 1));
    rest = rest.substr(0, at);
    if (!is_valid_digest(ref.digest))
      throw UsageError(shown + ": '" + ref.digest +
                       "' is not a digest; write sha256: followed by 64 lower-case hex digits");
  }
  size_t last_slash = rest.rfind('/');
  size_t colon = rest.rfind(':');
  if (colon != std::string_view::npos && (last_slash == std::string_view::npos || colon > last_slash)) {
    ref.tag = std::string(rest.substr(colon + 1));
    rest = rest.substr(0, colon);
    if (!is_valid_tag(ref.tag))
      throw UsageError(shown + ": tag '" + ref.tag +
                       "' is not valid; a tag has up to 128 letters, digits, '_', '.' and '-' and does not start "
                       "with '.' or '-'");
  }

  size_t first_slash = rest.find('/');
  if (first_slash != std::string_view::npos && looks_like_host(rest.substr(0, first_slash))) {
    ref.registry = std::string(rest.substr(0, first_slash));
    ref.repository = std::string(rest.substr(first_slash + 1));
  } else {
    ref.registry = std::string(kDockerHub);
    ref.repository = std::string(rest);
  }
  if (ref.registry == "docker.io" || ref.registry == "index.docker.io") ref.registry = std::string(kDockerHub);
  if (ref.registry == kDockerHub && ref.repository.find('/') == std::string::npos)
    ref.repository = "library/" + ref.repository;

  if (ref.repository.empty()) throw UsageError(shown + " names no repository after the registry");
  for (const std::string& component : util::split(ref.repository, '/')) {
    if (!is_valid_component(component))
      throw UsageError(shown + ": repository '" + ref.repository + "' has the invalid part '" + component +
                       "'; parts are lower-case letters and digits, separated by '.', '_', '__' or '-'");
  }
  return ref;
}

std::string Reference::str() const {
  std::string out = registry + "/" + repository;
  if (!tag.empty()) out += ":" + tag;
  if (!digest.empty()) out += "@" + digest;
  return out;
}

}  // namespace imgbake::registry
