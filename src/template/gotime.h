// Go's reference-time layouts ("2006-01-02T15:04:05Z07:00") for the isotime
// template function, so that Packer templates format dates exactly as Packer does.
#pragma once

#include <chrono>
#include <string>
#include <string_view>

namespace imgbake::gotime {

// Formats `t` (in UTC, as Packer's isotime does) with a Go layout string.
std::string format(std::string_view layout, std::chrono::system_clock::time_point t);

// Packer's clean_resource_name as the googlecompute builder defines it (Packer 1.5-1.6; each
// builder registers its own variant): lower-cases (Unicode-aware, like Go's strings.ToLower) and
// replaces every byte outside [a-z0-9] with '-'. No truncation: a name longer than 63 characters
// stays long (the builder's image name validation rejects it later).
std::string clean_resource_name(std::string_view s);
// Packer's clean_ami_name (the amazon builders' clean_resource_name since Packer 1.5): replaces
// every byte outside [A-Za-z0-9()[\] ./'@_-] with '-'; keeps case, no truncation.
std::string clean_ami_name(std::string_view s);

}  // namespace imgbake::gotime
