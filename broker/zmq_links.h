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
//
// Once the layer above authenticated a message of a link (Transport::ConfirmSender), that link is
// the rank's proven one: no unproven link replaces it, however busy the unproven ones are (else a
// squatter that keeps talking while the real rank computes would push it out mid-message). A rank
// has at most one proven link; a later proof on another link (a restarted rank) moves it there.
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
  bool proven = false;  // carried a message the layer above authenticated as `rank`
};

class ZmqLinkTable {
 public:
  // `size` ranks, at most `max_per_rank` (>= 1) links claiming each.
  ZmqLinkTable(int size, int max_per_rank);

  // The link of routing id `id` (claiming `rank`), created if new, marked heard from at `now`.
  // nullptr when it is new and every link of `rank` is proven (max_per_rank 1): refused.
  ZmqLink* Touch(std::string_view id, int rank, Clock::time_point now);
  // Makes live link `key` its rank's proven link (the previous one, if any, is no longer);
  // returns the key that lost that status, or -1. No-op (-1) for an unknown key.
  int Prove(int key);

  size_t size() const { return links_.size(); }
  // The rank the live link `key` claims; -1 when no live link has that key.
  int RankOf(int key) const;
  // Keys of the links replaced since the last call (their owner frees their state).
  std::vector<int> TakeReplaced() { return std::exchange(replaced_keys_, {}); }
  // Links dropped to make room for newer ones claiming the same rank.
  uint64_t replaced() const { return replaced_; }

 private:
  bool ReplaceLeastRecent(int rank);

  std::map<std::string, ZmqLink, std::less<>> links_;
  std::vector<int> per_rank_;
  int max_per_rank_;
  int next_key_ = 0;
  uint64_t replaced_ = 0;
  std::vector<int> replaced_keys_;
};

}  // namespace p2p::broker
