// A membership view: the ranks of a run that train together, numbered so that every view change
// is an event all members agree on (protocol: docs/membership.md).
//
// Thread-safety: plain values.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace p2p::sync::membership {

struct View {
  uint64_t id = 0;
  std::vector<int> members;  // sorted ascending, unique
  bool Contains(int rank) const;
  bool operator==(const View&) const = default;
};

// View 0 of a run of `size` ranks: every rank.
View InitialView(int size);

// Whether `ranks` includes more than half of `base`'s members (ranks outside `base` do not count).
// The quorum rule: a next view needs a strict majority of the last stable view, so two disjoint
// sides of a partition can never both continue.
bool IsStrictMajority(const std::vector<int>& ranks, const View& base);

// `ranks` without the ones in `remove`; both sorted, so is the result.
std::vector<int> Without(const std::vector<int>& ranks, const std::vector<int>& remove);
// The ranks in both (sorted inputs, sorted output).
std::vector<int> Intersect(const std::vector<int>& a, const std::vector<int>& b);

// "0, 1, 3" for logs and errors.
std::string RankList(const std::vector<int>& ranks);

}  // namespace p2p::sync::membership
