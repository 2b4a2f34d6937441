// What the end-to-end peer tests share: where ranks listen in a test directory and the metrics
// records each rank wrote there (rank-R.jsonl). Header-only; for tests that link nlohmann_json.
#pragma once

#include <fmt/format.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tests/support/subprocess.h"

namespace p2p::test {

// ipc:// endpoints for ranks 0..size-1 in `dir`, comma-separated (--peers).
inline std::string IpcPeers(const TempDir& dir, int size) {
  std::string peers;
  for (int r = 0; r < size; ++r) {
    if (r > 0) peers += ',';
    peers += fmt::format("ipc://{}/rank-{}.sock", dir.path(), r);
  }
  return peers;
}

// Where rank `rank` writes its metrics (--metrics).
inline std::string MetricsFile(const TempDir& dir, int rank) {
  return dir.File(fmt::format("rank-{}.jsonl", rank));
}

// The metrics records rank `rank` wrote, one per epoch.
inline std::vector<nlohmann::json> Records(const TempDir& dir, int rank) {
  std::vector<nlohmann::json> out;
  for (const auto& line : ReadLines(MetricsFile(dir, rank))) {
    out.push_back(nlohmann::json::parse(line));
  }
  return out;
}

}  // namespace p2p::test
