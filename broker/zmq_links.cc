#include "broker/zmq_links.h"

#include "common/status.h"

namespace p2p::broker {

ZmqLinkTable::ZmqLinkTable(int size, int max_per_rank)
    : per_rank_(static_cast<size_t>(size), 0), max_per_rank_(max_per_rank) {
  P2P_CHECK(size >= 1 && max_per_rank >= 1, "link table for {} ranks, {} per rank", size,
            max_per_rank);
}

ZmqLink* ZmqLinkTable::Touch(std::string_view id, int rank, Clock::time_point now) {
  P2P_CHECK(rank >= 0 && rank < static_cast<int>(per_rank_.size()), "rank {}", rank);
  auto it = links_.find(id);
  if (it == links_.end()) {
    if (per_rank_[rank] >= max_per_rank_ && !ReplaceLeastRecent(rank)) return nullptr;
    // Keys wrap after 2^31 links; a key is only reused long after its link was dropped (and
    // its incomplete messages with it, by the reassembly timeout).
    const int key = next_key_;
    next_key_ = (next_key_ + 1) & 0x7fffffff;
    it = links_.emplace(std::string(id), ZmqLink{rank, key, now}).first;
    ++per_rank_[rank];
  }
  it->second.last_seen = now;
  return &it->second;
}

int ZmqLinkTable::Prove(int key) {
  ZmqLink* target = nullptr;
  for (auto& [id, link] : links_) {
    if (link.key == key) target = &link;
  }
  if (target == nullptr || target->proven) return -1;
  int demoted = -1;
  for (auto& [id, link] : links_) {
    if (link.rank == target->rank && link.proven) {
      link.proven = false;
      demoted = link.key;
    }
  }
  target->proven = true;
  return demoted;
}

int ZmqLinkTable::RankOf(int key) const {
  for (const auto& [id, link] : links_) {
    if (link.key == key) return link.rank;
  }
  return -1;
}

// Only unproven links are replaced: a proven one carried authenticated traffic, which no amount of
// unauthenticated traffic on other connections outweighs.
bool ZmqLinkTable::ReplaceLeastRecent(int rank) {
  auto oldest = links_.end();
  for (auto it = links_.begin(); it != links_.end(); ++it) {
    if (it->second.rank != rank || it->second.proven) continue;
    if (oldest == links_.end() || it->second.last_seen < oldest->second.last_seen) oldest = it;
  }
  if (oldest == links_.end()) return false;
  replaced_keys_.push_back(oldest->second.key);
  links_.erase(oldest);
  --per_rank_[rank];
  ++replaced_;
  return true;
}

}  // namespace p2p::broker
