// Starting real `p2ptrain peer` processes the way the end-to-end tests do: rank r's command line
// (common flags plus the per-rank ones: size, rank, one thread, no progress bar, metrics in the
// test directory, rank r's identity) and a whole run waited for. Header-only.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "tests/support/peer_files.h"
#include "tests/support/run_keys.h"
#include "tests/support/subprocess.h"

namespace p2p::test {

// Rank `rank`'s `p2ptrain peer` command line: `common` flags plus the per-rank ones. Peers
// authenticate (rank `rank`'s key of a `size`-rank run), as by default.
inline std::vector<std::string> PeerArgs(const std::vector<std::string>& common, int size, int rank,
                                         const TempDir& dir) {
  std::vector<std::string> argv = {P2ptrainBin(), "peer",
                                   "--size",      std::to_string(size),
                                   "--rank",      std::to_string(rank),
                                   "--threads",   "1",
                                   "--progress",  "off",
                                   "--metrics",   MetricsFile(dir, rank)};
  argv.insert(argv.end(), common.begin(), common.end());
  const auto identity = IdentityFlags(size, rank);
  argv.insert(argv.end(), identity.begin(), identity.end());
  return argv;
}

// The common flags of a small logreg run on synthetic data whose peers find each other through
// the rendezvous on 127.0.0.1:`port` and listen on ephemeral ports.
inline std::vector<std::string> RendezvousRunFlags(int port, const std::string& run_id,
                                                   int peer_timeout_s) {
  return {"--dataset",
          "synthetic",
          "--synthetic-train",
          "2000",
          "--model",
          "logreg",
          "--epochs",
          "1",
          "--rendezvous",
          "127.0.0.1:" + std::to_string(port),
          "--bind",
          "tcp://127.0.0.1:0",
          "--advertise",
          "127.0.0.1",
          "--run-id",
          run_id,
          "--peer-timeout",
          std::to_string(peer_timeout_s)};
}

// Starts `size` peers and waits for all of them (each at most `timeout`).
inline std::vector<ProcessResult> RunPeers(
    const std::vector<std::string>& common, int size, const TempDir& dir,
    std::chrono::milliseconds timeout = std::chrono::minutes(5)) {
  std::vector<std::unique_ptr<Child>> children;
  for (int r = 0; r < size; ++r) {
    children.push_back(std::make_unique<Child>(PeerArgs(common, size, r, dir)));
  }
  std::vector<ProcessResult> results;
  for (auto& c : children) results.push_back(c->Wait(timeout));
  return results;
}

}  // namespace p2p::test
