// Gradient codecs: how a float gradient becomes bytes on the wire and back (docs/codecs.md).
//
// A codec turns a span of floats into a self-describing payload (it starts with the value count)
// and decodes a payload into a caller's span of exactly that many floats. Decode treats its input
// as hostile: it checks the payload's size against what its header declares before reading, and
// validates every field (level width, level range, scales, indices, bit-stream bounds), returning
// DataLoss naming what was wrong. Encode rejects non-finite input (InvalidArgument naming the first
// bad index) and never produces a payload its own Decode would refuse.
//
// A codec is configured by a CodecConfig: an id and numeric parameters, exactly what the envelope's
// CodecInfo carries, so a receiver builds the same codec from what it receives or refuses it.
// MakeCodec canonicalises the parameters (every parameter present, defaults filled in), so two
// peers with the same configuration carry byte-identical CodecInfo.
//
// Randomness: stochastic codecs (qsgd, qsgd-elias, qsgd-linf) draw only from `seed`; the same input
// and seed give the same payload on every machine. Decoding is deterministic arithmetic (IEEE
// float, no FMA contraction), so every peer decodes the same bytes to the same bits.
//
// Thread-safety: a Codec is immutable after construction; Encode and Decode are const and may be
// called from any number of threads. GradientEncoder is single-threaded.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace p2p::sync::codecs {

using Params = std::map<std::string, double>;

struct CodecConfig {
  std::string id = "none";
  Params params;  // canonical after MakeCodec / CanonicalCodecConfig
  bool operator==(const CodecConfig&) const = default;
};

class Codec {
 public:
  virtual ~Codec() = default;
  const CodecConfig& config() const { return config_; }
  const std::string& id() const { return config_.id; }
  // True when Decode(Encode(x)) == x bit for bit ("none").
  virtual bool lossless() const { return false; }
  // The sender should keep the encoding error and add it to the next gradient ("ef" parameter;
  // on by default for topk). GradientEncoder implements it.
  bool error_feedback() const;
  // Momentum correction (topk's "momentum", DGC): the sender compresses a velocity
  // u = momentum * u + grad instead of the gradient, so the optimizer must apply none. 0 = off.
  double momentum() const;
  // Upper bound on the payload size for n values (Encode appends at most this many bytes).
  virtual size_t MaxPayloadBytes(size_t n) const = 0;
  // Appends the payload of `values` to `out`. InvalidArgument if a value is NaN or infinite, or if
  // there are more than 2^32 - 1 values.
  virtual Status Encode(std::span<const float> values, uint64_t seed,
                        std::vector<std::byte>& out) const = 0;
  // Decodes a whole payload into `out`, whose size must be the payload's declared count. DataLoss
  // for anything malformed; `out` is unspecified then.
  virtual Status Decode(std::span<const std::byte> payload, std::span<float> out) const = 0;

 protected:
  explicit Codec(CodecConfig config) : config_(std::move(config)) {}

 private:
  CodecConfig config_;
};

// Fills in defaults and checks every parameter (known key, range, integrality, codec-specific
// rules). InvalidArgument naming the codec and parameter otherwise, listing valid ids for an
// unknown codec.
Result<CodecConfig> CanonicalCodecConfig(const CodecConfig& config);
// Builds the codec for a (not necessarily canonical) configuration.
Result<std::unique_ptr<Codec>> MakeCodec(const CodecConfig& config);
std::vector<std::string> CodecNames();

// The command-line form: NAME or NAME:key=value[,key=value...], e.g. "qsgd:bits=4,bucket=512",
// "topk:ratio=0.01", "qsgd-elias:code=omega", "uint8:mode=meanstd,k=6". Values are numbers, or
// for `code` gamma|omega and for `mode` meanstd|block. Not canonicalised (see above).
Result<CodecConfig> ParseCodecSpec(std::string_view spec);
// The inverse: "qsgd:bits=8,bucket=0,ef=0" (keys sorted, symbolic values by name).
std::string FormatCodecSpec(const CodecConfig& config);

// The command line's view (`p2ptrain peer --compression SPEC --qsgd-bits N --qsgd-bucket N
// --topk-ratio R`): SPEC as ParseCodecSpec, with "" and "true" meaning "qsgd" (the study's flag);
// each shorthand flag sets a parameter of the codecs it applies to (and is an error for others, or
// when SPEC sets the same parameter to another value). Returns the canonical configuration;
// InvalidArgument messages name the flag.
struct CompressionFlags {
  std::string spec = "none";
  int qsgd_bits = 0;         // 0: not given
  int64_t qsgd_bucket = -1;  // -1: not given
  double topk_ratio = 0;     // 0: not given
};
Result<CodecConfig> ResolveCompression(const CompressionFlags& flags);

// Whether a residual and velocity read from a checkpoint fit `codec`'s error feedback:
// InvalidArgument if the codec keeps no such state, the sizes disagree or a value is not finite.
Status CheckEncoderState(const Codec& codec, std::span<const float> residual,
                         std::span<const float> velocity);

// The sender's side of a round: encodes a gradient, decodes its own payload (every peer must
// average exactly what the others will decode, including its own contribution), and for codecs
// with error feedback keeps the residual (what was not transmitted) to add to the next gradient.
// With momentum correction it also keeps the velocity and encodes velocity + residual. Both are
// checkpointed (Strategy::SaveState / Restore below), so a resumed run continues bit-exactly.
class GradientEncoder {
 public:
  explicit GradientEncoder(std::shared_ptr<const Codec> codec);
  const Codec& codec() const { return *codec_; }
  // Appends the payload of grad (+ the residual when `feedback` and the codec uses it; the
  // velocity instead of grad with momentum correction) to `out`. Pass feedback = false for a
  // gradient that will carry no weight (a peer without samples this round): it is encoded as is
  // and residual and velocity are kept for a round where they count.
  Status Encode(std::span<const float> grad, uint64_t seed, bool feedback,
                std::vector<std::byte>& out);
  // Decodes `payload` (what the last Encode produced) into `decoded` and updates the residual.
  Status DecodeOwn(std::span<const std::byte> payload, std::span<float> decoded);
  // The residual: what the gradients so far sent minus what the payloads carried.
  std::span<const float> residual() const { return residual_; }
  std::span<const float> velocity() const { return velocity_; }
  // Puts back a residual and velocity saved from an encoder of the same codec (a checkpoint),
  // after CheckEncoderState.
  Status Restore(std::vector<float> residual, std::vector<float> velocity);

 private:
  std::shared_ptr<const Codec> codec_;
  std::vector<float> residual_, velocity_;
  std::vector<float> sent_;  // what the last Encode encoded: (velocity or grad) + residual
  bool pending_feedback_ = false;
};

// A seed for one sender in one round: mixes the run seed, the rank and the round (SplitMix64), so
// stochastic rounding is reproducible for a run and independent between ranks and rounds.
uint64_t RoundSeed(uint64_t run_seed, int rank, uint64_t epoch, uint64_t step);

}  // namespace p2p::sync::codecs
