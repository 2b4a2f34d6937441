#include "sync/allgather_average.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>

#include "sync/gradient_body.h"

namespace p2p::sync {

AllgatherAverage::AllgatherAverage(Mailbox& mailbox, StrategyOptions options)
    : mailbox_(mailbox), options_(options) {
  for (int r = 0; r < mailbox_.size(); ++r) {
    if (r != mailbox_.rank()) others_.push_back(r);
  }
}

namespace {
double SecondsSince(broker::Clock::time_point t) {
  return std::chrono::duration<double>(broker::Clock::now() - t).count();
}
}  // namespace

Status AllgatherAverage::Average(Round round, uint32_t samples, std::span<float> grad) {
  ++timings_.rounds;
  auto t = broker::Clock::now();
  broker::Envelope env;
  env.type = broker::MessageType::kGradient;
  env.epoch = round.epoch;
  env.step = round.step;
  env.codec.id = "none";
  env.body = EncodeGradientBody(samples, grad);
  P2P_RETURN_IF_ERROR(mailbox_.Send(std::move(env)));
  timings_.send_seconds += SecondsSince(t);
  t = broker::Clock::now();
  const auto deadline = t + options_.peer_timeout;
  P2P_ASSIGN_OR_RETURN(
      auto received,
      mailbox_.Collect(broker::MessageType::kGradient, round, others_, deadline,
                       fmt::format("gradients of epoch {} step {}", round.epoch, round.step)));

  timings_.wait_seconds += SecondsSince(t);
  t = broker::Clock::now();
  // Decode every gradient before summing, so a bad one fails the round before any state changes.
  const size_t p = grad.size();
  mine_.assign(grad.begin(), grad.end());
  theirs_.resize(p * others_.size());
  std::vector<uint32_t> counts(mailbox_.size(), 0);
  counts[mailbox_.rank()] = samples;
  for (size_t i = 0; i < others_.size(); ++i) {
    const int r = others_[i];
    auto n = DecodeGradientBody(received.at(r).body, std::span(theirs_).subspan(i * p, p));
    if (!n.ok()) return n.status().Annotate(fmt::format("gradient from rank {}", r));
    counts[r] = *n;
  }
  uint64_t total = 0;
  for (uint32_t c : counts) total += c;
  if (total == 0)
    return InvalidArgument("no peer had samples in epoch {} step {}", round.epoch, round.step);
  // Rank order, float weights computed the same way everywhere: identical bits on every peer.
  std::fill(grad.begin(), grad.end(), 0.0f);
  size_t other = 0;
  for (int r = 0; r < mailbox_.size(); ++r) {
    const float w = static_cast<float>(static_cast<double>(counts[r]) / static_cast<double>(total));
    const float* g = r == mailbox_.rank() ? mine_.data() : theirs_.data() + (other++) * p;
    if (w == 0.0f) continue;
    for (size_t i = 0; i < p; ++i) grad[i] += w * g[i];
  }
  timings_.reduce_seconds += SecondsSince(t);
  return Status::Ok();
}

Result<std::unique_ptr<Strategy>> MakeStrategy(const std::string& name, Mailbox& mailbox,
                                               const StrategyOptions& options) {
  if (name == "allgather-average") {
    return std::unique_ptr<Strategy>(std::make_unique<AllgatherAverage>(mailbox, options));
  }
  return InvalidArgument("unknown sync strategy '{}'; valid: {}", name,
                         fmt::join(StrategyNames(), ", "));
}

std::vector<std::string> StrategyNames() { return {"allgather-average"}; }

}  // namespace p2p::sync
