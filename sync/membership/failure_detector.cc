#include "sync/membership/failure_detector.h"

namespace p2p::sync::membership {

FailureDetector::FailureDetector(int self, const std::vector<int>& members, Clock::duration timeout,
                                 Clock::time_point now)
    : self_(self), timeout_(timeout) {
  Watch(members, now);
}

void FailureDetector::Heard(int rank, Clock::time_point now) {
  auto it = watched_.find(rank);
  if (it == watched_.end() || it->second.gone) return;
  if (now > it->second.last_heard) it->second.last_heard = now;
}

void FailureDetector::Gone(int rank) {
  auto it = watched_.find(rank);
  if (it != watched_.end()) it->second.gone = true;
}

bool FailureDetector::IsGone(int rank) const {
  const auto it = watched_.find(rank);
  return it != watched_.end() && it->second.gone;
}

std::vector<int> FailureDetector::Suspects(Clock::time_point now) const {
  std::vector<int> out;
  for (const auto& [rank, e] : watched_) {
    if (e.gone || now - e.last_heard > timeout_) out.push_back(rank);
  }
  return out;
}

std::optional<FailureDetector::Clock::time_point> FailureDetector::NextSuspicion(
    Clock::time_point now) const {
  std::optional<Clock::time_point> next;
  for (const auto& [rank, e] : watched_) {
    if (e.gone || now - e.last_heard > timeout_) continue;
    const auto at = e.last_heard + timeout_;
    if (!next || at < *next) next = at;
  }
  return next;
}

void FailureDetector::Watch(const std::vector<int>& members, Clock::time_point now) {
  watched_.clear();
  for (int r : members) {
    if (r != self_) watched_.emplace(r, Entry{now, false});
  }
}

}  // namespace p2p::sync::membership
