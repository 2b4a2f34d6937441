// "none" (fp32 as is) and "fp16" (IEEE binary16, clamped to its range).
//   none: u32 n | n x f32
//   fp16: u32 n | n x binary16
#include <algorithm>
#if defined(__F16C__)
#include <immintrin.h>
#endif

#include "sync/codecs/codec_internal.h"

namespace p2p::sync::codecs::internal {
namespace {

class NoneCodec final : public Codec {
 public:
  explicit NoneCodec(const CodecConfig& c) : Codec(c) {}
  bool lossless() const override { return true; }
  size_t MaxPayloadBytes(size_t n) const override { return 4 + 4 * n; }

  Status Encode(std::span<const float> values, uint64_t,
                std::vector<std::byte>& out) const override {
    P2P_RETURN_IF_ERROR(CheckCount(values.size()));
    P2P_RETURN_IF_ERROR(CheckFinite(values));
    std::byte* p = Extend(out, MaxPayloadBytes(values.size()));
    StoreU32(p, static_cast<uint32_t>(values.size()));
    // An empty span's data() may be null: memcpy with null is undefined even for 0 bytes.
    if (!values.empty()) std::memcpy(p + 4, values.data(), values.size_bytes());
    return Status::Ok();
  }

  Status Decode(std::span<const std::byte> payload, std::span<float> out) const override {
    P2P_RETURN_IF_ERROR(CheckHeader("none", payload, out.size(), 4));
    P2P_RETURN_IF_ERROR(CheckSize("none", payload, MaxPayloadBytes(out.size())));
    if (!out.empty()) std::memcpy(out.data(), payload.data() + 4, out.size_bytes());
    if (MaxAbsBits(out.data(), out.size()) > std::bit_cast<uint32_t>(kMaxScale)) {
      return DataLoss(
          "uncompressed (codec none) payload holds a NaN, infinite or larger than {} value",
          kMaxScale);
    }
    return Status::Ok();
  }
};

// Converts n (<= 256) values; the clamp keeps every value finite in binary16.
#if defined(__F16C__)
// x86 F16C (8 values per instruction), round to nearest even like the software path.
void ToHalf(const float* x, uint16_t* h, size_t n) {
  constexpr float kMax = 65504.0f;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 v = _mm256_loadu_ps(x + i);
    v = _mm256_min_ps(_mm256_max_ps(v, _mm256_set1_ps(-kMax)), _mm256_set1_ps(kMax));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(h + i),
                     _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }
  for (; i < n; ++i) h[i] = HalfFromFloatSoft(std::clamp(x[i], -kMax, kMax));
}
void FromHalf(const uint16_t* h, float* y, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm256_storeu_ps(y + i,
                     _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h + i))));
  }
  for (; i < n; ++i) y[i] = FloatFromHalfSoft(h[i]);
}
#else
void ToHalf(const float* x, uint16_t* h, size_t n) {
  for (size_t i = 0; i < n; ++i) h[i] = HalfFromFloatSoft(std::clamp(x[i], -65504.0f, 65504.0f));
}
void FromHalf(const uint16_t* h, float* y, size_t n) {
  for (size_t i = 0; i < n; ++i) y[i] = FloatFromHalfSoft(h[i]);
}
#endif

class Fp16Codec final : public Codec {
 public:
  explicit Fp16Codec(const CodecConfig& c) : Codec(c) {}
  size_t MaxPayloadBytes(size_t n) const override { return 4 + 2 * n; }

  Status Encode(std::span<const float> values, uint64_t,
                std::vector<std::byte>& out) const override {
    P2P_RETURN_IF_ERROR(CheckCount(values.size()));
    P2P_RETURN_IF_ERROR(CheckFinite(values));
    const size_t n = values.size();
    std::byte* p = Extend(out, MaxPayloadBytes(n));
    StoreU32(p, static_cast<uint32_t>(n));
    constexpr size_t kBlock = 256;
    uint16_t tmp[kBlock];
    for (size_t i = 0; i < n; i += kBlock) {
      const size_t m = std::min(kBlock, n - i);
      ToHalf(values.data() + i, tmp, m);
      std::memcpy(p + 4 + 2 * i, tmp, 2 * m);
    }
    return Status::Ok();
  }

  Status Decode(std::span<const std::byte> payload, std::span<float> out) const override {
    P2P_RETURN_IF_ERROR(CheckHeader("fp16", payload, out.size(), 4));
    P2P_RETURN_IF_ERROR(CheckSize("fp16", payload, MaxPayloadBytes(out.size())));
    const size_t n = out.size();
    constexpr size_t kBlock = 256;
    uint16_t tmp[kBlock];
    uint16_t bad = 0;
    for (size_t i = 0; i < n; i += kBlock) {
      const size_t m = std::min(kBlock, n - i);
      std::memcpy(tmp, payload.data() + 4 + 2 * i, 2 * m);
      // Exponent 31 is Inf or NaN, which Encode never writes.
      for (size_t j = 0; j < m; ++j) bad |= static_cast<uint16_t>(~tmp[j] & 0x7c00u) == 0;
      FromHalf(tmp, out.data() + i, m);
    }
    if (bad) return DataLoss("fp16 payload holds a NaN or infinite value");
    return Status::Ok();
  }
};

}  // namespace

std::unique_ptr<Codec> MakeNone(const CodecConfig& c) { return std::make_unique<NoneCodec>(c); }
std::unique_ptr<Codec> MakeFp16(const CodecConfig& c) { return std::make_unique<Fp16Codec>(c); }

}  // namespace p2p::sync::codecs::internal
