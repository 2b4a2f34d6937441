#include "sync/sliced_encoder.h"

#include <algorithm>
#include <cmath>

namespace p2p::sync {
namespace {

// Zeroes `v` outside [begin, begin + len) (state of coordinates this encoder no longer sends).
void KeepOnly(std::vector<float>& v, size_t begin, size_t len) {
  if (v.empty()) return;
  std::fill(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(begin), 0.0f);
  std::fill(v.begin() + static_cast<std::ptrdiff_t>(begin + len), v.end(), 0.0f);
}

}  // namespace

SlicedEncoder::SlicedEncoder(std::shared_ptr<const codecs::Codec> codec)
    : codec_(std::move(codec)) {}

void SlicedEncoder::Prepare(std::span<const float> values, size_t offset, size_t total,
                            bool feedback) {
  P2P_CHECK(offset + values.size() <= total, "window [{}, +{}) of a {}-long vector", offset,
            values.size(), total);
  const size_t n = values.size();
  prepared_.assign(values.begin(), values.end());
  prepared_offset_ = offset;
  pending_feedback_ = feedback && codec_->error_feedback();
  if (!pending_feedback_) return;
  // A residual of another length belongs to another model (or none yet): start from zero, as
  // GradientEncoder does.
  if (residual_.size() != total) residual_.assign(total, 0.0f);
  if (has_window_ && (offset_ != offset || window_ != n)) {
    KeepOnly(residual_, offset, n);
    KeepOnly(velocity_, offset, n);
  }
  offset_ = offset;
  window_ = n;
  has_window_ = true;
  float* r = residual_.data() + offset;
  if (const auto mu = static_cast<float>(codec_->momentum()); mu > 0.0f) {
    // The same arithmetic as GradientEncoder's momentum correction, coordinate by coordinate.
    if (velocity_.size() != total) velocity_.assign(total, 0.0f);
    float* u = velocity_.data() + offset;
    for (size_t i = 0; i < n; ++i) {
      u[i] = mu * u[i] + values[i];
      prepared_[i] = u[i] + r[i];
    }
  } else {
    for (size_t i = 0; i < n; ++i) prepared_[i] = values[i] + r[i];
  }
}

Status SlicedEncoder::EncodeSlice(size_t begin, size_t len, uint64_t seed,
                                  std::vector<std::byte>& out) const {
  P2P_CHECK(begin >= prepared_offset_, "slice at {} before the window at {}", begin,
            prepared_offset_);
  const size_t at = begin - prepared_offset_;
  P2P_CHECK(at + len <= prepared_.size(), "slice [{}, +{}) outside a {}-value window", at, len,
            prepared_.size());
  return codec_->Encode(std::span<const float>(prepared_).subspan(at, len), seed, out);
}

void SlicedEncoder::Transmitted(size_t begin, std::span<const float> decoded) {
  if (!pending_feedback_) return;
  const size_t at = begin - prepared_offset_;
  for (size_t i = 0; i < decoded.size(); ++i) {
    residual_[begin + i] = prepared_[at + i] - decoded[i];
  }
}

void SlicedEncoder::Kept(size_t begin, size_t len) {
  if (!pending_feedback_) return;
  std::fill_n(residual_.begin() + static_cast<std::ptrdiff_t>(begin), len, 0.0f);
}

Status SlicedEncoder::Restore(std::vector<float> residual, std::vector<float> velocity) {
  P2P_RETURN_IF_ERROR(codecs::CheckEncoderState(*codec_, residual, velocity));
  residual_ = std::move(residual);
  velocity_ = std::move(velocity);
  // The saved residual is zero outside the window it was saved with, which a run resumed in the
  // same view covers again.
  has_window_ = false;
  pending_feedback_ = false;
  return Status::Ok();
}

}  // namespace p2p::sync
