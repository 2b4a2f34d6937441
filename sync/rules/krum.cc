#include "sync/rules/krum.h"

#include <fmt/format.h>

#include <algorithm>
#include <numeric>

#include "sync/rules/mean.h"
#include "sync/rules/rule_params.h"

namespace p2p::sync::rules {
namespace {

// Squared distances between the participants' gradients, n x n, symmetric, 0 on the diagonal.
std::vector<double> DistanceMatrix(std::span<const Input> inputs, const std::vector<size_t>& who) {
  const size_t n = who.size();
  std::vector<double> d2(n * n, 0.0);
  for (size_t i = 0; i < n; ++i) {
    for (size_t j = i + 1; j < n; ++j) {
      d2[i * n + j] = d2[j * n + i] = SquaredDistance(inputs[who[i]].grad, inputs[who[j]].grad);
    }
  }
  return d2;
}

// Positions in `set` ordered by (score, position): the lowest score first, ties to the lower rank.
std::vector<size_t> ByScore(const std::vector<double>& scores) {
  std::vector<size_t> order(scores.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return scores[a] < scores[b]; });
  return order;
}

Status NeedAtLeast(std::string_view rule, int f, size_t n, size_t k, int mult) {
  if (n >= k) return Status::Ok();
  return InvalidArgument(
      "aggregation rule {}:f={} needs n >= {}f + 3 = {} inputs with samples, but there are {} "
      "(lower f or add peers)",
      rule, f, mult, k, n);
}

}  // namespace

std::vector<double> KrumScores(const std::vector<double>& d2, size_t n,
                               const std::vector<size_t>& set, int f) {
  const ptrdiff_t keep = static_cast<ptrdiff_t>(set.size()) - f - 2;
  const size_t neighbours = keep > 0 ? static_cast<size_t>(keep) : 0;
  std::vector<double> scores(set.size()), row;
  for (size_t a = 0; a < set.size(); ++a) {
    row.clear();
    for (size_t b = 0; b < set.size(); ++b) {
      if (b != a) row.push_back(d2[set[a] * n + set[b]]);
    }
    std::sort(row.begin(), row.end());
    double s = 0;
    for (size_t k = 0; k < neighbours; ++k) s += row[k];
    scores[a] = s;
  }
  return scores;
}

std::string KrumRule::spec() const { return fmt::format("krum:f={}", f_); }

Status KrumRule::CheckCount(size_t n) const {
  return NeedAtLeast("krum", f_, n, 2 * static_cast<size_t>(f_) + 3, 2);
}

Status KrumRule::Aggregate(std::span<const Input> inputs, std::span<float> out) const {
  P2P_ASSIGN_OR_RETURN(const auto who, Participants("krum", inputs, out.size()));
  P2P_RETURN_IF_ERROR(CheckCount(who.size()));
  const size_t n = who.size();
  std::vector<size_t> all(n);
  std::iota(all.begin(), all.end(), size_t{0});
  const size_t best = ByScore(KrumScores(DistanceMatrix(inputs, who), n, all, f_))[0];
  const std::span<const float> g = inputs[who[best]].grad;
  std::copy(g.begin(), g.end(), out.begin());
  return Status::Ok();
}

std::string MultiKrumRule::spec() const { return fmt::format("multi-krum:f={},m={}", f_, m_); }

Status MultiKrumRule::CheckCount(size_t n) const {
  P2P_RETURN_IF_ERROR(NeedAtLeast("multi-krum", f_, n, 2 * static_cast<size_t>(f_) + 3, 2));
  if (static_cast<size_t>(m_) + static_cast<size_t>(f_) > n) {
    return InvalidArgument(
        "aggregation rule multi-krum:f={},m={} averages m <= n - f = {} inputs with samples "
        "(n = {}); lower m (0 means n - f)",
        f_, m_, n - static_cast<size_t>(f_), n);
  }
  return Status::Ok();
}

Status MultiKrumRule::Aggregate(std::span<const Input> inputs, std::span<float> out) const {
  P2P_ASSIGN_OR_RETURN(const auto who, Participants("multi-krum", inputs, out.size()));
  P2P_RETURN_IF_ERROR(CheckCount(who.size()));
  const size_t n = who.size();
  const size_t m = m_ == 0 ? n - static_cast<size_t>(f_) : static_cast<size_t>(m_);
  std::vector<size_t> all(n);
  std::iota(all.begin(), all.end(), size_t{0});
  std::vector<size_t> picked = ByScore(KrumScores(DistanceMatrix(inputs, who), n, all, f_));
  picked.resize(m);
  std::sort(picked.begin(), picked.end());  // the mean adds in rank order
  uint64_t total = 0;
  for (size_t p : picked) total += inputs[who[p]].samples;
  MeanAccumulator mean(out, total);
  for (size_t p : picked) mean.Add(inputs[who[p]].grad, inputs[who[p]].samples);
  return Status::Ok();
}

std::string BulyanRule::spec() const { return fmt::format("bulyan:f={}", f_); }

Status BulyanRule::CheckCount(size_t n) const {
  return NeedAtLeast("bulyan", f_, n, 4 * static_cast<size_t>(f_) + 3, 4);
}

Status BulyanRule::Aggregate(std::span<const Input> inputs, std::span<float> out) const {
  P2P_ASSIGN_OR_RETURN(const auto who, Participants("bulyan", inputs, out.size()));
  P2P_RETURN_IF_ERROR(CheckCount(who.size()));
  const size_t n = who.size(), f = static_cast<size_t>(f_);
  const size_t theta = n - 2 * f, beta = theta - 2 * f;
  // 1. theta inputs, each the Krum choice among those not yet picked.
  const std::vector<double> d2 = DistanceMatrix(inputs, who);
  std::vector<size_t> rest(n), picked;
  std::iota(rest.begin(), rest.end(), size_t{0});
  while (picked.size() < theta) {
    const size_t best = ByScore(KrumScores(d2, n, rest, f_))[0];
    picked.push_back(rest[best]);
    rest.erase(rest.begin() + static_cast<ptrdiff_t>(best));
  }
  std::sort(picked.begin(), picked.end());
  // 2. Per coordinate, the mean of the beta picked values closest to their median. In sorted
  // order those form a window grown outward from the median, ties to the lower value.
  std::vector<uint32_t> keys(theta);
  std::vector<double> v(theta);
  for (size_t i = 0; i < out.size(); ++i) {
    for (size_t k = 0; k < theta; ++k) keys[k] = OrderKey(inputs[who[picked[k]]].grad[i]);
    std::sort(keys.begin(), keys.end());
    for (size_t k = 0; k < theta; ++k) v[k] = static_cast<double>(FromOrderKey(keys[k]));
    const double med = theta % 2 == 1 ? v[theta / 2] : (v[theta / 2 - 1] + v[theta / 2]) / 2;
    size_t lo = theta / 2, hi = theta / 2;  // the window is [lo, hi)
    while (hi - lo < beta) {
      if (lo > 0 && (hi == theta || med - v[lo - 1] <= v[hi] - med)) {
        --lo;
      } else {
        ++hi;
      }
    }
    double sum = 0;
    for (size_t k = lo; k < hi; ++k) sum += v[k];
    out[i] = static_cast<float>(sum / static_cast<double>(beta));
  }
  return Status::Ok();
}

}  // namespace p2p::sync::rules
