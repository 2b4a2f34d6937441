#include "peer/attack.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <random>

#include "ml/random.h"

namespace p2p::peer {
namespace {

// alie's z default depends on the run's size and attacker count.
constexpr double kFromRunSize = -1;

struct AttackDesc {
  std::string_view name;
  int kind;
  std::string_view param;  // "" for none
  double fallback, lo, hi;
};

// kind values follow Attack::Kind's order.
constexpr AttackDesc kAttacks[] = {
    {"signflip", 0, "scale", 10, 1e-6, 1e6},
    {"gaussian", 1, "std", 100, 1e-9, 1e6},
    {"noise", 2, "std", 1, 1e-9, 1e6},
    {"labelflip", 3, "", 0, 0, 0},
    {"zero", 4, "", 0, 0, 0},
    {"nan", 5, "", 0, 0, 0},
    {"alie", 6, "z", kFromRunSize, 0, 100},
    {"ipm", 7, "eps", 0.1, 1e-6, 1e6},
};

std::string AttackNames() {
  std::string names;
  for (const AttackDesc& d : kAttacks) names += (names.empty() ? "" : ", ") + std::string(d.name);
  return names;
}

Result<double> ParseParam(const AttackDesc& d, std::string_view text) {
  if (text.empty()) return d.fallback;
  const size_t eq = text.find('=');
  if (d.param.empty()) {
    return InvalidArgument("--attack {} takes no parameters (got '{}')", d.name, text);
  }
  if (eq == std::string_view::npos || text.substr(0, eq) != d.param ||
      text.find(',') != text.npos) {
    return InvalidArgument("--attack {} takes one parameter, {}=NUMBER (got '{}')", d.name, d.param,
                           text);
  }
  const std::string_view value = text.substr(eq + 1);
  double v = 0;
  const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
  if (ec != std::errc() || end != value.data() + value.size() || !(v >= d.lo && v <= d.hi)) {
    return InvalidArgument("--attack {}: {}='{}' must be a number in [{}, {}]", d.name, d.param,
                           value, d.lo, d.hi);
  }
  return v;
}

}  // namespace

Result<std::vector<int>> ParseAttackRanks(const std::string& text, int size) {
  std::vector<int> ranks;
  std::string_view rest = text;
  while (true) {
    const size_t comma = rest.find(',');
    const std::string_view item = rest.substr(0, comma);
    int r = -1;
    const auto [end, ec] = std::from_chars(item.data(), item.data() + item.size(), r);
    if (ec != std::errc() || end != item.data() + item.size() || r < 0 || r >= size) {
      return InvalidArgument("--attack-ranks '{}': '{}' is not a rank in [0, {})", text, item,
                             size);
    }
    if (std::find(ranks.begin(), ranks.end(), r) != ranks.end()) {
      return InvalidArgument("--attack-ranks '{}' names rank {} twice", text, r);
    }
    ranks.push_back(r);
    if (comma == std::string_view::npos) break;
    rest = rest.substr(comma + 1);
  }
  return ranks;
}

Result<std::unique_ptr<Attack>> Attack::Make(const std::string& spec, const std::string& ranks,
                                             int rank, int size, uint64_t seed) {
  if (spec.empty() && ranks.empty()) return std::unique_ptr<Attack>();
  if (spec.empty() || ranks.empty()) {
    return InvalidArgument(
        "--attack and --attack-ranks go together: the attack, and which ranks carry it out "
        "(e.g. --attack signflip:scale=10 --attack-ranks 1)");
  }
  P2P_ASSIGN_OR_RETURN(const std::vector<int> attackers, ParseAttackRanks(ranks, size));
  const size_t colon = spec.find(':');
  const std::string_view name = std::string_view(spec).substr(0, colon);
  const auto d = std::find_if(std::begin(kAttacks), std::end(kAttacks),
                              [&](const AttackDesc& a) { return a.name == name; });
  if (d == std::end(kAttacks)) {
    return InvalidArgument("unknown --attack '{}'; valid: {}", name, AttackNames());
  }
  P2P_ASSIGN_OR_RETURN(
      const double param,
      ParseParam(*d, colon == std::string::npos ? "" : std::string_view(spec).substr(colon + 1)));
  if (static_cast<size_t>(size) <= attackers.size() && AttackNeedsHonestGradients(spec)) {
    return InvalidArgument(
        "--attack {} needs at least one honest peer's gradient, but --attack-ranks names every "
        "rank",
        name);
  }
  if (std::find(attackers.begin(), attackers.end(), rank) == attackers.end()) {
    return std::unique_ptr<Attack>();
  }
  const double value =
      param == kFromRunSize ? AlieDefaultZ(size, static_cast<int>(attackers.size())) : param;
  const std::string canonical =
      d->param.empty() ? std::string(d->name) : fmt::format("{}:{}={:g}", d->name, d->param, value);
  return std::unique_ptr<Attack>(
      new Attack(static_cast<Kind>(d->kind), value, canonical, rank, seed, attackers));
}

bool AttackNeedsHonestGradients(const std::string& spec) {
  const std::string_view name = std::string_view(spec).substr(0, spec.find(':'));
  return name == "alie" || name == "ipm";
}

double AlieDefaultZ(int n, int f) {
  const int s = n / 2 + 1 - f;
  const double target = static_cast<double>(n - s) / n;
  if (target <= 0.5) return 0;
  // Phi^-1 by bisection on Phi(x) = erfc(-x / sqrt 2) / 2: monotone, 60 halvings are exact enough.
  double lo = 0, hi = 10;
  for (int i = 0; i < 60; ++i) {
    const double mid = (lo + hi) / 2;
    (0.5 * std::erfc(-mid / std::sqrt(2.0)) < target ? lo : hi) = mid;
  }
  return lo;
}

void Attack::CorruptFromHonest(const std::vector<std::span<const float>>& honest,
                               std::span<float> grad) const {
  const double n = static_cast<double>(honest.size());
  for (size_t i = 0; i < grad.size(); ++i) {
    double sum = 0;
    for (const auto& h : honest) sum += h[i];
    const double mu = sum / n;
    if (kind_ == Kind::kIpm) {
      grad[i] = static_cast<float>(-param_ * mu);
      continue;
    }
    double ss = 0;
    for (const auto& h : honest) ss += (h[i] - mu) * (h[i] - mu);
    grad[i] = static_cast<float>(mu - param_ * std::sqrt(ss / n));
  }
}

void Attack::Corrupt(int epoch, int64_t round, std::span<float> grad) const {
  // One stream per (seed, rank, epoch, round): reproducible, and different every round.
  std::seed_seq seq{seed_, static_cast<uint64_t>(rank_), static_cast<uint64_t>(epoch),
                    static_cast<uint64_t>(round), uint64_t{0xB12A}};
  std::mt19937_64 rng(seq);
  switch (kind_) {
    case Kind::kSignFlip:
      for (float& g : grad) g *= static_cast<float>(-param_);
      break;
    case Kind::kGaussian:
      ml::FillNormal(rng, static_cast<float>(param_), grad);
      break;
    case Kind::kNoise: {
      std::vector<float> noise(grad.size());
      ml::FillNormal(rng, static_cast<float>(param_), noise);
      for (size_t i = 0; i < grad.size(); ++i) grad[i] += noise[i];
      break;
    }
    case Kind::kLabelFlip:
      break;  // the poisoned labels already made this gradient
    case Kind::kZero:
      std::fill(grad.begin(), grad.end(), 0.0f);
      break;
    case Kind::kNan:
      std::fill(grad.begin(), grad.end(), std::numeric_limits<float>::quiet_NaN());
      break;
    case Kind::kAlie:
    case Kind::kIpm:
      break;  // CorruptFromHonest, from inside the strategy's round
  }
}

void Attack::Poison(ml::Dataset& train) const {
  if (kind_ != Kind::kLabelFlip) return;
  for (int32_t& y : train.y) y = train.num_classes - 1 - y;
}

}  // namespace p2p::peer
