#include "sync/allgather_average.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>

#include "common/byte_pool.h"
#include "sync/comparative_strategies.h"
#include "sync/gradient_body.h"
#include "sync/reduce_scatter_average.h"
#include "sync/reduce_scatter_codec.h"
#include "sync/staleness.h"
#include "sync/strategy_util.h"

namespace p2p::sync {
AllgatherAverage::AllgatherAverage(Mailbox& mailbox, StrategyOptions options)
    : mailbox_(mailbox),
      options_(std::move(options)),
      encoder_(CodecOrDie(options_.codec, "allgather-average")),
      rule_(rules::MakeCheckedRule(options_.rule)) {}

Status AllgatherAverage::Average(Round round, uint32_t samples, std::span<float> grad) {
  ++timings_.rounds;
  // The members of the current view take part (sync/membership/); its id tells this round from
  // the same round redone after a view change.
  const std::vector<int>& members = mailbox_.view().members;
  round.view = mailbox_.view().id;
  others_.clear();
  for (int r : members) {
    if (r != mailbox_.rank()) others_.push_back(r);
  }
  const codecs::Codec& codec = encoder_.codec();
  std::map<int, broker::Envelope> early;
  if (options_.omniscient_attack) {
    P2P_ASSIGN_OR_RETURN(early, ReadHonestFirst(round, grad));
  }
  auto t = broker::Clock::now();
  // A peer without samples this round carries no weight: it sends a payload but keeps its
  // error-feedback residual for a round that counts.
  const uint64_t seed = codecs::RoundSeed(options_.seed, mailbox_.rank(), round.epoch, round.step);
  // Last round's body went to the mailbox (which gives it back to the pool): take one back.
  if (sent_.capacity() == 0) sent_ = BytePool::Global().Take(8 + grad.size_bytes());
  if (Status s = EncodeGradientBody(encoder_, samples, grad, seed, sent_); !s.ok()) {
    return s.Annotate(fmt::format("encoding this peer's gradient of epoch {} step {} with {}",
                                  round.epoch, round.step, codec.id()));
  }
  timings_.encode_seconds += SecondsSince(t);
  timings_.raw_bytes += grad.size_bytes();
  timings_.encoded_bytes += GradientPayload(sent_).size();
  broker::Envelope env;
  env.type = broker::MessageType::kGradient;
  env.epoch = round.epoch;
  env.step = round.step;
  env.codec.id = codec.config().id;
  env.codec.params = codec.config().params;
  // A lossless codec without feedback decodes to `grad` itself: keep that instead of the body.
  const bool own_is_grad = codec.lossless() && !codec.error_feedback();
  if (own_is_grad) {
    mine_.assign(grad.begin(), grad.end());
    env.body = std::move(sent_);
  } else {
    env.body = sent_;
  }
  P2P_RETURN_IF_ERROR(mailbox_.Send(std::move(env)));
  timings_.send_seconds += SecondsSince(t);
  t = broker::Clock::now();
  const auto deadline = t + options_.peer_timeout;
  std::vector<int> rest;
  for (int r : others_) {
    if (!early.contains(r)) rest.push_back(r);
  }
  P2P_ASSIGN_OR_RETURN(
      auto received,
      mailbox_.Collect(broker::MessageType::kGradient, round, rest, deadline,
                       fmt::format("gradients of epoch {} step {}", round.epoch, round.step)));
  received.merge(early);

  timings_.wait_seconds += SecondsSince(t);
  t = broker::Clock::now();
  // Decode every gradient, ours too, before summing, so a bad one fails the round before any
  // state changes.
  const size_t p = grad.size();
  theirs_.resize(p * others_.size());
  std::vector<uint32_t> counts(mailbox_.size(), 0);
  counts[mailbox_.rank()] = samples;
  if (!own_is_grad) {
    mine_.resize(p);
    P2P_RETURN_IF_ERROR(encoder_.DecodeOwn(GradientPayload(sent_), mine_));
  }
  for (size_t i = 0; i < others_.size(); ++i) {
    const int r = others_[i];
    P2P_ASSIGN_OR_RETURN(counts[r],
                         Decode(received.at(r), r, std::span(theirs_).subspan(i * p, p)));
  }
  timings_.decode_seconds += SecondsSince(t);
  uint64_t total = 0;
  for (uint32_t c : counts) total += c;
  if (total == 0)
    return InvalidArgument("no peer had samples in epoch {} step {}", round.epoch, round.step);
  // Rank order, the same inputs everywhere: identical bits on every peer.
  std::vector<rules::Input> inputs;
  size_t other = 0;
  for (int r : members) {
    const std::span<const float> g =
        r == mailbox_.rank() ? std::span<const float>(mine_)
                             : std::span<const float>(theirs_).subspan((other++) * p, p);
    inputs.push_back({g, counts[static_cast<size_t>(r)]});
  }
  if (Status s = rule_->Aggregate(inputs, grad); !s.ok()) {
    return s.Annotate(
        fmt::format("combining the gradients of epoch {} step {}", round.epoch, round.step));
  }
  for (auto& [r, e] : received) BytePool::Global().Give(std::move(e.body));  // next round's
  timings_.reduce_seconds += SecondsSince(t);
  return Status::Ok();
}

Result<uint32_t> AllgatherAverage::Decode(const broker::Envelope& e, int r,
                                          std::span<float> out) const {
  const codecs::Codec& codec = encoder_.codec();
  if (e.codec.id != codec.config().id || e.codec.params != codec.config().params) {
    return InvalidArgument(
        "gradient from rank {} is encoded as '{}' but this run uses '{}' (every peer needs the "
        "same --compression)",
        r, codecs::FormatCodecSpec({e.codec.id, e.codec.params}),
        codecs::FormatCodecSpec(codec.config()));
  }
  auto n = DecodeGradientBody(codec, e.body, out);
  if (!n.ok()) return n.status().Annotate(fmt::format("gradient from rank {}", r));
  return *n;
}

Result<std::map<int, broker::Envelope>> AllgatherAverage::ReadHonestFirst(Round round,
                                                                          std::span<float> grad) {
  const auto& attackers = options_.omniscient_attack->attackers;
  std::vector<int> honest;
  for (int r : others_) {
    if (std::find(attackers.begin(), attackers.end(), r) == attackers.end()) honest.push_back(r);
  }
  const auto t = broker::Clock::now();
  P2P_ASSIGN_OR_RETURN(
      auto received,
      mailbox_.Collect(broker::MessageType::kGradient, round, honest, t + options_.peer_timeout,
                       fmt::format("honest gradients of epoch {} step {} (for the attack)",
                                   round.epoch, round.step),
                       /*complete_round=*/false));
  timings_.wait_seconds += SecondsSince(t);
  const size_t p = grad.size();
  std::vector<float> decoded(p * honest.size());
  std::vector<std::span<const float>> inputs;
  for (size_t i = 0; i < honest.size(); ++i) {
    const std::span<float> out = std::span(decoded).subspan(i * p, p);
    P2P_RETURN_IF_ERROR(Decode(received.at(honest[i]), honest[i], out).status());
    inputs.push_back(out);
  }
  options_.omniscient_attack->corrupt(inputs, grad);
  return received;
}

std::vector<std::vector<float>> AllgatherAverage::SaveState() const {
  return SaveEncoderState(encoder_);
}

Status AllgatherAverage::LoadState(std::vector<std::vector<float>> state) {
  return LoadEncoderState(encoder_, std::move(state));
}

Result<std::unique_ptr<Strategy>> MakeStrategy(const std::string& name, Mailbox& mailbox,
                                               const StrategyOptions& options) {
  if (options.omniscient_attack && name != "allgather-average") {
    return InvalidArgument(
        "this --attack reads the round's honest gradients before sending, which only --strategy "
        "allgather-average allows (not {})",
        name);
  }
  P2P_ASSIGN_OR_RETURN(const auto rule, rules::MakeRule(options.rule));
  if (Status s = rule->CheckCount(static_cast<size_t>(mailbox.size())); !s.ok()) {
    return s.Annotate(fmt::format("--aggregation with {} peers", mailbox.size()));
  }
  if (auto stale = MakeStaleStrategy(name, mailbox, options)) return std::move(*stale);
  if (name == "allgather-average") {
    P2P_ASSIGN_OR_RETURN(codecs::CodecConfig codec, codecs::CanonicalCodecConfig(options.codec));
    StrategyOptions canonical = options;
    canonical.codec = std::move(codec);
    return std::unique_ptr<Strategy>(std::make_unique<AllgatherAverage>(mailbox, canonical));
  }
  if (name == "reduce-scatter-average") {
    P2P_ASSIGN_OR_RETURN(codecs::CodecConfig codec, codecs::CanonicalCodecConfig(options.codec));
    if (!rule->coordinatewise()) {
      return InvalidArgument(
          "--strategy reduce-scatter-average combines gradients slice by slice; the rule '{}' "
          "compares whole gradients (use allgather-average)",
          rule->name());
    }
    if (codec.id != "none") {  // slices encoded, averaged slices re-encoded
      StrategyOptions canonical = options;
      canonical.codec = std::move(codec);
      return std::unique_ptr<Strategy>(std::make_unique<ReduceScatterCodec>(mailbox, canonical));
    }
    return std::unique_ptr<Strategy>(std::make_unique<ReduceScatterAverage>(mailbox, options));
  }
  if (auto made = MakeComparativeStrategy(name, mailbox, options, *rule)) return std::move(*made);
  return InvalidArgument("unknown sync strategy '{}'; valid: {}", name,
                         fmt::join(StrategyNames(), ", "));
}

std::vector<std::string> StrategyNames() {
  std::vector<std::string> names = {"allgather-average", "reduce-scatter-average"};
  for (std::string& n : ComparativeStrategyNames()) names.push_back(std::move(n));
  return names;
}

}  // namespace p2p::sync
