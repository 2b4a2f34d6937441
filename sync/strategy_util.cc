#include "sync/strategy_util.h"

namespace p2p::sync {

std::string RoundName(Round round) {
  return fmt::format("epoch {} step {}", round.epoch, round.step);
}

std::shared_ptr<const codecs::Codec> CodecOrDie(const codecs::CodecConfig& config,
                                                std::string_view strategy) {
  auto codec = codecs::MakeCodec(config);
  P2P_CHECK(codec.ok(), "invalid codec for {}: {}", strategy, codec.status().ToString());
  return std::shared_ptr<const codecs::Codec>(std::move(*codec));
}

double SecondsSince(broker::Clock::time_point t) {
  return std::chrono::duration<double>(broker::Clock::now() - t).count();
}

broker::Envelope RawEnvelope(broker::MessageType type, Round round, broker::Bytes body) {
  broker::Envelope env;
  env.type = type;
  env.epoch = round.epoch;
  env.step = round.step;
  env.codec.id = "none";
  env.body = std::move(body);
  return env;
}

std::vector<std::vector<float>> SaveEncoderState(const codecs::GradientEncoder& encoder) {
  if (!encoder.codec().error_feedback()) return {};
  return {{encoder.residual().begin(), encoder.residual().end()},
          {encoder.velocity().begin(), encoder.velocity().end()}};
}

Status LoadEncoderState(codecs::GradientEncoder& encoder, std::vector<std::vector<float>> state) {
  if (state.empty()) return Status::Ok();
  if (state.size() != 2) {
    return InvalidArgument("codec state of {} buffers; expected residual and velocity",
                           state.size());
  }
  return encoder.Restore(std::move(state[0]), std::move(state[1]));
}

std::vector<std::vector<float>> SaveEncoderState(const SlicedEncoder& encoder) {
  if (!encoder.codec().error_feedback()) return {};
  return {{encoder.residual().begin(), encoder.residual().end()},
          {encoder.velocity().begin(), encoder.velocity().end()}};
}

Status LoadEncoderState(SlicedEncoder& encoder, std::vector<std::vector<float>> state) {
  if (state.empty()) return Status::Ok();
  if (state.size() != 2) {
    return InvalidArgument("codec state of {} buffers; expected residual and velocity",
                           state.size());
  }
  return encoder.Restore(std::move(state[0]), std::move(state[1]));
}

}  // namespace p2p::sync
