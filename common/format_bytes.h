// Byte counts for people: "512 B", "3.0 MiB", "7.3 TiB" (binary units, one decimal).
#pragma once

#include <fmt/format.h>

#include <cstdint>
#include <string>

namespace p2p {

inline std::string FormatBytes(double bytes) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  size_t unit = 0;
  while (bytes >= 1024 && unit + 1 < std::size(kUnits)) {
    bytes /= 1024;
    ++unit;
  }
  return unit == 0 ? fmt::format("{:.0f} B", bytes) : fmt::format("{:.1f} {}", bytes, kUnits[unit]);
}

}  // namespace p2p
