// SlicedEncoder: a codec's sender side for a vector that is sent slice by slice, each slice with
// its own payload (reduce-scatter with a codec, sync/reduce_scatter_codec.h).
//
// codecs::GradientEncoder encodes a whole vector as one payload. Reduce-scatter sends slice j of
// the gradient to rank j, so the error-feedback residual (and topk's momentum-correction velocity)
// must be kept per coordinate while the payloads are per slice. A round is:
//   Prepare(values, offset, total, feedback)   the window [offset, offset + values.size()) of a
//                                              total-long vector: values (+ velocity) + residual
//   EncodeSlice(begin, len, seed, out)         the payload of prepared coordinates [begin, ...)
//   Transmitted(begin, decoded)                what those coordinates decode to: residual = the
//                                              prepared values - decoded
//   Kept(begin, len)                           coordinates used as prepared: no residual
// The residual is indexed by coordinate of the whole vector, so a window that moves (a view change
// gives this rank another slice) keeps the right residual for coordinates it still covers; the
// residual of coordinates that left the window is dropped (it belonged to a slice another rank now
// owns, whose encoder has none of it).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "common/status.h"
#include "sync/codecs/codec.h"

namespace p2p::sync {

class SlicedEncoder {
 public:
  explicit SlicedEncoder(std::shared_ptr<const codecs::Codec> codec);
  const codecs::Codec& codec() const { return *codec_; }

  // Starts a round. With `feedback` (the gradient carries weight and the codec keeps error
  // feedback) the prepared values are values + residual, with momentum correction velocity +
  // residual where the velocity first absorbs values; otherwise the values as they are, and the
  // residual and velocity wait for a round that counts.
  void Prepare(std::span<const float> values, size_t offset, size_t total, bool feedback);
  // The prepared window (Prepare's values.size() floats; coordinate offset first).
  std::span<const float> prepared() const { return prepared_; }
  // Appends the payload of prepared()[begin - offset, + len) (begin in whole-vector coordinates).
  Status EncodeSlice(size_t begin, size_t len, uint64_t seed, std::vector<std::byte>& out) const;
  // Records what coordinates [begin, begin + decoded.size()) were received as.
  void Transmitted(size_t begin, std::span<const float> decoded);
  // Records that coordinates [begin, begin + len) were used as prepared (not encoded).
  void Kept(size_t begin, size_t len);

  // The checkpointed state: residual and velocity over the whole vector (each empty when unused).
  std::span<const float> residual() const { return residual_; }
  std::span<const float> velocity() const { return velocity_; }
  // InvalidArgument if the codec keeps no such state, the sizes disagree or a value is not finite.
  Status Restore(std::vector<float> residual, std::vector<float> velocity);

 private:
  std::shared_ptr<const codecs::Codec> codec_;
  std::vector<float> residual_, velocity_, prepared_;
  size_t prepared_offset_ = 0;      // coordinate of prepared_[0]
  size_t offset_ = 0, window_ = 0;  // the window of the last round with feedback
  bool has_window_ = false;         // whether offset_/window_ describe a previous round
  bool pending_feedback_ = false;
};

}  // namespace p2p::sync
