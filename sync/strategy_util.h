// Small pieces every strategy needs: its timing clock, a raw ("none") envelope of one round, and
// the codec state a checkpoint carries.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "broker/envelope.h"
#include "broker/transport.h"
#include "common/status.h"
#include "sync/codecs/codec.h"
#include "sync/mailbox.h"
#include "sync/sliced_encoder.h"

namespace p2p::sync {

double SecondsSince(broker::Clock::time_point t);
// "epoch E step S", for errors and logs.
std::string RoundName(Round round);
// The codec `config` names; `strategy` goes in the message of the check that fails when the
// config was not validated first (peers validate --compression before building a strategy).
std::shared_ptr<const codecs::Codec> CodecOrDie(const codecs::CodecConfig& config,
                                                std::string_view strategy);
// An envelope of `type` for `round` carrying a raw float32 ("none" codec) body.
broker::Envelope RawEnvelope(broker::MessageType type, Round round, broker::Bytes body);
// The encoder's residual and velocity, or nothing when its codec keeps no error feedback.
std::vector<std::vector<float>> SaveEncoderState(const codecs::GradientEncoder& encoder);
// Restores SaveEncoderState's output into `encoder` (empty: nothing to restore).
Status LoadEncoderState(codecs::GradientEncoder& encoder, std::vector<std::vector<float>> state);
// The same for a SlicedEncoder (reduce-scatter with a codec keeps one per stage).
std::vector<std::vector<float>> SaveEncoderState(const SlicedEncoder& encoder);
Status LoadEncoderState(SlicedEncoder& encoder, std::vector<std::vector<float>> state);

}  // namespace p2p::sync
