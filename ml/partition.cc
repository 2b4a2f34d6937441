// Seeded permutations, the train/validation split and the partition of a training set among
// peers. Everything here is a pure function of its arguments, so every process computes the same
// shards from the same seed without talking to the others.
#include <algorithm>
#include <charconv>
#include <cmath>
#include <numeric>
#include <string_view>

#include "ml/dataset.h"
#include "ml/dataset_internal.h"

namespace p2p::ml {
namespace internal {

std::vector<size_t> Permutation(size_t n, DetRng& rng) {
  std::vector<size_t> perm(n);
  std::iota(perm.begin(), perm.end(), size_t{0});
  for (size_t i = n; i > 1; --i) {
    std::swap(perm[i - 1], perm[rng.Below(i)]);
  }
  return perm;
}

SplitIndices TrainValidationSplit(size_t n, uint64_t seed) {
  DetRng rng(seed, kSplitStream);
  std::vector<size_t> perm = Permutation(n, rng);
  const size_t num_validation = n / 10;
  SplitIndices out;
  out.validation.assign(perm.begin(), perm.begin() + num_validation);
  out.train.assign(perm.begin() + num_validation, perm.end());
  std::sort(out.validation.begin(), out.validation.end());
  std::sort(out.train.begin(), out.train.end());
  return out;
}

}  // namespace internal

namespace {

// Shard sizes by the largest-remainder method: floor of each exact quota, then one extra sample
// to the shards with the largest fractional parts (ties to the lower rank) until n is reached.
// Quotas are computed in double; for n < 2^40 the floors cannot sum above n (see docs).
std::vector<size_t> ShardSizes(size_t n, int size, std::span<const double> weights) {
  std::vector<size_t> sizes(size);
  if (weights.empty()) {
    for (int r = 0; r < size; ++r) sizes[r] = n / size + (static_cast<size_t>(r) < n % size);
    return sizes;
  }
  const double total = std::accumulate(weights.begin(), weights.end(), 0.0);
  std::vector<double> fraction(size);
  size_t assigned = 0;
  for (int r = 0; r < size; ++r) {
    const double quota = static_cast<double>(n) * (weights[r] / total);
    sizes[r] = std::min(static_cast<size_t>(std::floor(quota)), n - assigned);
    fraction[r] = quota - std::floor(quota);
    assigned += sizes[r];
  }
  std::vector<int> order(size);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int a, int b) { return fraction[a] > fraction[b]; });
  for (size_t i = 0; assigned < n; i = (i + 1) % size, ++assigned) ++sizes[order[i]];
  return sizes;
}

Status ValidatePartition(size_t n, int size, int rank, std::span<const double> weights) {
  if (size < 1) return InvalidArgument("partition: size must be >= 1, got {}", size);
  if (rank < 0 || rank >= size) {
    return InvalidArgument("partition: rank {} out of range [0, {})", rank, size);
  }
  if (n > (size_t{1} << 40)) return InvalidArgument("partition: {} samples is too many", n);
  if (weights.empty()) return Status::Ok();
  if (weights.size() != static_cast<size_t>(size)) {
    return InvalidArgument("partition: {} weights given for {} peers", weights.size(), size);
  }
  double total = 0;
  for (size_t i = 0; i < weights.size(); ++i) {
    if (!std::isfinite(weights[i]) || weights[i] <= 0) {
      return InvalidArgument("partition: weight {} of rank {} must be positive", weights[i], i);
    }
    total += weights[i];
  }
  if (!std::isfinite(total)) return InvalidArgument("partition: weights sum to infinity");
  return Status::Ok();
}

}  // namespace

std::vector<size_t> SeededPermutation(size_t n, uint64_t seed) {
  internal::DetRng rng(seed, internal::kPartitionStream);
  return internal::Permutation(n, rng);
}

Result<std::vector<size_t>> ShardIndices(size_t n, int size, int rank, uint64_t seed,
                                         std::span<const double> weights) {
  P2P_RETURN_IF_ERROR(ValidatePartition(n, size, rank, weights));
  const std::vector<size_t> sizes = ShardSizes(n, size, weights);
  const size_t begin = std::accumulate(sizes.begin(), sizes.begin() + rank, size_t{0});
  std::vector<size_t> perm = SeededPermutation(n, seed);
  return std::vector<size_t>(perm.begin() + begin, perm.begin() + begin + sizes[rank]);
}

Result<std::vector<double>> ParseWeights(const std::string& text) {
  std::vector<double> weights;
  if (text.empty()) return weights;
  std::string_view rest = text;
  for (;;) {
    const size_t comma = rest.find(',');
    std::string_view item = rest.substr(0, comma);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
    double w = 0;
    const auto [end, ec] = std::from_chars(item.data(), item.data() + item.size(), w);
    if (item.empty() || ec != std::errc() || end != item.data() + item.size()) {
      return InvalidArgument("weights \"{}\": \"{}\" is not a number", text, item);
    }
    if (!std::isfinite(w) || w <= 0) {
      return InvalidArgument("weights \"{}\": {} is not a positive weight", text, item);
    }
    weights.push_back(w);
    if (comma == std::string_view::npos) return weights;
    rest.remove_prefix(comma + 1);
  }
}

}  // namespace p2p::ml
