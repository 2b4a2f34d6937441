#include "sync/rules/iterative.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "sync/rules/order_stats.h"
#include "sync/rules/rule_params.h"

namespace p2p::sync::rules {
namespace {

// |x - v| in double, with SquaredDistance's fixed 4-way split.
double Distance(std::span<const float> x, const std::vector<double>& v) {
  double s[4] = {0, 0, 0, 0};
  for (size_t i = 0; i < v.size(); ++i) {
    const double d = static_cast<double>(x[i]) - v[i];
    s[i % 4] += d * d;
  }
  return std::sqrt((s[0] + s[1]) + (s[2] + s[3]));
}

double Norm(const std::vector<double>& v) {
  double s[4] = {0, 0, 0, 0};
  for (size_t i = 0; i < v.size(); ++i) s[i % 4] += v[i] * v[i];
  return std::sqrt((s[0] + s[1]) + (s[2] + s[3]));
}

// Sample weights of the participants, summing to 1 (up to rounding).
std::vector<double> Weights(std::span<const Input> inputs, const std::vector<size_t>& who) {
  double total = 0;
  for (size_t r : who) total += static_cast<double>(inputs[r].samples);
  std::vector<double> w;
  for (size_t r : who) w.push_back(static_cast<double>(inputs[r].samples) / total);
  return w;
}

void Round(const std::vector<double>& v, std::span<float> out) {
  for (size_t i = 0; i < v.size(); ++i) out[i] = static_cast<float>(v[i]);
}

}  // namespace

std::string CenteredClipRule::spec() const {
  return fmt::format("centered-clip:iters={},tau={}", iters_, FormatParam(tau_));
}

Status CenteredClipRule::Aggregate(std::span<const Input> inputs, std::span<float> out) const {
  P2P_ASSIGN_OR_RETURN(const auto who, Participants("centered-clip", inputs, out.size()));
  const std::vector<double> w = Weights(inputs, who);
  // Start from the coordinate-wise median: already robust, so the clipping radius is measured
  // from a point the attackers cannot drag far.
  P2P_RETURN_IF_ERROR(MedianRule().Aggregate(inputs, out));
  std::vector<double> v(out.begin(), out.end()), next(out.size());
  std::vector<double> scale(who.size());
  for (int it = 0; it < iters_; ++it) {
    for (size_t k = 0; k < who.size(); ++k) {
      const double d = Distance(inputs[who[k]].grad, v);
      scale[k] = w[k] * (d > tau_ ? tau_ / d : 1.0);
    }
    for (size_t i = 0; i < v.size(); ++i) {
      double step = 0;
      for (size_t k = 0; k < who.size(); ++k) {
        step += scale[k] * (static_cast<double>(inputs[who[k]].grad[i]) - v[i]);
      }
      next[i] = v[i] + step;
    }
    v.swap(next);
  }
  Round(v, out);
  return Status::Ok();
}

std::string GeoMedianRule::spec() const {
  return fmt::format("geomedian:iters={},tol={}", iters_, FormatParam(tol_));
}

Status GeoMedianRule::Aggregate(std::span<const Input> inputs, std::span<float> out) const {
  P2P_ASSIGN_OR_RETURN(const auto who, Participants("geomedian", inputs, out.size()));
  const std::vector<double> w = Weights(inputs, who);
  std::vector<double> z(out.size(), 0.0), next(out.size()), beta(who.size());
  for (size_t i = 0; i < z.size(); ++i) {
    for (size_t k = 0; k < who.size(); ++k) {
      z[i] += w[k] * static_cast<double>(inputs[who[k]].grad[i]);
    }
  }
  last_iterations_ = 0;
  while (last_iterations_ < iters_) {
    ++last_iterations_;
    double sum = 0;
    for (size_t k = 0; k < who.size(); ++k) {
      beta[k] = w[k] / std::max(Distance(inputs[who[k]].grad, z), 1e-12);
      sum += beta[k];
    }
    for (size_t i = 0; i < z.size(); ++i) {
      double acc = 0;
      for (size_t k = 0; k < who.size(); ++k) {
        acc += beta[k] * static_cast<double>(inputs[who[k]].grad[i]);
      }
      next[i] = acc / sum;
    }
    double moved = 0;
    for (size_t i = 0; i < z.size(); ++i) moved += (next[i] - z[i]) * (next[i] - z[i]);
    z.swap(next);
    if (std::sqrt(moved) <= tol_ * Norm(z)) break;
  }
  Round(z, out);
  return Status::Ok();
}

}  // namespace p2p::sync::rules
