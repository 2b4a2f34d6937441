#include "sync/mlless.h"

#include <fmt/format.h>

#include <cmath>
#include <map>

#include "sync/strategy_util.h"

namespace p2p::sync {
namespace {

// The round count travels as a float in SaveState; floats hold integers exactly up to 2^24.
constexpr uint64_t kMaxSavedRounds = uint64_t{1} << 24;

}  // namespace

Status CheckSignificance(double v) {
  if (!std::isfinite(v) || v < 0 || v > 1e6) {
    return InvalidArgument(
        "--significance must be a finite number >= 0 (the relative change |lr x accumulated "
        "gradient / parameter| a coordinate needs before it is published, e.g. 0.01 for 1 %), "
        "got {}",
        v);
  }
  return Status::Ok();
}

Status CheckMlless(double significance, const codecs::CodecConfig& codec,
                   std::string_view rule_name) {
  P2P_RETURN_IF_ERROR(CheckSignificance(significance));
  P2P_ASSIGN_OR_RETURN(const codecs::CodecConfig canonical, codecs::CanonicalCodecConfig(codec));
  if (canonical.id != "none") {
    return InvalidArgument(
        "--strategy mlless sends only the significant coordinates as (index, value) pairs; it "
        "cannot also use --compression {}",
        codecs::FormatCodecSpec(canonical));
  }
  if (rule_name != "mean") {
    return InvalidArgument(
        "--strategy mlless sums the peers' published updates; it cannot use --aggregation {} "
        "(use allgather-average for robust rules)",
        rule_name);
  }
  return Status::Ok();
}

Mlless::Mlless(Mailbox& mailbox, StrategyOptions options)
    : mailbox_(mailbox), options_(std::move(options)) {}

Result<MllessUpdate> Mlless::Select(uint32_t samples, std::span<const float> grad) {
  if (!options_.parameters) {
    return Internal("--strategy mlless was not given the model's parameters");
  }
  const std::span<const float> w = options_.parameters();
  const size_t p = grad.size();
  if (w.size() != p) {
    return InvalidArgument("mlless: the gradient has {} values but the model has {} parameters", p,
                           w.size());
  }
  if (acc_.empty()) acc_.assign(p, 0.0f);
  if (acc_.size() != p) {
    return InvalidArgument("mlless: the accumulator holds {} values but the gradient {}",
                           acc_.size(), p);
  }
  // A round without samples adds nothing, but what accumulated may still become significant.
  if (samples > 0) {
    for (size_t f = 0; f < p; ++f) {
      if (!std::isfinite(grad[f])) {
        return InvalidArgument("mlless: gradient value {} is not finite ({})", f, grad[f]);
      }
      acc_[f] += grad[f];
    }
  }
  // MLLess's threshold decays with the square root of the step count. The accumulated gradient
  // times the learning rate is the parameter change it stands for.
  const double lr = options_.learning_rate > 0 ? options_.learning_rate : 1.0;
  const float threshold =
      static_cast<float>(options_.significance / std::sqrt(static_cast<double>(rounds_ + 1)) / lr);
  MllessUpdate update;
  update.samples = samples;
  for (size_t f = 0; f < p; ++f) {
    if (std::fabs(acc_[f]) > threshold * std::fabs(w[f])) {
      update.index.push_back(static_cast<uint32_t>(f));
      update.value.push_back(acc_[f]);
      acc_[f] = 0.0f;
    }
  }
  ++rounds_;
  published_ += update.index.size();
  return update;
}

Status Mlless::Average(Round round, uint32_t samples, std::span<float> grad) {
  ++timings_.rounds;
  const std::vector<int>& members = mailbox_.view().members;
  round.view = mailbox_.view().id;
  others_.clear();
  for (int r : members) {
    if (r != mailbox_.rank()) others_.push_back(r);
  }
  auto t = broker::Clock::now();
  P2P_ASSIGN_OR_RETURN(MllessUpdate mine, Select(samples, grad));
  broker::Envelope env;
  env.type = broker::MessageType::kGradient;
  env.epoch = round.epoch;
  env.step = round.step;
  env.codec.id = kMllessCodecId;
  env.body = EncodeMllessBody(mine, grad.size());
  timings_.encode_seconds += SecondsSince(t);
  timings_.raw_bytes += grad.size_bytes();
  timings_.encoded_bytes += env.body.size();
  P2P_RETURN_IF_ERROR(mailbox_.Send(std::move(env)));
  timings_.send_seconds += SecondsSince(t);
  t = broker::Clock::now();
  P2P_ASSIGN_OR_RETURN(auto received, mailbox_.Collect(broker::MessageType::kGradient, round,
                                                       others_, t + options_.peer_timeout,
                                                       "mlless updates of " + RoundName(round)));
  timings_.wait_seconds += SecondsSince(t);
  t = broker::Clock::now();
  P2P_RETURN_IF_ERROR(Combine(round, mine, received, grad));
  timings_.reduce_seconds += SecondsSince(t);
  return Status::Ok();
}

Status Mlless::Combine(Round round, const MllessUpdate& mine,
                       std::map<int, broker::Envelope>& received, std::span<float> grad) {
  // Every update decoded before any is summed, so a bad one fails the round before grad changes.
  std::map<int, MllessUpdate> updates;
  for (int r : others_) {
    const broker::Envelope& e = received.at(r);
    if (e.codec.id != kMllessCodecId || !e.codec.params.empty()) {
      return InvalidArgument(
          "the update from rank {} is encoded as '{}', not mlless's (every peer needs the same "
          "--strategy)",
          r, e.codec.id);
    }
    auto update = DecodeMllessBody(e.body, grad.size());
    if (!update.ok()) return update.status().Annotate(fmt::format("update from rank {}", r));
    updates.emplace(r, std::move(*update));
  }
  std::fill(grad.begin(), grad.end(), 0.0f);
  uint32_t with_samples = 0;
  for (int r : mailbox_.view().members) {  // rank order: the same sums on every peer
    const MllessUpdate& u = r == mailbox_.rank() ? mine : updates.at(r);
    if (u.samples > 0) ++with_samples;
    for (size_t i = 0; i < u.index.size(); ++i) grad[u.index[i]] += u.value[i];
  }
  if (with_samples == 0) {
    return InvalidArgument("no peer had samples in {}", RoundName(round));
  }
  const auto divisor = static_cast<float>(with_samples);
  for (float& g : grad) g /= divisor;
  return Status::Ok();
}

std::vector<std::vector<float>> Mlless::SaveState() const {
  if (acc_.empty() && rounds_ == 0) return {};
  P2P_CHECK(rounds_ < kMaxSavedRounds, "mlless ran {} rounds, more than a checkpoint holds",
            rounds_);
  return {acc_, {static_cast<float>(rounds_)}};
}

Status Mlless::LoadState(std::vector<std::vector<float>> state) {
  if (state.empty()) {
    acc_.clear();
    rounds_ = 0;
    return Status::Ok();
  }
  if (state.size() != 2 || state[1].size() != 1 || !(state[1][0] >= 0) ||
      state[1][0] >= static_cast<float>(kMaxSavedRounds) ||
      state[1][0] != std::floor(state[1][0])) {
    return InvalidArgument(
        "the checkpoint's sync state is not an mlless accumulator and round count; resume with "
        "the checkpoint's --strategy");
  }
  for (float v : state[0]) {
    if (!std::isfinite(v))
      return InvalidArgument("the checkpoint's mlless accumulator is not finite");
  }
  acc_ = std::move(state[0]);
  rounds_ = static_cast<uint64_t>(state[1][0]);
  return Status::Ok();
}

}  // namespace p2p::sync
