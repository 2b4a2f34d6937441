#include "sync/sharded_reduce.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>

#include "sync/gradient_body.h"
#include "sync/strategy_util.h"

namespace p2p::sync {
namespace {

// A shard or aggregate body must be raw: a peer with another --strategy sends something else.
Status CheckRaw(const broker::Envelope& e, int from, const std::string& strategy) {
  if (e.codec.id == "none" && e.codec.params.empty()) return Status::Ok();
  return InvalidArgument(
      "gradient shard from rank {} is encoded as '{}'; {} sends raw shards (every peer needs the "
      "same --strategy)",
      from, e.codec.id, strategy);
}

}  // namespace

ShardedReduce::ShardedReduce(Mailbox& mailbox, StrategyOptions options, int shards,
                             std::string name)
    : mailbox_(mailbox),
      options_(std::move(options)),
      shards_(shards),
      name_(std::move(name)),
      rule_(rules::MakeCheckedRule(options_.rule)) {
  P2P_CHECK(shards_ >= 1, "{} needs at least one shard", name_);
}

std::vector<ShardedReduce::Shard> ShardedReduce::Layout(const std::vector<int>& members,
                                                        size_t p) const {
  const size_t w = members.size();
  const size_t m = std::min(static_cast<size_t>(shards_), w);
  std::vector<Shard> layout(m);
  for (size_t j = 0; j < m; ++j) {
    layout[j].aggregator = members[j * w / m];  // distinct for j < m <= w
    layout[j].begin = p * j / m;
    layout[j].len = p * (j + 1) / m - layout[j].begin;
  }
  return layout;
}

Status ShardedReduce::Average(Round round, uint32_t samples, std::span<float> grad) {
  ++timings_.rounds;
  // The current view's members share the work, so after a view change the survivors cover the
  // whole vector again; its id tells a redone round from the failed one.
  const std::vector<int>& members = mailbox_.view().members;
  round.view = mailbox_.view().id;
  const int me = mailbox_.rank();
  others_.clear();
  for (int r : members) {
    if (r != me) others_.push_back(r);
  }
  const std::vector<Shard> layout = Layout(members, grad.size());
  const auto mine = std::find_if(layout.begin(), layout.end(),
                                 [me](const Shard& s) { return s.aggregator == me; });

  // 1. Shard j of our gradient to its aggregator.
  auto t = broker::Clock::now();
  const auto deadline = t + options_.peer_timeout;
  for (const Shard& s : layout) {
    if (s.aggregator == me) continue;
    P2P_RETURN_IF_ERROR(
        mailbox_.Send(RawEnvelope(broker::MessageType::kGradient, round,
                                  EncodeGradientBody(samples, grad.subspan(s.begin, s.len))),
                      s.aggregator));
  }
  timings_.raw_bytes += grad.size_bytes();
  timings_.encoded_bytes += grad.size_bytes();
  timings_.send_seconds += SecondsSince(t);

  // 2. An aggregator reduces its shard and sends the result to everyone.
  uint64_t total = 0;
  if (mine != layout.end()) {
    auto reduced = ReduceShard(round, *mine, samples, grad, deadline);
    if (!reduced.ok()) {
      // Announced as a shard over 0 samples (see below), so the others fail now instead of
      // waiting out their deadline; a timeout or a suspected peer is the view change's business.
      const StatusCode code = reduced.status().code();
      if (code != StatusCode::kTimeout && code != StatusCode::kUnavailable) {
        averaged_.assign(mine->len, 0.0f);
        (void)mailbox_.Send(
            RawEnvelope(broker::MessageType::kAggregate, round, EncodeGradientBody(0, averaged_)));
      }
      return reduced.status();
    }
    total = *reduced;
    t = broker::Clock::now();
    P2P_RETURN_IF_ERROR(
        mailbox_.Send(RawEnvelope(broker::MessageType::kAggregate, round,
                                  EncodeGradientBody(static_cast<uint32_t>(total), averaged_))));
    timings_.send_seconds += SecondsSince(t);
    if (total == 0) return InvalidArgument("no peer had samples in {}", RoundName(round));
  }

  // 3. The other aggregators' shards.
  std::vector<int> aggregators;
  for (const Shard& s : layout) {
    if (s.aggregator != me) aggregators.push_back(s.aggregator);
  }
  t = broker::Clock::now();
  P2P_ASSIGN_OR_RETURN(
      auto averages, mailbox_.Collect(broker::MessageType::kAggregate, round, aggregators, deadline,
                                      "averaged shards of " + RoundName(round)));
  timings_.wait_seconds += SecondsSince(t);
  t = broker::Clock::now();
  if (mine != layout.end()) {
    std::copy(averaged_.begin(), averaged_.end(),
              grad.begin() + static_cast<std::ptrdiff_t>(mine->begin));
  }
  std::optional<uint64_t> agreed_total;
  if (mine != layout.end()) agreed_total = total;
  for (const Shard& s : layout) {
    if (s.aggregator == me) continue;
    const broker::Envelope& e = averages.at(s.aggregator);
    P2P_RETURN_IF_ERROR(CheckRaw(e, s.aggregator, name_));
    auto n = DecodeGradientBody(e.body, grad.subspan(s.begin, s.len));
    if (!n.ok())
      return n.status().Annotate(fmt::format("averaged shard from rank {}", s.aggregator));
    if (*n == 0) {
      return InvalidArgument(
          "the aggregator of shard {} (rank {}) could not combine {}: no peer had samples, or it "
          "refused a shard or its --aggregation rule failed (its log says which)",
          &s - layout.data(), s.aggregator, RoundName(round));
    }
    if (agreed_total && *n != *agreed_total) {
      return DataLoss("rank {} averaged {} over {} samples but rank {} over {}", s.aggregator,
                      RoundName(round), *n, layout.front().aggregator, *agreed_total);
    }
    agreed_total = *n;
  }
  timings_.reduce_seconds += SecondsSince(t);
  return Status::Ok();
}

Result<uint64_t> ShardedReduce::ReduceShard(Round round, const Shard& s, uint32_t samples,
                                            std::span<const float> grad,
                                            broker::Deadline deadline) {
  auto t = broker::Clock::now();
  P2P_ASSIGN_OR_RETURN(auto shards,
                       mailbox_.Collect(broker::MessageType::kGradient, round, others_, deadline,
                                        "gradient shards of " + RoundName(round)));
  timings_.wait_seconds += SecondsSince(t);
  t = broker::Clock::now();
  const int me = mailbox_.rank();
  theirs_.resize(s.len * others_.size());
  std::vector<uint32_t> counts(static_cast<size_t>(mailbox_.size()), 0);
  counts[static_cast<size_t>(me)] = samples;
  for (size_t i = 0; i < others_.size(); ++i) {
    const int r = others_[i];
    const broker::Envelope& e = shards.at(r);
    P2P_RETURN_IF_ERROR(CheckRaw(e, r, name_));
    auto n = DecodeGradientBody(e.body, std::span(theirs_).subspan(i * s.len, s.len));
    if (!n.ok()) return n.status().Annotate(fmt::format("gradient shard from rank {}", r));
    counts[static_cast<size_t>(r)] = *n;
  }
  timings_.decode_seconds += SecondsSince(t);
  uint64_t total = 0;
  for (uint32_t c : counts) total += c;
  averaged_.assign(s.len, 0.0f);
  if (total == 0) return total;  // the caller tells everyone, then fails the round
  // Exactly allgather-average's arithmetic for these coordinates: the same rule, rank order.
  std::vector<rules::Input> inputs;
  size_t other = 0;
  for (int r : mailbox_.view().members) {
    const std::span<const float> g =
        r == me ? grad.subspan(s.begin, s.len)
                : std::span<const float>(theirs_).subspan((other++) * s.len, s.len);
    inputs.push_back({g, counts[static_cast<size_t>(r)]});
  }
  if (Status st = rule_->Aggregate(inputs, averaged_); !st.ok()) {
    return st.Annotate("combining the gradient shards of " + RoundName(round));
  }
  timings_.reduce_seconds += SecondsSince(t);
  return total;
}

Result<std::optional<int>> ParseShardedStrategy(const std::string& name) {
  std::string_view prefix;
  for (std::string_view p : {"hierarchical:shards=", "k-reduce:k="}) {
    if (name.starts_with(p)) prefix = p;
  }
  if (prefix.empty()) {
    if (name == "hierarchical" || name == "k-reduce" || name.starts_with("hierarchical:") ||
        name.starts_with("k-reduce:")) {
      return InvalidArgument(
          "--strategy {} needs its aggregator count: hierarchical:shards=M or k-reduce:k=K, "
          "with 1 <= M, K <= the number of peers",
          name);
    }
    return std::optional<int>();
  }
  const std::string_view digits = std::string_view(name).substr(prefix.size());
  int count = 0;
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), count);
  if (digits.empty() || ec != std::errc() || end != digits.data() + digits.size() || count < 1) {
    return InvalidArgument("--strategy {}: '{}' is not a positive whole number of aggregators",
                           name, digits);
  }
  return std::optional<int>(count);
}

}  // namespace p2p::sync
