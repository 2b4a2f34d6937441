#include "sync/allreduce_master.h"

#include <fmt/format.h>

#include <algorithm>

#include "sync/gradient_body.h"
#include "sync/strategy_util.h"

namespace p2p::sync {
AllreduceMaster::AllreduceMaster(Mailbox& mailbox, StrategyOptions options)
    : mailbox_(mailbox),
      options_(std::move(options)),
      encoder_(CodecOrDie(options_.codec, "allreduce-master")),
      rule_(rules::MakeCheckedRule(options_.rule)) {}

Status AllreduceMaster::Average(Round round, uint32_t samples, std::span<float> grad) {
  ++timings_.rounds;
  // The aggregator is the lowest member of the current view, so a view change that drops it
  // hands the role to the next one; the view id tells a redone round from the failed one.
  const std::vector<int>& members = mailbox_.view().members;
  round.view = mailbox_.view().id;
  const int master = members.front();
  const codecs::Codec& codec = encoder_.codec();
  auto t = broker::Clock::now();
  const uint64_t seed = codecs::RoundSeed(options_.seed, mailbox_.rank(), round.epoch, round.step);
  if (Status s = EncodeGradientBody(encoder_, samples, grad, seed, sent_); !s.ok()) {
    return s.Annotate(
        fmt::format("encoding this peer's gradient of {} with {}", RoundName(round), codec.id()));
  }
  timings_.encode_seconds += SecondsSince(t);
  timings_.raw_bytes += grad.size_bytes();
  timings_.encoded_bytes += GradientPayload(sent_).size();
  const auto deadline = t + options_.peer_timeout;
  if (mailbox_.rank() == master) {
    Status s = Aggregate(round, samples, grad, deadline);
    // A round the aggregator cannot complete (no samples anywhere, a rule that refuses its
    // inputs, a malformed gradient) is announced as an aggregate over 0 samples, so the others
    // fail now with a pointer to it instead of waiting out their deadline.
    if (!s.ok() && s.code() != StatusCode::kTimeout && s.code() != StatusCode::kUnavailable) {
      std::fill(grad.begin(), grad.end(), 0.0f);
      (void)SendAggregate(round, 0, grad);
    }
    return s;
  }
  // Error feedback: the residual is what the payload did not carry, whoever decodes it.
  if (codec.error_feedback()) {
    mine_.resize(grad.size());
    P2P_RETURN_IF_ERROR(encoder_.DecodeOwn(GradientPayload(sent_), mine_));
  }

  broker::Envelope env;
  env.type = broker::MessageType::kGradient;
  env.epoch = round.epoch;
  env.step = round.step;
  env.codec.id = codec.config().id;
  env.codec.params = codec.config().params;
  env.body = sent_;
  P2P_RETURN_IF_ERROR(mailbox_.Send(std::move(env), master));
  timings_.send_seconds += SecondsSince(t);
  return Receive(round, master, grad, deadline);
}

Status AllreduceMaster::Aggregate(Round round, uint32_t samples, std::span<float> grad,
                                  broker::Deadline deadline) {
  const std::vector<int>& members = mailbox_.view().members;
  const int me = mailbox_.rank();
  others_.clear();
  for (int r : members) {
    if (r != me) others_.push_back(r);
  }
  auto t = broker::Clock::now();
  P2P_ASSIGN_OR_RETURN(auto received,
                       mailbox_.Collect(broker::MessageType::kGradient, round, others_, deadline,
                                        "gradients for the aggregator of " + RoundName(round)));
  timings_.wait_seconds += SecondsSince(t);
  t = broker::Clock::now();
  // Every input decoded (ours from the payload the others would have received) before any is
  // combined, so a bad one fails the round before anything changes.
  const codecs::Codec& codec = encoder_.codec();
  const size_t p = grad.size();
  mine_.resize(p);
  P2P_RETURN_IF_ERROR(encoder_.DecodeOwn(GradientPayload(sent_), mine_));
  theirs_.resize(p * others_.size());
  std::vector<uint32_t> counts(static_cast<size_t>(mailbox_.size()), 0);
  counts[static_cast<size_t>(me)] = samples;
  for (size_t i = 0; i < others_.size(); ++i) {
    const int r = others_[i];
    const broker::Envelope& e = received.at(r);
    if (e.codec.id != codec.config().id || e.codec.params != codec.config().params) {
      return InvalidArgument(
          "gradient from rank {} is encoded as '{}' but this run uses '{}' (every peer needs the "
          "same --compression)",
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
  if (total == 0) return InvalidArgument("no peer had samples in {}", RoundName(round));
  std::vector<rules::Input> inputs;
  size_t other = 0;
  for (int r : members) {
    const std::span<const float> g =
        r == me ? std::span<const float>(mine_)
                : std::span<const float>(theirs_).subspan((other++) * p, p);
    inputs.push_back({g, counts[static_cast<size_t>(r)]});
  }
  if (Status s = rule_->Aggregate(inputs, grad); !s.ok()) {
    return s.Annotate("combining the gradients of " + RoundName(round));
  }
  timings_.reduce_seconds += SecondsSince(t);
  t = broker::Clock::now();
  P2P_RETURN_IF_ERROR(SendAggregate(round, total, grad));
  timings_.send_seconds += SecondsSince(t);
  return Status::Ok();
}

Status AllreduceMaster::SendAggregate(Round round, uint64_t total, std::span<const float> grad) {
  if (others_.empty()) return Status::Ok();
  broker::Envelope env;
  env.type = broker::MessageType::kAggregate;
  env.epoch = round.epoch;
  env.step = round.step;
  env.codec.id = "none";
  // The sample field carries the total; 0 tells the others that the round has no samples.
  env.body = EncodeGradientBody(static_cast<uint32_t>(total), grad);
  return mailbox_.Send(std::move(env));
}

Status AllreduceMaster::Receive(Round round, int master, std::span<float> grad,
                                broker::Deadline deadline) {
  auto t = broker::Clock::now();
  P2P_ASSIGN_OR_RETURN(auto aggregate,
                       mailbox_.Collect(broker::MessageType::kAggregate, round, {master}, deadline,
                                        fmt::format("the aggregate of {} from aggregator rank {}",
                                                    RoundName(round), master)));
  timings_.wait_seconds += SecondsSince(t);
  t = broker::Clock::now();
  const broker::Envelope& e = aggregate.at(master);
  if (e.codec.id != "none" || !e.codec.params.empty()) {
    return InvalidArgument(
        "the aggregate from rank {} is encoded as '{}'; allreduce-master sends raw aggregates "
        "(every peer needs the same --strategy)",
        master, e.codec.id);
  }
  auto n = DecodeGradientBody(e.body, grad);
  if (!n.ok()) return n.status().Annotate(fmt::format("aggregate from rank {}", master));
  if (*n == 0) {
    return InvalidArgument(
        "the aggregator (rank {}) could not combine {}: no peer had samples, or it refused a "
        "gradient or its --aggregation rule failed (its log says which)",
        master, RoundName(round));
  }
  timings_.reduce_seconds += SecondsSince(t);
  return Status::Ok();
}

std::vector<std::vector<float>> AllreduceMaster::SaveState() const {
  return SaveEncoderState(encoder_);
}

Status AllreduceMaster::LoadState(std::vector<std::vector<float>> state) {
  return LoadEncoderState(encoder_, std::move(state));
}

}  // namespace p2p::sync
