#include "sync/membership/view.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <iterator>
#include <numeric>

namespace p2p::sync::membership {

bool View::Contains(int rank) const {
  return std::binary_search(members.begin(), members.end(), rank);
}

View InitialView(int size) {
  View v;
  v.members.resize(static_cast<size_t>(std::max(size, 0)));
  std::iota(v.members.begin(), v.members.end(), 0);
  return v;
}

bool IsStrictMajority(const std::vector<int>& ranks, const View& base) {
  const size_t in_base = Intersect(ranks, base.members).size();
  return 2 * in_base > base.members.size();
}

std::vector<int> Without(const std::vector<int>& ranks, const std::vector<int>& remove) {
  std::vector<int> out;
  std::set_difference(ranks.begin(), ranks.end(), remove.begin(), remove.end(),
                      std::back_inserter(out));
  return out;
}

std::vector<int> Intersect(const std::vector<int>& a, const std::vector<int>& b) {
  std::vector<int> out;
  std::set_intersection(a.begin(), a.end(), b.begin(), b.end(), std::back_inserter(out));
  return out;
}

std::string RankList(const std::vector<int>& ranks) {
  return fmt::format("{}", fmt::join(ranks, ", "));
}

}  // namespace p2p::sync::membership
