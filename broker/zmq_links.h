// ZmqLinkTable: the connections a mesh ROUTER hears from, one per routing id, each with the rank
// its routing id claims (internal to ZmqTransport).
//
// Why per connection and not per rank: a routing id is only a claim, and anyone who can reach the
// ROUTER can make one. If the first connection claiming rank r owned r, a squatter that connected
// first would lock the real rank out. So every connection is its own link — its own reassembly
// state (its frames never mix with, or evict, another connection's) — and all links claiming r
// deliver as rank r; the authenticated layer above (sync/session_auth) decides whose messages are
// genuine. Links per rank are bounded: a new one replaces the one heard from least recently, so a
// silent squatter is what gets replaced, and an attacker's connections cost bounded memory.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "broker/transport.h"

namespace p2p::broker {

struct ZmqLink {
  int rank = -1;
  int key = 0;  // unique among live links: the reassembler's sender key
  Clock::time_point last_seen;
};

class ZmqLinkTable {
 public:
  // `size` ranks, at most `max_per_rank` (>= 1) links claiming each.
  ZmqLinkTable(int size, int max_per_rank);

  // The link of routing id `id` (claiming `rank`), created if new, marked heard from at `now`.
  ZmqLink& Touch(std::string_view id, int rank, Clock::time_point now);

  size_t size() const { return links_.size(); }
  // The rank the live link `key` claims; -1 when no live link has that key.
  int RankOf(int key) const;
  // Keys of the links replaced since the last call (their owner frees their state).
  std::vector<int> TakeReplaced() { return std::exchange(replaced_keys_, {}); }
  // Links dropped to make room for newer ones claiming the same rank.
  uint64_t replaced() const { return replaced_; }

 private:
  void ReplaceLeastRecent(int rank);

  std::map<std::string, ZmqLink, std::less<>> links_;
  std::vector<int> per_rank_;
  int max_per_rank_;
  int next_key_ = 0;
  uint64_t replaced_ = 0;
  std::vector<int> replaced_keys_;
};

}  // namespace p2p::broker
