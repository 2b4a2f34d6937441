// What the rendezvous service logs, bounded so that a flood cannot flood the log: the first
// refusal of each (source address, reason) is logged at once with its message; later ones are
// only counted and summarised, together with the service's events (runs completed, expired,
// evicted), in one line per interval. Events get a small per-interval budget of their own lines.
//
// Thread-safety: none; the service loop owns it.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <utility>

#include "broker/transport.h"

namespace p2p::broker::rendezvous {

class ServiceLog {
 public:
  using Sink = std::function<void(const std::string& line)>;
  // `sink` may be empty (nothing is logged). At most `max_keys` (source, reason) pairs are told
  // apart per interval; refusals beyond that are counted under "other addresses".
  ServiceLog(Sink sink, std::chrono::seconds interval, size_t max_keys = 1024,
             int event_lines_per_interval = 20);

  void Refused(const std::string& source, const std::string& reason, const std::string& message);
  void Event(const std::string& text);
  // Writes the summary line if `interval` passed since the last one and anything happened.
  void Tick(Clock::time_point now, const std::string& state);

 private:
  Sink sink_;
  std::chrono::seconds interval_;
  size_t max_keys_;
  int event_budget_;
  int events_left_;
  uint64_t events_unlogged_ = 0;
  Clock::time_point last_summary_;
  // Refusals not logged in full since the last summary, per pair; a pair is present once its
  // first refusal was logged.
  std::map<std::pair<std::string, std::string>, uint64_t> counts_;
  uint64_t other_count_ = 0;
};

}  // namespace p2p::broker::rendezvous
