// "uint8": 8-bit uniform quantisation, round to nearest (hivemind's 8-bit family, REFERENCE.md
// Part B 1.3). Two ways to choose the range:
//   mode=meanstd  one range for the vector, mean +- k standard deviations (hivemind's
//                 Uniform8BitQuantization, k = 6), 256 evenly spaced levels; values outside the
//                 range are clamped to its ends.
//   mode=block    a symmetric range per block of `block` values, +- the block's max |x|
//                 (bitsandbytes' blockwise quantisation, 4096): 255 levels, never clamps.
// Layouts (little-endian):
//   meanstd: u32 n | u8 0 | u8 0 | u16 0 | f32 lo | f32 step | n x u8 q        x = lo + q * step
//   block:   u32 n | u8 1 | u8 0 | u16 0 | u32 block | nb x f32 absmax | n x u8 q (q <= 254)
//            x = (q - 127) * (absmax / 127)
#include <algorithm>
#include <cmath>

#include "sync/codecs/codec_internal.h"

namespace p2p::sync::codecs::internal {
namespace {

constexpr size_t kHeader = 8;

class Uint8Codec final : public Codec {
 public:
  explicit Uint8Codec(const CodecConfig& c) : Codec(c), block_mode_(Param(c, "mode") == 1) {
    if (block_mode_) {
      block_ = static_cast<uint32_t>(Param(c, "block"));
    } else {
      k_ = Param(c, "k");
    }
  }

  size_t MaxPayloadBytes(size_t n) const override {
    return kHeader + (block_mode_ ? 4 + 4 * NumBlocks(n) : 8) + n;
  }

  Status Encode(std::span<const float> x, uint64_t, std::vector<std::byte>& out) const override {
    P2P_RETURN_IF_ERROR(CheckCount(x.size()));
    const size_t n = x.size(), start = out.size();
    std::byte* p = Extend(out, MaxPayloadBytes(n));
    StoreU32(p, static_cast<uint32_t>(n));
    p[4] = std::byte{static_cast<uint8_t>(block_mode_ ? 1 : 0)};
    Status s = block_mode_ ? EncodeBlocks(x, p) : EncodeMeanStd(x, p);
    if (!s.ok()) out.resize(start);
    return s;
  }

  Status Decode(std::span<const std::byte> payload, std::span<float> out) const override {
    P2P_RETURN_IF_ERROR(CheckHeader("uint8", payload, out.size(), kHeader));
    const int mode = static_cast<int>(payload[4]);
    if (mode != (block_mode_ ? 1 : 0) || payload[5] != std::byte{0} ||
        LoadU16(payload.data() + 6) != 0) {
      return DataLoss("uint8 payload has mode {} but this run uses mode={}", mode,
                      block_mode_ ? "block" : "meanstd");
    }
    P2P_RETURN_IF_ERROR(CheckSize("uint8", payload, MaxPayloadBytes(out.size())));
    return block_mode_ ? DecodeBlocks(payload, out) : DecodeMeanStd(payload, out);
  }

 private:
  size_t NumBlocks(size_t n) const { return block_mode_ ? (n + block_ - 1) / block_ : 0; }

  Status EncodeMeanStd(std::span<const float> x, std::byte* p) const {
    const size_t n = x.size();
    float lo = 0, step = 0;
    if (n > 0) {
      const double sum = Sum(x.data(), n);
      if (!std::isfinite(sum)) return NonFiniteError(x);
      const double mean = sum / double(n);
      const double sigma = std::sqrt(SumOfSquaredDeviations(x.data(), n, mean) / double(n));
      if (!std::isfinite(sigma)) return NonFiniteError(x);
      lo = static_cast<float>(mean - k_ * sigma);
      step = static_cast<float>(2.0 * k_ * sigma / 255.0);
      if (step < kMinScale) step = 0.0f, lo = static_cast<float>(mean);
      if (!(std::fabs(lo) + 255.0f * step <= kMaxScale)) {
        return InvalidArgument("uint8: range [{}, {}] is beyond the largest supported {}", lo,
                               lo + 255.0f * step, kMaxScale);
      }
    }
    StoreU32(p + 8, std::bit_cast<uint32_t>(lo));
    StoreU32(p + 12, std::bit_cast<uint32_t>(step));
    auto* q = reinterpret_cast<uint8_t*>(p + 16);
    const float inv = step > 0.0f ? 1.0f / step : 0.0f;
    for (size_t i = 0; i < n; ++i) {
      // Round to nearest: floor(v + 0.5), as a truncation of the clamped (non-negative) value.
      float v = (x[i] - lo) * inv + 0.5f;
      v = v < 0.0f ? 0.0f : (v > 255.0f ? 255.0f : v);
      q[i] = static_cast<uint8_t>(static_cast<int32_t>(v));
    }
    return Status::Ok();
  }

