#include "sync/reduce_scatter_codec.h"

#include <fmt/format.h>

#include <cstring>

#include "sync/gradient_body.h"
#include "sync/strategy_util.h"

namespace p2p::sync {
namespace {

// The gather stage's codec: the run's without momentum correction (its input is an average of
// velocities already; accumulating it again would apply the momentum twice).
codecs::CodecConfig WithoutMomentum(codecs::CodecConfig config) {
  if (auto it = config.params.find("momentum"); it != config.params.end()) it->second = 0;
  return config;
}

// Seeds of the two stages' payloads: per sender, round and slice owner, and different between
// the stages, so no two payloads of a run draw the same stochastic rounding.
constexpr uint64_t kScatterStage = 0, kGatherStage = 1;
uint64_t PayloadSeed(uint64_t run_seed, int sender, Round round, int owner, uint64_t stage) {
  const uint64_t sender_round = codecs::RoundSeed(run_seed, sender, round.epoch, round.step);
  return codecs::RoundSeed(sender_round, owner, stage, round.view);
}

// A body of u32 samples followed by a codec payload (what DecodeGradientBody takes).
broker::Bytes BodyHeader(uint32_t samples) {
  broker::Bytes body(kGradientBodyHeader);
  std::memcpy(body.data(), &samples, 4);
  return body;
}

}  // namespace

ReduceScatterCodec::ReduceScatterCodec(Mailbox& mailbox, StrategyOptions options)
    : mailbox_(mailbox),
      options_(std::move(options)),
      rule_(rules::MakeCheckedRule(options_.rule)),
      scatter_(CodecOrDie(options_.codec, "reduce-scatter-average")),
      gather_(CodecOrDie(WithoutMomentum(options_.codec), "reduce-scatter-average")) {}

void ReduceScatterCodec::Layout() {
  // The members of the current view share the slices, as in ReduceScatterAverage: after a view
  // change the survivors cover the whole vector again.
  const std::vector<int>& members = mailbox_.view().members;
  others_.clear();
  position_.assign(static_cast<size_t>(mailbox_.size()), 0);
  for (size_t i = 0; i < members.size(); ++i) {
    position_[static_cast<size_t>(members[i])] = i;
    if (members[i] != mailbox_.rank()) others_.push_back(members[i]);
  }
}

ReduceScatterCodec::Slice ReduceScatterCodec::SliceOf(int rank, size_t p) const {
  const size_t i = position_[static_cast<size_t>(rank)], w = mailbox_.view().members.size();
  const size_t begin = p * i / w;
  return {begin, p * (i + 1) / w - begin};
}

broker::Envelope ReduceScatterCodec::Encoded(broker::MessageType type, Round round,
                                             const codecs::Codec& codec, broker::Bytes body) const {
  broker::Envelope env;
  env.type = type;
  env.epoch = round.epoch;
  env.step = round.step;
  env.codec.id = codec.config().id;
  env.codec.params = codec.config().params;
  env.body = std::move(body);
  return env;
}

Status ReduceScatterCodec::CheckCodec(const broker::Envelope& e, const codecs::Codec& codec,
                                      int from, const char* what) const {
  if (e.codec.id == codec.config().id && e.codec.params == codec.config().params) {
    return Status::Ok();
  }
  return InvalidArgument(
      "{} from rank {} is encoded as '{}' but this run's reduce-scatter-average uses '{}' (every "
      "peer needs the same --strategy and --compression)",
      what, from, codecs::FormatCodecSpec({e.codec.id, e.codec.params}),
      codecs::FormatCodecSpec(codec.config()));
}

Status ReduceScatterCodec::Average(Round round, uint32_t samples, std::span<float> grad) {
  ++timings_.rounds;
  round.view = mailbox_.view().id;
  Layout();
  const std::string what = fmt::format("epoch {} step {}", round.epoch, round.step);
  timings_.raw_bytes += grad.size_bytes();
  P2P_RETURN_IF_ERROR(Scatter(round, samples, grad));
  // One deadline for both collects, as the uncompressed reduce-scatter has.
  const broker::Deadline deadline = broker::Clock::now() + options_.peer_timeout;
  P2P_ASSIGN_OR_RETURN(const uint64_t total, Reduce(round, samples, grad.size(), deadline, what));
  return Gather(round, total, grad, deadline, what);
}

// 1. Slice j of our gradient, encoded, to its owner j. A gradient without samples carries no
// weight: it is sent without error feedback, so it does not consume the residual.
Status ReduceScatterCodec::Scatter(Round round, uint32_t samples, std::span<const float> grad) {
  const auto t = broker::Clock::now();
  const size_t p = grad.size();
  const int me = mailbox_.rank();
  const codecs::Codec& codec = scatter_.codec();
  const bool feedback = samples > 0 && codec.error_feedback();
  scatter_.Prepare(grad, 0, p, samples > 0);
  for (int j : others_) {
    const Slice s = SliceOf(j, p);
    auto te = broker::Clock::now();
    broker::Bytes body = BodyHeader(samples);
    if (Status st = scatter_.EncodeSlice(
            s.begin, s.len, PayloadSeed(options_.seed, me, round, j, kScatterStage), body);
        !st.ok()) {
      return st.Annotate(fmt::format("encoding the gradient slice for rank {} with {}", j,
                                     codecs::FormatCodecSpec(codec.config())));
    }
    const auto payload = GradientPayload(body);
    timings_.encoded_bytes += payload.size();
    if (feedback) {  // what rank j will decode, for the residual
      decoded_.resize(s.len);
      P2P_RETURN_IF_ERROR(codec.Decode(payload, decoded_));
      scatter_.Transmitted(s.begin, decoded_);
    }
    timings_.encode_seconds += SecondsSince(te);
    P2P_RETURN_IF_ERROR(
        mailbox_.Send(Encoded(broker::MessageType::kGradient, round, codec, std::move(body)), j));
  }
  const Slice own = SliceOf(me, p);
  scatter_.Kept(own.begin, own.len);
  timings_.send_seconds += SecondsSince(t);
  return Status::Ok();
}

// 2. Our slice from everyone, decoded and combined with ours in rank order. Returns the total
// sample count.
Result<uint64_t> ReduceScatterCodec::Reduce(Round round, uint32_t samples, size_t p,
                                            broker::Deadline deadline, const std::string& what) {
  auto t = broker::Clock::now();
  P2P_ASSIGN_OR_RETURN(auto slices, mailbox_.Collect(broker::MessageType::kGradient, round, others_,
                                                     deadline, "gradient slices of " + what));
  timings_.wait_seconds += SecondsSince(t);
  t = broker::Clock::now();
  const int me = mailbox_.rank();
  const codecs::Codec& codec = scatter_.codec();
  const Slice own = SliceOf(me, p);
  theirs_.resize(own.len * others_.size());
  std::vector<uint32_t> counts(static_cast<size_t>(mailbox_.size()), 0);
  counts[static_cast<size_t>(me)] = samples;
  // Every slice is validated and decoded before any is used (DecodeGradientBody checks the
  // count against our slice's length, the codec checks the rest of the payload).
  for (size_t i = 0; i < others_.size(); ++i) {
    const int r = others_[i];
    const broker::Envelope& e = slices.at(r);
    P2P_RETURN_IF_ERROR(CheckCodec(e, codec, r, "gradient slice"));
    auto n = DecodeGradientBody(codec, e.body, std::span(theirs_).subspan(i * own.len, own.len));
    if (!n.ok()) return n.status().Annotate(fmt::format("gradient slice from rank {}", r));
    counts[static_cast<size_t>(r)] = *n;
  }
  timings_.decode_seconds += SecondsSince(t);
  uint64_t total = 0;
  for (uint32_t c : counts) total += c;
  if (total == 0) return InvalidArgument("no peer had samples in {}", what);
  // The uncompressed reduce-scatter's arithmetic on the decoded slices: the same rule, rank
  // order. Our own slice is what the scatter stage prepared (with its feedback), unquantised.
  averaged_.resize(own.len);
  std::vector<rules::Input> inputs;
  size_t other = 0;
  for (int r : mailbox_.view().members) {
    const std::span<const float> g =
        r == me ? scatter_.prepared().subspan(own.begin, own.len)
                : std::span<const float>(theirs_).subspan((other++) * own.len, own.len);
    inputs.push_back({g, counts[static_cast<size_t>(r)]});
  }
  if (Status s = rule_->Aggregate(inputs, averaged_); !s.ok()) {
    return s.Annotate("combining the gradient slices of " + what);
  }
  timings_.reduce_seconds += SecondsSince(t);
  return total;
}

// 3. Our averaged slice, encoded again, to everyone; every averaged slice, ours too, decoded from
// its payload into `grad`. The sample field carries the total, so a peer that counted
// differently is caught instead of silently mixing averages.
Status ReduceScatterCodec::Gather(Round round, uint64_t total, std::span<float> grad,
                                  broker::Deadline deadline, const std::string& what) {
  auto t = broker::Clock::now();
  const int me = mailbox_.rank();
  const size_t p = grad.size();
  const codecs::Codec& codec = gather_.codec();
  const Slice own = SliceOf(me, p);
  gather_.Prepare(averaged_, own.begin, p, /*feedback=*/true);
  broker::Bytes body = BodyHeader(static_cast<uint32_t>(total));
  if (Status s = gather_.EncodeSlice(own.begin, own.len,
                                     PayloadSeed(options_.seed, me, round, me, kGatherStage), body);
      !s.ok()) {
    return s.Annotate("encoding the averaged slice of " + what);
  }
  timings_.encoded_bytes += GradientPayload(body).size();
  const std::span<float> mine = grad.subspan(own.begin, own.len);
  P2P_RETURN_IF_ERROR(codec.Decode(GradientPayload(body), mine));
  gather_.Transmitted(own.begin, mine);
  timings_.encode_seconds += SecondsSince(t);
  P2P_RETURN_IF_ERROR(
      mailbox_.Send(Encoded(broker::MessageType::kAggregate, round, codec, std::move(body))));
  timings_.send_seconds += SecondsSince(t);

  t = broker::Clock::now();
  P2P_ASSIGN_OR_RETURN(auto averages,
                       mailbox_.Collect(broker::MessageType::kAggregate, round, others_, deadline,
                                        "averaged slices of " + what));
  timings_.wait_seconds += SecondsSince(t);
  t = broker::Clock::now();
  for (int r : others_) {
    const Slice s = SliceOf(r, p);
    const broker::Envelope& e = averages.at(r);
    P2P_RETURN_IF_ERROR(CheckCodec(e, codec, r, "averaged slice"));
    auto n = DecodeGradientBody(codec, e.body, grad.subspan(s.begin, s.len));
    if (!n.ok()) return n.status().Annotate(fmt::format("averaged slice from rank {}", r));
    if (*n != total) {
      return DataLoss("rank {} averaged {} over {} samples but this peer counts {}", r, what, *n,
                      total);
    }
  }
  timings_.decode_seconds += SecondsSince(t);
  timings_.reduce_seconds += SecondsSince(t);
  return Status::Ok();
}

std::vector<std::vector<float>> ReduceScatterCodec::SaveState() const {
  std::vector<std::vector<float>> state = SaveEncoderState(scatter_);
  for (auto& buffer : SaveEncoderState(gather_)) state.push_back(std::move(buffer));
  return state;
}

Status ReduceScatterCodec::LoadState(std::vector<std::vector<float>> state) {
  if (state.empty()) return Status::Ok();
  if (state.size() != 2 && state.size() != 4) {
    return InvalidArgument(
        "codec state of {} buffers; reduce-scatter-average with a codec keeps 4 (scatter "
        "residual and velocity, gather residual and velocity) and takes allgather-average's 2",
        state.size());
  }
  std::vector<std::vector<float>> gather;
  if (state.size() == 4) gather = {std::move(state[2]), std::move(state[3])};
  state.resize(2);
  P2P_RETURN_IF_ERROR(
      LoadEncoderState(scatter_, std::move(state)).Annotate("the scatter stage's codec state"));
  return LoadEncoderState(gather_, std::move(gather)).Annotate("the gather stage's codec state");
}

}  // namespace p2p::sync
