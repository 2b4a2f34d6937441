// Byzantine attacks, for robustness experiments only (docs/robustness.md): a peer named by
// --attack-ranks is an otherwise normal, trusted peer that corrupts what it contributes. The
// attack is applied to the gradient this peer hands to the strategy (after its local compute,
// before any codec), or to its training labels; nothing else about the peer changes, so honest
// peers see exactly what a real Byzantine peer holding a valid key could send.
//
//   signflip:scale=10   g -> -scale * g                     (SPIRT's sign flip, x10)
//   gaussian:std=100    g -> N(0, std^2) per coordinate     (SPIRT's "Gaussian" attack)
//   noise:std=S         g -> g + N(0, S^2)                  (the additive noise SPIRT meant)
//   labelflip           y -> C - 1 - y in this peer's training data; gradients then honest
//   zero                g -> 0
//   nan                 g -> NaN everywhere (codecs refuse to encode it, the raw slices of
//                       reduce-scatter-average carry it; either way the run stops with an error)
//   alie:z=Z            g -> mu - Z * sigma, per coordinate over the round's honest gradients
//                       ("A Little Is Enough"; Z defaults to the paper's z_max for n and f)
//   ipm:eps=E           g -> -E * mu (inner-product manipulation)
//
// alie and ipm need the round's honest gradients: the attacker waits for them before it sends
// its own (StrategyOptions::omniscient_attack), so only allgather-average can carry them — the
// strongest attacker, one that sees every honest gradient of the round.
//
// Random draws come from --seed, the rank and the round, so an experiment is reproducible.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/status.h"
#include "ml/dataset.h"

namespace p2p::peer {

class Attack {
 public:
  // Parses --attack SPEC and --attack-ranks LIST for a run of `size` peers. Returns nullptr when
  // both are empty or `rank` is not among the attackers. InvalidArgument, naming the flag, for an
  // unknown attack or parameter, a rank outside [0, size), or one flag without the other.
  static Result<std::unique_ptr<Attack>> Make(const std::string& spec, const std::string& ranks,
                                              int rank, int size, uint64_t seed);

  const std::string& spec() const { return spec_; }  // canonical ("signflip:scale=10")
  // Replaces this peer's outgoing gradient of (epoch, round).
  void Corrupt(int epoch, int64_t round, std::span<float> grad) const;
  // Poisons this peer's training labels (labelflip); a no-op for the gradient attacks.
  void Poison(ml::Dataset& train) const;
  // alie and ipm: the attack is computed from the round's honest gradients (CorruptFromHonest,
  // called by the strategy) instead of from this peer's own (Corrupt is then a no-op).
  bool omniscient() const { return kind_ == Kind::kAlie || kind_ == Kind::kIpm; }
  const std::vector<int>& attackers() const { return attackers_; }
  // Overwrites `grad` with the attack's vector computed from `honest` (rank order, non-empty,
  // each grad.size() long).
  void CorruptFromHonest(const std::vector<std::span<const float>>& honest,
                         std::span<float> grad) const;

 private:
  enum class Kind { kSignFlip, kGaussian, kNoise, kLabelFlip, kZero, kNan, kAlie, kIpm };
  Attack(Kind kind, double param, std::string spec, int rank, uint64_t seed,
         std::vector<int> attackers)
      : kind_(kind),
        param_(param),
        spec_(std::move(spec)),
        rank_(rank),
        seed_(seed),
        attackers_(std::move(attackers)) {}

  Kind kind_;
  double param_;
  std::string spec_;
  int rank_;
  uint64_t seed_;
  std::vector<int> attackers_;
};

// True for the attacks that read the round's honest gradients (alie, ipm): they need
// --strategy allgather-average.
bool AttackNeedsHonestGradients(const std::string& spec);

// ALIE's default z for n peers of which f attack (Baruch et al. 2019): with s = floor(n/2 + 1) - f
// honest supporters needed, z = Phi^-1((n - s) / n), at least 0.
double AlieDefaultZ(int n, int f);

// "1,3" -> {1, 3}: each in [0, size), no repeats; InvalidArgument naming --attack-ranks.
Result<std::vector<int>> ParseAttackRanks(const std::string& text, int size);

}  // namespace p2p::peer
