// What the layer files share (private to the layers module): the whiteout names of the OCI
// image-spec, libarchive handles and messages, layer-path helpers and the thread's UTF-8 locale
// for libarchive's name conversion. scan.cpp reads a tree, diff.cpp plans a layer (diff.h),
// write.cpp writes it, apply.cpp unpacks one.
#pragma once

#include <archive.h>
#include <archive_entry.h>
#include <locale.h>

#include <cstddef>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>

namespace imgbake::layer::detail {

inline constexpr size_t kReadBytes = size_t{1} << 20;  // file reads
inline constexpr std::string_view kWhiteoutPrefix = ".wh.";
inline constexpr std::string_view kWhiteoutMetaPrefix = ".wh..wh.";
inline constexpr std::string_view kOpaqueMarker = ".wh..wh..opq";

inline std::string errno_text(int err) { return std::strerror(err); }

struct ArchiveWriteFree {
  void operator()(archive* a) const { archive_write_free(a); }
};
struct ArchiveReadFree {
  void operator()(archive* a) const { archive_read_free(a); }
};
struct EntryFree {
  void operator()(archive_entry* e) const { archive_entry_free(e); }
};
using WriteArchive = std::unique_ptr<archive, ArchiveWriteFree>;
using ReadArchive = std::unique_ptr<archive, ArchiveReadFree>;
using ArchiveEntry = std::unique_ptr<archive_entry, EntryFree>;

inline std::string archive_message(archive* a) {
  const char* msg = archive_error_string(a);
  return msg != nullptr ? msg : "unknown libarchive error";
}

inline std::string parent_of(std::string_view path) {
  auto slash = path.rfind('/');
  return slash == std::string_view::npos ? std::string() : std::string(path.substr(0, slash));
}
inline std::string_view name_of(std::string_view path) {
  auto slash = path.rfind('/');
  return slash == std::string_view::npos ? path : path.substr(slash + 1);
}
inline std::string child_of(const std::string& dir, std::string_view name) {
  return dir.empty() ? std::string(name) : dir + "/" + std::string(name);
}

// libarchive converts names between the locale's charset and UTF-8 (PAX path records). A fixed
// UTF-8 locale on this thread makes a non-ASCII name give the same bytes whatever LANG is; where
// C.UTF-8 is missing, the writer stores raw bytes instead (hdrcharset=BINARY).
class Utf8ThreadLocale {
 public:
  Utf8ThreadLocale() : locale_(newlocale(LC_CTYPE_MASK, "C.UTF-8", nullptr)) {
    if (locale_ != nullptr) previous_ = uselocale(locale_);
  }
  ~Utf8ThreadLocale() {
    if (locale_ != nullptr) {
      uselocale(previous_);
      freelocale(locale_);
    }
  }
  Utf8ThreadLocale(const Utf8ThreadLocale&) = delete;
  Utf8ThreadLocale& operator=(const Utf8ThreadLocale&) = delete;
  bool active() const { return locale_ != nullptr; }

 private:
  locale_t locale_;
  locale_t previous_ = nullptr;
};

}  // namespace imgbake::layer::detail
