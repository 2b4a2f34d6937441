#include "sync/rules/order_stats.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "sync/rules/rule_params.h"

namespace p2p::sync::rules {
namespace {

// Sorts coordinate i of the participants' gradients into `keys` (OrderKey form).
void SortedColumn(std::span<const Input> inputs, const std::vector<size_t>& who, size_t i,
                  std::vector<uint32_t>& keys) {
  for (size_t k = 0; k < who.size(); ++k) keys[k] = OrderKey(inputs[who[k]].grad[i]);
  // Insertion sort: n is a handful of peers, and the result is unique (a total order on keys).
  for (size_t k = 1; k < keys.size(); ++k) {
    const uint32_t v = keys[k];
    size_t j = k;
    for (; j > 0 && keys[j - 1] > v; --j) keys[j] = keys[j - 1];
    keys[j] = v;
  }
}

// The mean of keys[lo, hi) in double, in sorted order, rounded to float once.
float MeanOf(const std::vector<uint32_t>& keys, size_t lo, size_t hi) {
  double sum = 0;
  for (size_t k = lo; k < hi; ++k) sum += static_cast<double>(FromOrderKey(keys[k]));
  return static_cast<float>(sum / static_cast<double>(hi - lo));
}

}  // namespace

Status MedianRule::Aggregate(std::span<const Input> inputs, std::span<float> out) const {
  P2P_ASSIGN_OR_RETURN(const auto who, Participants("median", inputs, out.size()));
  const size_t n = who.size();
  std::vector<uint32_t> keys(n);
  for (size_t i = 0; i < out.size(); ++i) {
    SortedColumn(inputs, who, i, keys);
    out[i] = n % 2 == 1 ? FromOrderKey(keys[n / 2]) : MeanOf(keys, n / 2 - 1, n / 2 + 1);
  }
  return Status::Ok();
}

std::string TrimmedMeanRule::spec() const { return "trimmed-mean:beta=" + FormatParam(beta_); }

size_t TrimmedMeanRule::Trimmed(size_t n) const {
  return static_cast<size_t>(std::floor(beta_ * static_cast<double>(n)));
}

Status TrimmedMeanRule::Aggregate(std::span<const Input> inputs, std::span<float> out) const {
  P2P_ASSIGN_OR_RETURN(const auto who, Participants("trimmed-mean", inputs, out.size()));
  const size_t n = who.size(), k = Trimmed(n);
  std::vector<uint32_t> keys(n);
  for (size_t i = 0; i < out.size(); ++i) {
    SortedColumn(inputs, who, i, keys);
    out[i] = MeanOf(keys, k, n - k);
  }
  return Status::Ok();
}

}  // namespace p2p::sync::rules
