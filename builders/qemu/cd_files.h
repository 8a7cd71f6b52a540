// Packer's cd_files / cd_content / cd_label: an ISO 9660 image (Joliet + Rock Ridge) attached
// to the VM as a CD, e.g. a cloud-init NoCloud seed ("cidata") or a Windows answer file.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "imgbake/cancel.h"

namespace imgbake::qemu {

struct CdSpec {
  // Paths or globs. A file goes to the CD's root under its base name; a directory goes to the
  // root under its own name with its contents (their relative paths kept), or, when written
  // with a trailing '/', only its contents go to the root. Symlinks are followed. Later
  // entries overwrite earlier ones of the same name.
  std::vector<std::string> files;
  std::map<std::string, std::string> content;  // path inside the CD -> body (e.g. "user-data"); wins over files
  std::string label;                           // volume id, e.g. "cidata"; empty: "packer", as in Packer
};

// The tools tried, in order, on PATH.
inline const std::vector<std::string> kCdTools = {"xorriso", "genisoimage", "mkisofs"};

// Stages the files in a temp dir next to `out_iso`, runs the first tool of kCdTools found on
// PATH, removes the staging dir. Throws BuildError when a file or glob matches nothing, a
// cd_content path leaves the CD ("..") or the label is too long, naming the tools tried when
// none is installed, or with the tool's stderr when it fails; Cancelled when cancelled. No
// partial `out_iso` is left behind on failure.
void make_cd(const CdSpec& spec, const std::string& out_iso, const CancelToken& cancel);

}  // namespace imgbake::qemu
