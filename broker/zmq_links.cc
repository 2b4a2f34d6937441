#include "broker/zmq_links.h"

#include "common/status.h"

namespace p2p::broker {

ZmqLinkTable::ZmqLinkTable(int size, int max_per_rank)
    : per_rank_(static_cast<size_t>(size), 0), max_per_rank_(max_per_rank) {
  P2P_CHECK(size >= 1 && max_per_rank >= 1, "link table for {} ranks, {} per rank", size,
            max_per_rank);
}

ZmqLink& ZmqLinkTable::Touch(std::string_view id, int rank, Clock::time_point now) {
  P2P_CHECK(rank >= 0 && rank < static_cast<int>(per_rank_.size()), "rank {}", rank);
  auto it = links_.find(id);
  if (it == links_.end()) {
    if (per_rank_[rank] >= max_per_rank_) ReplaceLeastRecent(rank);
    // Keys wrap after 2^31 links; a key is only reused long after its link was dropped (and
    // its incomplete messages with it, by the reassembly timeout).
    const int key = next_key_;
    next_key_ = (next_key_ + 1) & 0x7fffffff;
    it = links_.emplace(std::string(id), ZmqLink{rank, key, now}).first;
    ++per_rank_[rank];
  }
  it->second.last_seen = now;
  return it->second;
}

int ZmqLinkTable::RankOf(int key) const {
  for (const auto& [id, link] : links_) {
    if (link.key == key) return link.rank;
  }
  return -1;
}

void ZmqLinkTable::ReplaceLeastRecent(int rank) {
  auto oldest = links_.end();
  for (auto it = links_.begin(); it != links_.end(); ++it) {
    if (it->second.rank != rank) continue;
    if (oldest == links_.end() || it->second.last_seen < oldest->second.last_seen) oldest = it;
  }
  P2P_CHECK(oldest != links_.end(), "rank {} has no link to replace", rank);
  replaced_keys_.push_back(oldest->second.key);
  links_.erase(oldest);
  --per_rank_[rank];
  ++replaced_;
}

}  // namespace p2p::broker
