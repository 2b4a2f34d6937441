#include "sync/staleness.h"

#include <fmt/format.h>

#include <algorithm>

#include "sync/gradient_body.h"
#include "sync/strategy_util.h"

namespace p2p::sync {
StaleAllgather::StaleAllgather(Mailbox& mailbox, StrategyOptions options)
    : mailbox_(mailbox),
      options_(std::move(options)),
      encoder_(CodecOrDie(options_.codec, "--staleness")),
      rule_(rules::MakeCheckedRule(options_.rule)) {}

Status StaleAllgather::Average(Round round, uint32_t samples, std::span<float> grad) {
  ++timings_.rounds;
  round.view = mailbox_.view().id;
  P2P_RETURN_IF_ERROR(SendOwn(round, samples, grad));
  if (in_flight_.size() <= static_cast<size_t>(options_.staleness)) {
    std::fill(grad.begin(), grad.end(), 0.0f);  // nothing S rounds old yet
    ++warmup_;
    return Status::Ok();
  }
  P2P_RETURN_IF_ERROR(CombineOldest(grad));
  ++applied_;
  return Status::Ok();
}

Status StaleAllgather::SendOwn(Round round, uint32_t samples, std::span<const float> grad) {
  const codecs::Codec& codec = encoder_.codec();
  auto t = broker::Clock::now();
  const uint64_t seed = codecs::RoundSeed(options_.seed, mailbox_.rank(), round.epoch, round.step);
  if (Status s = EncodeGradientBody(encoder_, samples, grad, seed, sent_); !s.ok()) {
    return s.Annotate(
        fmt::format("encoding this peer's gradient of {} with {}", RoundName(round), codec.id()));
  }
  // Decoded now, right after encoding, as allgather-average does: error feedback sees the same
  // sequence of Encode and DecodeOwn calls.
  InFlight own{.round = round, .samples = samples, .decoded = std::vector<float>(grad.size())};
  P2P_RETURN_IF_ERROR(encoder_.DecodeOwn(GradientPayload(sent_), own.decoded));
  timings_.encode_seconds += SecondsSince(t);
  timings_.raw_bytes += grad.size_bytes();
  timings_.encoded_bytes += GradientPayload(sent_).size();
  broker::Envelope env;
  env.type = broker::MessageType::kGradient;
  env.epoch = round.epoch;
  env.step = round.step;
  env.codec.id = codec.config().id;
  env.codec.params = codec.config().params;
  env.body = sent_;
  P2P_RETURN_IF_ERROR(mailbox_.Send(std::move(env)));
  in_flight_.push_back(std::move(own));
  timings_.send_seconds += SecondsSince(t);
  return Status::Ok();
}

Status StaleAllgather::CombineOldest(std::span<float> grad) {
  const InFlight& old = in_flight_.front();
  const std::vector<int>& members = mailbox_.view().members;
  std::vector<int> others;
  for (int r : members) {
    if (r != mailbox_.rank()) others.push_back(r);
  }
  auto t = broker::Clock::now();
  P2P_ASSIGN_OR_RETURN(
      auto received,
      mailbox_.Collect(broker::MessageType::kGradient, old.round, others, t + options_.peer_timeout,
                       fmt::format("gradients of {} ({} rounds stale)", RoundName(old.round),
                                   options_.staleness)));
  timings_.wait_seconds += SecondsSince(t);
  t = broker::Clock::now();
  const codecs::Codec& codec = encoder_.codec();
  const size_t p = grad.size();
  theirs_.resize(p * others.size());
  std::vector<uint32_t> counts(static_cast<size_t>(mailbox_.size()), 0);
  counts[static_cast<size_t>(mailbox_.rank())] = old.samples;
  for (size_t i = 0; i < others.size(); ++i) {
    const int r = others[i];
    const broker::Envelope& e = received.at(r);
    if (e.codec.id != codec.config().id || e.codec.params != codec.config().params) {
      return InvalidArgument(
          "gradient from rank {} is encoded as '{}' but this run uses '{}' (every peer needs the "
          "same --compression and --strategy)",
          r, codecs::FormatCodecSpec({e.codec.id, e.codec.params}),
          codecs::FormatCodecSpec(codec.config()));
    }
    auto n = DecodeGradientBody(codec, e.body, std::span(theirs_).subspan(i * p, p));
    if (!n.ok()) return n.status().Annotate(fmt::format("gradient from rank {}", r));
    counts[static_cast<size_t>(r)] = *n;
  }
  timings_.decode_seconds += SecondsSince(t);
  uint64_t total = 0;
  for (uint32_t c : counts) total += c;
  if (total == 0) return InvalidArgument("no peer had samples in {}", RoundName(old.round));
  std::vector<rules::Input> inputs;
  size_t other = 0;
  for (int r : members) {  // rank order, the same inputs everywhere
    const std::span<const float> g =
        r == mailbox_.rank() ? std::span<const float>(old.decoded)
                             : std::span<const float>(theirs_).subspan((other++) * p, p);
    inputs.push_back({g, counts[static_cast<size_t>(r)]});
  }
  if (Status s = rule_->Aggregate(inputs, grad); !s.ok()) {
    return s.Annotate("combining the gradients of " + RoundName(old.round));
  }
  in_flight_.pop_front();
  timings_.reduce_seconds += SecondsSince(t);
  return Status::Ok();
}

Status CheckStaleness(const std::string& name, int s) {
  if (s < 0 || s > kMaxStaleness) {
    return InvalidArgument(
        "--staleness must be 0 (synchronous), 1 or {} (rounds a peer may run ahead of the "
        "slowest), got {}",
        kMaxStaleness, s);
  }
  if (s > 0 && name != "allgather-average") {
    return InvalidArgument(
        "--staleness {} is built for --strategy allgather-average only, not '{}' (pass "
        "--strategy allgather-average explicitly)",
        s, name);
  }
  return Status::Ok();
}

std::optional<Result<std::unique_ptr<Strategy>>> MakeStaleStrategy(const std::string& name,
                                                                   Mailbox& mailbox,
                                                                   const StrategyOptions& options) {
  using Made = Result<std::unique_ptr<Strategy>>;
  if (options.staleness == 0) return std::nullopt;
  if (Status s = CheckStaleness(name, options.staleness); !s.ok()) return Made(s);
  auto codec = codecs::CanonicalCodecConfig(options.codec);
  if (!codec.ok()) return Made(codec.status());
  StrategyOptions canonical = options;
  canonical.codec = std::move(*codec);
  return Made(std::unique_ptr<Strategy>(std::make_unique<StaleAllgather>(mailbox, canonical)));
}

}  // namespace p2p::sync
