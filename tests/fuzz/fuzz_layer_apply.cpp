// libFuzzer target: a layer tar (any compression) applied onto an empty root, as a base image's
// layers are. Every input must be applied or refused with a BuildError; nothing may appear
// outside the root. tools/fuzz.sh runs this target inside bubblewrap with the host read-only and
// a private /tmp, so an escape it finds cannot touch the host.
#include <fcntl.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "imgbake/cancel.h"
#include "imgbake/error.h"
#include "imgbake/layer.h"

namespace fs = std::filesystem;

namespace {

// The work directory holds exactly `layer` and `root/`; anything else is an escape.
const fs::path& work_dir() {
  static const fs::path dir = [] {
    std::string tmpl = (fs::temp_directory_path() / "imgbake-fuzz-layer-XXXXXX").string();
    if (mkdtemp(tmpl.data()) == nullptr) abort();
    return fs::path(tmpl);
  }();
  return dir;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const imgbake::CancelToken cancel;
  const fs::path& work = work_dir();
  fs::path layer = work / "layer";
  fs::path root = work / "root";
  {
    int fd = open(layer.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || write(fd, data, size) != static_cast<ssize_t>(size) || close(fd) != 0) abort();
  }
  fs::create_directory(root);
  try {
    imgbake::layer::apply(layer, root, cancel);
  } catch (const imgbake::BuildError&) {
  }
  for (const auto& entry : fs::directory_iterator(work)) {
    if (entry.path() != layer && entry.path() != root) {
      fprintf(stderr, "the layer wrote %s, outside the root\n", entry.path().c_str());
      abort();
    }
  }
  std::error_code ec;
  fs::permissions(root, fs::perms::owner_all, fs::perm_options::add, ec);
  fs::remove_all(root, ec);
  if (ec) abort();
  return 0;
}
