#include "sync/reduce_scatter_average.h"

#include <fmt/format.h>

#include "common/byte_pool.h"
#include "sync/gradient_body.h"
#include "sync/strategy_util.h"

namespace p2p::sync {
ReduceScatterAverage::ReduceScatterAverage(Mailbox& mailbox, StrategyOptions options)
    : mailbox_(mailbox),
      options_(std::move(options)),
      rule_(rules::MakeCheckedRule(options_.rule)) {}

Status ReduceScatterAverage::Average(Round round, uint32_t samples, std::span<float> grad) {
  ++timings_.rounds;
  // The members of the current view share the slices: member i (in rank order) owns slice i of
  // W = members.size(), so after a view change the survivors cover the whole vector again.
  const std::vector<int>& members = mailbox_.view().members;
  round.view = mailbox_.view().id;
  others_.clear();
  std::vector<size_t> position(static_cast<size_t>(mailbox_.size()), 0);
  for (size_t i = 0; i < members.size(); ++i) {
    position[static_cast<size_t>(members[i])] = i;
    if (members[i] != mailbox_.rank()) others_.push_back(members[i]);
  }
  const size_t p = grad.size(), w = members.size();
  const int me = mailbox_.rank();
  const auto slice = [&](int r) {
    const size_t i = position[static_cast<size_t>(r)];
    const size_t begin = p * i / w;
    return std::pair{begin, p * (i + 1) / w - begin};
  };
  const std::string what = fmt::format("epoch {} step {}", round.epoch, round.step);

  // 1. Slice j of our gradient to its owner j.
  auto t = broker::Clock::now();
  for (int j : others_) {
    const auto [begin, len] = slice(j);
    P2P_RETURN_IF_ERROR(
        mailbox_.Send(RawEnvelope(broker::MessageType::kGradient, round,
                                  EncodeGradientBody(samples, grad.subspan(begin, len))),
                      j));
  }
  timings_.raw_bytes += grad.size_bytes();
  timings_.encoded_bytes += grad.size_bytes();
  timings_.send_seconds += SecondsSince(t);

  // 2. Our slice from everyone, averaged in rank order.
  t = broker::Clock::now();
  const auto deadline = t + options_.peer_timeout;
  P2P_ASSIGN_OR_RETURN(auto slices, mailbox_.Collect(broker::MessageType::kGradient, round, others_,
                                                     deadline, "gradient slices of " + what));
  timings_.wait_seconds += SecondsSince(t);
  t = broker::Clock::now();
  const auto [mine_begin, mine_len] = slice(me);
  theirs_.resize(mine_len * others_.size());
  std::vector<uint32_t> counts(static_cast<size_t>(mailbox_.size()), 0);
  counts[static_cast<size_t>(me)] = samples;
  for (size_t i = 0; i < others_.size(); ++i) {
    const int r = others_[i];
    const broker::Envelope& e = slices.at(r);
    if (e.codec.id != "none" || !e.codec.params.empty()) {
      return InvalidArgument(
          "gradient slice from rank {} is encoded as '{}'; reduce-scatter-average "
          "sends raw slices (every peer needs the same --strategy)",
          r, e.codec.id);
    }
    auto n = DecodeGradientBody(e.body, std::span(theirs_).subspan(i * mine_len, mine_len));
    if (!n.ok()) return n.status().Annotate(fmt::format("gradient slice from rank {}", r));
    counts[static_cast<size_t>(r)] = *n;
  }
  timings_.decode_seconds += SecondsSince(t);
  uint64_t total = 0;
  for (uint32_t c : counts) total += c;
  if (total == 0) return InvalidArgument("no peer had samples in {}", what);
  // Exactly allgather-average's arithmetic for these coordinates: the same rule, rank order.
  averaged_.resize(mine_len);
  std::vector<rules::Input> inputs;
  size_t other = 0;
  for (int r : members) {
    const std::span<const float> g =
        r == me ? std::span<const float>(grad).subspan(mine_begin, mine_len)
                : std::span<const float>(theirs_).subspan((other++) * mine_len, mine_len);
    inputs.push_back({g, counts[static_cast<size_t>(r)]});
  }
  if (Status s = rule_->Aggregate(inputs, averaged_); !s.ok()) {
    return s.Annotate("combining the gradient slices of " + what);
  }
  timings_.reduce_seconds += SecondsSince(t);

  // 3. Averaged slices to and from everyone. The sample field carries the total, so a peer that
  // counted differently is caught instead of silently mixing averages.
  t = broker::Clock::now();
  P2P_RETURN_IF_ERROR(
      mailbox_.Send(RawEnvelope(broker::MessageType::kAggregate, round,
                                EncodeGradientBody(static_cast<uint32_t>(total), averaged_))));
  timings_.send_seconds += SecondsSince(t);
  t = broker::Clock::now();
  P2P_ASSIGN_OR_RETURN(auto averages,
                       mailbox_.Collect(broker::MessageType::kAggregate, round, others_, deadline,
                                        "averaged slices of " + what));
  timings_.wait_seconds += SecondsSince(t);
  t = broker::Clock::now();
  std::copy(averaged_.begin(), averaged_.end(),
            grad.begin() + static_cast<std::ptrdiff_t>(mine_begin));
  for (int r : others_) {
    const auto [begin, len] = slice(r);
    auto n = DecodeGradientBody(averages.at(r).body, grad.subspan(begin, len));
    if (!n.ok()) return n.status().Annotate(fmt::format("averaged slice from rank {}", r));
    if (*n != total) {
      return DataLoss("rank {} averaged {} over {} samples but this peer counts {}", r, what, *n,
                      total);
    }
  }
  timings_.reduce_seconds += SecondsSince(t);
  // The received buffers serve the next round's messages (common/byte_pool.h).
  for (auto* received : {&slices, &averages}) {
    for (auto& [r, e] : *received) BytePool::Global().Give(std::move(e.body));
  }
  return Status::Ok();
}

}  // namespace p2p::sync
