// What a failed `puppet apply` said, for the build's error message: the resources that failed
// ("Exec[migrate]", "File[/etc/app.conf]") and the other errors (a manifest that does not
// compile), read from puppet's "Error: " lines as they stream by.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace imgbake {

class PuppetErrors {
 public:
  // One line of puppet's output (either stream; colours are ignored).
  void add(std::string_view line);

  // The failing resources, in the order puppet reported them, each once.
  const std::vector<std::string>& resources() const { return resources_; }
  // The first "Error: " messages that name no resource.
  const std::vector<std::string>& messages() const { return messages_; }

  // "failed with exit status 4 (failures): resources Exec[a], File[/b] failed: …". Remote
  // staging paths in messages are replaced by the local paths they were uploaded from.
  std::string describe(int status, const std::map<std::string, std::string>& remote_to_local) const;

 private:
  std::vector<std::string> resources_;
  std::vector<std::string> resource_errors_;
  std::vector<std::string> messages_;
};

// "Exec[fail]" from "/Stage[main]/Main/Exec[fail]/returns: change from …"; "" when the text
// does not start with a resource path.
std::string puppet_resource_of(std::string_view error_text);

}  // namespace imgbake
