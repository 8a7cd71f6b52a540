// What a failed ansible-playbook run said, for the build's error message: the tasks that failed
// (with the host and ansible's "msg") and ansible's own "ERROR!" lines (a playbook that does not
// parse, a role not found), read from its output as it streams by. Shared by the ansible
// (on the host) and ansible-local (on the machine) provisioners.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace imgbake {

class AnsibleOutput {
 public:
  struct FailedTask {
    std::string task;  // "web : install nginx"
    std::string host;  // "127.0.0.1"
    std::string msg;   // ansible's "msg", or the rest of the line
  };

  // One line of ansible-playbook's output (either stream; colours are ignored).
  void add(std::string_view line);

  const std::vector<FailedTask>& failed() const { return failed_; }
  const std::vector<std::string>& errors() const { return errors_; }

  // "ansible-playbook site.yml failed with exit status 2: task 'web : install nginx' failed on
  // 127.0.0.1: No package matching 'x'".
  std::string describe(const std::string& what, int status) const;

 private:
  std::string task_;
  std::vector<FailedTask> failed_;
  std::vector<std::string> errors_;
};

}  // namespace imgbake
