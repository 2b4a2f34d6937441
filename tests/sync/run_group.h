// Runs one function per rank on W threads over an in-process transport group.
#pragma once

#include <thread>
#include <vector>

#include "broker/inproc_transport.h"
#include "common/status.h"
#include "sync/mailbox.h"

namespace p2p::sync {

// Runs `body(rank, mailbox)` on W threads; returns each rank's Status.
template <typename Body>
std::vector<Status> RunGroup(int w, Body body) {
  auto group = broker::MakeInProcGroup(w);
  std::vector<Status> results(w);
  std::vector<std::thread> threads;
  for (int r = 0; r < w; ++r) {
    threads.emplace_back([&, r] {
      Mailbox mailbox(*group[r], {.run_id = "test-run"});
      results[r] = body(r, mailbox);
    });
  }
  for (auto& t : threads) t.join();
  return results;
}

}  // namespace p2p::sync