  Status DecodeMeanStd(std::span<const std::byte> payload, std::span<float> out) const {
    const float lo = LoadF32(payload.data() + 8), step = LoadF32(payload.data() + 12);
    if (!(std::isfinite(lo) && step >= 0.0f && std::fabs(lo) + 255.0f * step <= kMaxScale)) {
      return DataLoss("uint8 payload has an invalid range: lo {} step {}", lo, step);
    }
    const auto* q = reinterpret_cast<const uint8_t*>(payload.data() + 16);
    for (size_t i = 0; i < out.size(); ++i) out[i] = lo + static_cast<float>(q[i]) * step;
    return Status::Ok();
  }

  Status EncodeBlocks(std::span<const float> x, std::byte* p) const {
    const size_t n = x.size(), nb = NumBlocks(n);
    StoreU32(p + 8, block_);
    std::byte* scales = p + 12;
    auto* q = reinterpret_cast<uint8_t*>(p + 12 + 4 * nb);
    for (size_t b = 0; b < nb; ++b) {
      const size_t i0 = b * block_, len = std::min<size_t>(block_, n - i0);
      const uint32_t bits = MaxAbsBits(x.data() + i0, len);
      if (bits >= 0x7f800000u) return NonFiniteError(x);
      const float absmax = std::bit_cast<float>(bits);
      if (absmax > kMaxScale) {
        return InvalidArgument("uint8: block {} has max |x| {}, beyond the largest supported {}", b,
                               absmax, kMaxScale);
      }
      StoreF32(scales + 4 * b, absmax);
      const float inv = absmax >= kMinScale ? 127.0f / absmax : 0.0f;
      const float* xb = x.data() + i0;
      uint8_t* qb = q + i0;
      for (size_t i = 0; i < len; ++i) {
        float v = xb[i] * inv + 127.5f;  // round to nearest, offset by 127 (see above)
        v = v < 0.0f ? 0.0f : (v > 254.0f ? 254.0f : v);
        qb[i] = static_cast<uint8_t>(static_cast<int32_t>(v));
      }
    }
    return Status::Ok();
  }

  Status DecodeBlocks(std::span<const std::byte> payload, std::span<float> out) const {
    const size_t n = out.size(), nb = NumBlocks(n);
    if (LoadU32(payload.data() + 8) != block_) {
      return DataLoss("uint8 payload has block {} but this run uses {}",
                      LoadU32(payload.data() + 8), block_);
    }
    const auto* q = reinterpret_cast<const uint8_t*>(payload.data() + 12 + 4 * nb);
    uint8_t worst = 0;
    for (size_t b = 0; b < nb; ++b) {
      const float absmax = LoadF32(payload.data() + 12 + 4 * b);
      P2P_RETURN_IF_ERROR(CheckScale("uint8", "max |x| of block", absmax, b));
      const float scale = absmax / 127.0f;
      const size_t i0 = b * block_, len = std::min<size_t>(block_, n - i0);
      for (size_t i = 0; i < len; ++i) {
        const uint8_t v = q[i0 + i];
        worst = std::max(worst, v);
        out[i0 + i] = static_cast<float>(static_cast<int32_t>(v) - 127) * scale;
      }
    }
    if (worst > 254) return DataLoss("uint8 payload holds code 255, outside 0..254");
    return Status::Ok();
  }

  bool block_mode_;
  uint32_t block_ = 0;
  double k_ = 0;
};

}  // namespace

std::unique_ptr<Codec> MakeUint8(const CodecConfig& c) { return std::make_unique<Uint8Codec>(c); }

}  // namespace p2p::sync::codecs::internal
