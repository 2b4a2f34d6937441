// The QSGD family (Alistarh et al. 2017; REFERENCE.md Part A 3 with its bugs fixed).
//
// All three quantise |x_i| / scale * s, s = 2^bits - 1, to one of the two nearest integer levels
// with probabilities that make the level unbiased (stochastic rounding from a seeded generator):
// E[level] * scale / s = |x_i|. They differ in the scale and in how levels travel:
//   qsgd        scale = L2 norm of the bucket; packed fixed-width levels + one sign bit each
//   qsgd-elias  scale = L2 norm; Elias gamma/omega code of level + 1, a sign bit after nonzero ones
//   qsgd-linf   scale = max |x_i| of the bucket (the study's variant); int8 (bits <= 7) or int16
// A bucket (parameter `bucket`, a multiple of 64; 0 = the whole vector) has its own scale.
//
// Layouts (little-endian; docs/codecs.md):
//   qsgd:       u32 n | u8 bits | u8 0 | u16 0 | u32 bucket | nb x f32 norm |
//               ceil(n/64) x u64 sign words (bit i%64 of word i/64, 1 = negative) |
//               ceil(n*bits/64) x u64 level words (level i at stream bits [i*bits, (i+1)*bits),
//               least significant bit first)
//   qsgd-elias: u32 n | u8 bits | u8 code (0 gamma, 1 omega) | u16 order | u32 bucket |
//               nb x f32 norm | u64 stream bits | the MSB-first bit stream, ceil(bits/8) bytes
//               A value is Elias(level >> order + 1), the level's low `order` bits (order 0, the
//               default, is the plain Elias code of level + 1; order > 0 is the exp-Golomb
//               generalisation), then a sign bit if the level is nonzero.
//   qsgd-linf:  u32 n | u8 bits | u8 0 | u16 0 | u32 bucket | nb x f32 max|x| |
//               n x int8 (bits <= 7) or int16 signed levels
// Decoded value: sign * level * (scale / s), with scale / s computed once per bucket in float.
#include <algorithm>
#include <cmath>

#include "sync/codecs/codec_internal.h"

namespace p2p::sync::codecs::internal {
namespace {

constexpr size_t kHeader = 12;  // u32 n | u8 bits | u8 code | u16 0 | u32 bucket

// Quantises up to 64 values (the rest of a group reads as zero) to levels in [0, s] with unbiased
// stochastic rounding; returns the sign bits (1 = negative, only for nonzero levels). Written so
// that the compiler vectorises it: floor is a truncation (a >= 0 and small), the sign bits are
// gathered in two 32-bit halves.
inline uint64_t QuantizeGroup(const float* x, size_t m, float inv, int32_t s, LaneRng& rng,
                              uint32_t* __restrict level) {
  alignas(64) float padded[64];
  if (m < 64) {
    std::memcpy(padded, x, m * sizeof(float));
    std::fill(padded + m, padded + 64, 0.0f);
    x = padded;
  }
  alignas(64) uint32_t r[64];
  rng.Next(r);
  alignas(64) uint32_t neg[64];
  for (int j = 0; j < 64; ++j) {
    const float a = std::fabs(x[j]) * inv;  // in [0, s * (1 + 2^-22)]
    const auto fl = static_cast<int32_t>(a);
    const float frac = a - static_cast<float>(fl);
    const float u = static_cast<float>(static_cast<int32_t>(r[j] >> 8)) * 0x1p-24f;  // [0, 1)
    int32_t l = fl + (frac > u ? 1 : 0);
    l = l < s ? l : s;
    level[j] = static_cast<uint32_t>(l);
    neg[j] = static_cast<uint32_t>((x[j] < 0.0f) & (l != 0));
  }
  uint32_t lo = 0, hi = 0;
  for (int j = 0; j < 32; ++j) lo |= neg[j] << j;
  for (int j = 0; j < 32; ++j) hi |= neg[j + 32] << j;
  return lo | uint64_t{hi} << 32;
}

// out[j] = (-1)^sign_j * level[j] for 32 values.
inline void ApplySigns(const uint32_t* __restrict level, uint32_t signs, int32_t* __restrict out) {
  for (int j = 0; j < 32; ++j) {
    const int32_t neg = -static_cast<int32_t>((signs >> j) & 1u);
    out[j] = (static_cast<int32_t>(level[j]) ^ neg) - neg;
  }
}

// y[j] = (-1)^sign_j * level[j] * step for 32 values (sign bits in `signs`).
inline void Dequantize32(const uint32_t* __restrict level, uint32_t signs, float step,
                         float* __restrict y) {
  for (int j = 0; j < 32; ++j) {
    const float v = static_cast<float>(static_cast<int32_t>(level[j])) * step;
    y[j] = std::bit_cast<float>(std::bit_cast<uint32_t>(v) | ((signs >> j) & 1u) << 31);
  }
}

class QsgdBase : public Codec {
 public:
  explicit QsgdBase(const CodecConfig& c, bool linf)
      : Codec(c),
        bits_(static_cast<int>(Param(c, "bits"))),
        s_(static_cast<float>((1u << bits_) - 1)),
        top_(static_cast<int32_t>((1u << bits_) - 1)),
        bucket_(static_cast<uint32_t>(Param(c, "bucket"))),
        linf_(linf) {}

 protected:
  size_t BucketSize(size_t n) const { return bucket_ ? bucket_ : std::max<size_t>(n, 1); }
  size_t NumBuckets(size_t n) const { return n == 0 ? 0 : (n + BucketSize(n) - 1) / BucketSize(n); }

  void WriteHeader(std::byte* p, size_t n, uint8_t code, uint16_t extra = 0) const {
    StoreU32(p, static_cast<uint32_t>(n));
    p[4] = std::byte{static_cast<uint8_t>(bits_)};
    p[5] = std::byte{code};
    StoreU16(p + 6, extra);
    StoreU32(p + 8, bucket_);
  }

  // What every encoder starts with: checks the count, reserves MaxPayloadBytes(n) at the end of
  // `out`, writes the header and the bucket scales. On error `out` is left as it was.
  struct Encoding {
    std::byte* p = nullptr;  // the payload's first byte
    size_t start = 0;        // out.size() before
    std::vector<float> scales;
  };
  Result<Encoding> BeginEncode(std::span<const float> x, std::vector<std::byte>& out, uint8_t code,
                               uint16_t extra = 0) const {
    P2P_RETURN_IF_ERROR(CheckCount(x.size()));
    const size_t n = x.size(), nb = NumBuckets(n);
    Encoding e{.p = nullptr, .start = out.size(), .scales = std::vector<float>(nb)};
    e.p = Extend(out, MaxPayloadBytes(n));
    WriteHeader(e.p, n, code, extra);
    if (Status s = Scales(x, e.scales.data()); !s.ok()) {
      out.resize(e.start);
      return s;
    }
    std::memcpy(e.p + kHeader, e.scales.data(), 4 * nb);
    return e;
  }

  // Checks the fixed header against this codec's configuration.
  Status CheckParams(std::span<const std::byte> payload, size_t out_size, uint8_t code,
                     uint16_t extra = 0) const {
    P2P_RETURN_IF_ERROR(CheckHeader(id(), payload, out_size, kHeader));
    const int bits = static_cast<int>(payload[4]);
    if (bits != bits_) {
      return DataLoss("{} payload has {}-bit levels but this run uses {}", id(), bits, bits_);
    }
    if (static_cast<uint8_t>(payload[5]) != code || LoadU16(payload.data() + 6) != extra) {
      return DataLoss("{} payload has code byte {} and order {}, but this run uses {} and {}", id(),
                      static_cast<int>(payload[5]), LoadU16(payload.data() + 6), code, extra);
    }
    const uint32_t bucket = LoadU32(payload.data() + 8);
    if (bucket != bucket_) {
      return DataLoss("{} payload has bucket {} but this run uses {}", id(), bucket, bucket_);
    }
    return Status::Ok();
  }

  // Computes and stores each bucket's scale (L2 norm or max |x|); returns Ok or the error for
  // non-finite input.
  Status Scales(std::span<const float> x, float* scales) const {
    const size_t n = x.size(), b = BucketSize(n);
    for (size_t k = 0, i = 0; i < n; ++k, i += b) {
      const size_t len = std::min(b, n - i);
      float scale;
      if (linf_) {
        const uint32_t bits = MaxAbsBits(x.data() + i, len);
        if (bits >= 0x7f800000u) return NonFiniteError(x);
        scale = std::bit_cast<float>(bits);
      } else {
        const double sq = SumOfSquares(x.data() + i, len);
        if (!std::isfinite(sq)) return NonFiniteError(x);
        scale = static_cast<float>(std::sqrt(sq));
      }
      if (!(scale <= kMaxScale)) {
        return InvalidArgument("{}: bucket {} has a scale of {}, beyond the largest supported {}",
                               id(), k, scale, kMaxScale);
      }
      scales[k] = scale < kMinScale ? 0.0f : scale;
    }
    return Status::Ok();
  }

  // Reads and validates the stored scales; returns scale / s per bucket via `step`.
  Status Steps(std::span<const std::byte> payload, size_t n, std::vector<float>& step) const {
    const size_t nb = NumBuckets(n);
    step.resize(nb);
    for (size_t k = 0; k < nb; ++k) {
      const float scale = LoadF32(payload.data() + kHeader + 4 * k);
      P2P_RETURN_IF_ERROR(
          CheckScale(id(), linf_ ? "max |x| of bucket" : "norm of bucket", scale, k));
      step[k] = scale / s_;
    }
    return Status::Ok();
  }

  // Runs `body(i, m, inv, group_index)` over the groups of 64 values, with the quantisation factor
  // s / scale of the group's bucket. Buckets are multiples of 64, so a group never straddles two.
  template <typename Body>
  void ForEachGroup(size_t n, const float* scales, Body&& body) const {
    const size_t b = BucketSize(n);
    for (size_t k = 0, start = 0; start < n; ++k, start += b) {
      const size_t end = std::min(n, start + b);
      const float inv = scales[k] > 0.0f ? s_ / scales[k] : 0.0f;
      for (size_t i = start; i < end; i += 64) body(i, std::min<size_t>(64, end - i), inv, k);
    }
  }

  int bits_;
  float s_;      // the top level s = 2^bits - 1
  int32_t top_;  // the same as an integer
  uint32_t bucket_;
  bool linf_;
};

// ---- qsgd: fixed-width levels ----

class QsgdCodec final : public QsgdBase {
 public:
  explicit QsgdCodec(const CodecConfig& c) : QsgdBase(c, false) {}

  size_t MaxPayloadBytes(size_t n) const override {
    return kHeader + 4 * NumBuckets(n) + 8 * ((n + 63) / 64) + 8 * ((n * bits_ + 63) / 64);
  }

  Status Encode(std::span<const float> x, uint64_t seed,
                std::vector<std::byte>& out) const override {
    P2P_ASSIGN_OR_RETURN(Encoding e, BeginEncode(x, out, 0));
    const size_t n = x.size(), nb = NumBuckets(n);
    std::byte* p = e.p;
    const std::vector<float>& scales = e.scales;
    std::byte* sign_words = p + kHeader + 4 * nb;
    std::byte* level_words = sign_words + 8 * ((n + 63) / 64);
    LaneRng rng(seed);
    DispatchWidth(bits_, [&](auto w) {
      constexpr int W = decltype(w)::value;
      alignas(64) uint32_t level[64];
      uint64_t packed[W];
      ForEachGroup(n, scales.data(), [&](size_t i, size_t m, float inv, size_t) {
        const uint64_t signs = QuantizeGroup(x.data() + i, m, inv, top_, rng, level);
        StoreU64(sign_words + i / 8, signs);
        PackGroup<W>(level, packed);
        const size_t words = m == 64 ? W : (m * W + 63) / 64;
        std::memcpy(level_words + (i / 64) * W * 8, packed, 8 * words);
      });
    });
    return Status::Ok();
  }

  Status Decode(std::span<const std::byte> payload, std::span<float> out) const override {
    P2P_RETURN_IF_ERROR(CheckParams(payload, out.size(), 0));
    const size_t n = out.size(), nb = NumBuckets(n);
    if (payload.size() < kHeader + 4 * nb) {
      return DataLoss("qsgd payload of {} bytes is too short for its {} bucket norms",
                      payload.size(), nb);
    }
    P2P_RETURN_IF_ERROR(CheckSize(id(), payload, MaxPayloadBytes(n)));
    std::vector<float> step;
    P2P_RETURN_IF_ERROR(Steps(payload, n, step));
    const std::byte* sign_words = payload.data() + kHeader + 4 * nb;
    const std::byte* level_words = sign_words + 8 * ((n + 63) / 64);
    uint64_t padding = 0;  // bits past the last value must be zero
    DispatchWidth(bits_, [&](auto w) {
      constexpr int W = decltype(w)::value;
      alignas(64) uint32_t level[64];
      uint64_t packed[W];
      ForEachGroup(n, step.data(), [&](size_t i, size_t m, float, size_t k) {
        const uint64_t signs = LoadU64(sign_words + i / 8);
        const size_t words = m == 64 ? W : (m * W + 63) / 64;
        if (m < 64) std::fill(packed, packed + W, 0);
        std::memcpy(packed, level_words + (i / 64) * W * 8, 8 * words);
        UnpackGroup<W>(packed, level);
        const float scale = step[k];
        float* y = out.data() + i;
        if (m == 64) {
          Dequantize32(level, static_cast<uint32_t>(signs), scale, y);
          Dequantize32(level + 32, static_cast<uint32_t>(signs >> 32), scale, y + 32);
        } else {
          for (size_t j = 0; j < m; ++j) {
            const float v = static_cast<float>(static_cast<int32_t>(level[j])) * scale;
            y[j] = (signs >> j) & 1 ? -v : v;
          }
          padding |= signs >> m;
          for (size_t j = m; j < 64; ++j) padding |= level[j];
        }
      });
    });
    if (padding) return DataLoss("qsgd payload has nonzero bits after its last value");
    return Status::Ok();
  }
};

// ---- qsgd-elias: entropy-coded levels ----

class QsgdEliasCodec final : public QsgdBase {
 public:
  explicit QsgdEliasCodec(const CodecConfig& c)
      : QsgdBase(c, false),
        omega_(Param(c, "code") == 1),
        order_(static_cast<int>(Param(c, "order"))) {
    // The code of every level (without its sign): Elias(level >> order + 1), then the level's
    // low `order` bits. Code lengths do not decrease with the level, so the top level's is the
    // longest; a symbol is at most that plus a sign bit.
    codes_.resize(static_cast<size_t>(top_) + 1);
    for (uint32_t l = 0; l <= static_cast<uint32_t>(top_); ++l) {
      const uint32_t q = (l >> order_) + 1;
      const EliasCode e = omega_ ? EliasOmega(q) : EliasGamma(q);
      const uint64_t low = l & ((1u << order_) - 1);
      codes_[l] = {(e.bits << order_) | low, e.length + order_};
    }
    max_symbol_bits_ = codes_.back().length + 1;
    max_zeros_ = 31 - std::countl_zero((static_cast<uint32_t>(top_) >> order_) + 1);
  }

  size_t MaxPayloadBytes(size_t n) const override {
    return kHeader + 4 * NumBuckets(n) + 8 + (n * static_cast<size_t>(max_symbol_bits_) + 7) / 8 +
           8;
  }

  Status Encode(std::span<const float> x, uint64_t seed,
                std::vector<std::byte>& out) const override {
    P2P_ASSIGN_OR_RETURN(Encoding e,
                         BeginEncode(x, out, omega_ ? 1 : 0, static_cast<uint16_t>(order_)));
    const size_t n = x.size(), nb = NumBuckets(n);
    std::byte* p = e.p;
    const std::vector<float>& scales = e.scales;
    std::byte* stream = p + kHeader + 4 * nb + 8;
    BitWriter writer(stream);
    LaneRng rng(seed);
    alignas(64) uint32_t level[64];
    const EliasCode* codes = codes_.data();
    ForEachGroup(n, scales.data(), [&](size_t i, size_t m, float inv, size_t) {
      const uint64_t signs = QuantizeGroup(x.data() + i, m, inv, top_, rng, level);
      for (size_t j = 0; j < m; ++j) {
        const uint32_t l = level[j];
        const EliasCode c = codes[l];
        const uint64_t nonzero = l != 0;  // the sign follows the code of a nonzero level
        writer.Put((c.bits << nonzero) | ((signs >> j) & nonzero),
                   c.length + static_cast<int>(nonzero));
      }
    });
    const uint64_t bits = writer.Finish();
    StoreU64(p + kHeader + 4 * nb, bits);
    out.resize(e.start + kHeader + 4 * nb + 8 + (bits + 7) / 8);
    return Status::Ok();
  }

  Status Decode(std::span<const std::byte> payload, std::span<float> out) const override {
    P2P_RETURN_IF_ERROR(
        CheckParams(payload, out.size(), omega_ ? 1 : 0, static_cast<uint16_t>(order_)));
    const size_t n = out.size(), nb = NumBuckets(n);
    const size_t fixed = kHeader + 4 * nb + 8;
    if (payload.size() < fixed) {
      return DataLoss(
          "qsgd-elias payload of {} bytes is too short for its {} bucket norms and stream length",
          payload.size(), nb);
    }
    const uint64_t bits = LoadU64(payload.data() + kHeader + 4 * nb);
    // At least one bit and at most max_symbol_bits_ per value: checked before anything is read.
    if (bits < n || bits > uint64_t{n} * static_cast<uint64_t>(max_symbol_bits_)) {
      return DataLoss("qsgd-elias payload declares a {}-bit stream, impossible for {} values", bits,
                      n);
    }
    P2P_RETURN_IF_ERROR(CheckSize(id(), payload, fixed + (bits + 7) / 8));
    std::vector<float> step;
    P2P_RETURN_IF_ERROR(Steps(payload, n, step));
    if (bits % 8 != 0) {
      const auto last = static_cast<uint8_t>(payload[payload.size() - 1]);
      if (last & ((1u << (8 - bits % 8)) - 1)) {
        return DataLoss("qsgd-elias payload has nonzero bits after its stream");
      }
    }
    const BitReader reader(payload.data() + fixed, bits);
    const size_t b = BucketSize(n);
    uint64_t pos = 0;     // stream position of `window`'s first bit
    uint64_t window = 0;  // upcoming stream bits, most significant first
    int avail = 0;        // meaningful bits in `window`
    const int max_symbol = max_symbol_bits_;
    const uint32_t max_level = static_cast<uint32_t>(top_);
    const uint64_t low_mask = (uint64_t{1} << order_) - 1;
    for (size_t k = 0, i = 0; i < n; ++k) {
      const float scale = step[k];
      for (const size_t end = std::min(n, i + b); i < end; ++i) {
        // Every symbol fits in max_symbol bits, so one refill (57 bits) serves several symbols
        // and the loop carries no memory load in its dependency chain.
        if (avail < max_symbol) {
          window = reader.PeekAt(pos);
          avail = BitReader::kPeekBits;
        }
        uint32_t q;  // Elias-coded part: level >> order + 1
        int used;
        if (!omega_) {
          const int z = window == 0 ? 64 : std::countl_zero(window);
          if (z > max_zeros_) {
            return DataLoss(
                "qsgd-elias value {}: gamma code with {} leading zeros is longer than any level "
                "up to {}",
                i, z, max_level);
          }
          used = 2 * z + 1;
          q = static_cast<uint32_t>(window >> (64 - used));
        } else {
          uint64_t v = 1;
          int at = 0;
          while ((window >> (63 - at)) & 1) {
            const int len = static_cast<int>(v) + 1;
            if (len > bits_ + 1 || at + len >= max_symbol) {
              return DataLoss("qsgd-elias value {}: omega code longer than any level up to {}", i,
                              max_level);
            }
            v = (window << at) >> (64 - len);
            at += len;
          }
          used = at + 1;
          q = static_cast<uint32_t>(v);
        }
        uint64_t level = uint64_t{q} - 1;
        if (order_ > 0) {
          level = (level << order_) | ((window << used) >> (64 - order_) & low_mask);
          used += order_;
        }
        if (level > max_level) {
          return DataLoss("qsgd-elias value {}: level {} is above the top level {}", i, level,
                          max_level);
        }
        const uint32_t nonzero = level != 0;
        const uint32_t sign = static_cast<uint32_t>((window << used) >> 63) & nonzero;
        used += static_cast<int>(nonzero);
        window <<= used;
        avail -= used;
        pos += static_cast<uint64_t>(used);
        if (pos > bits) {
          return DataLoss("qsgd-elias stream of {} bits ends inside value {} of {}", bits, i, n);
        }
        const float v = static_cast<float>(static_cast<int32_t>(level)) * scale;
        out[i] = std::bit_cast<float>(std::bit_cast<uint32_t>(v) | sign << 31);
      }
    }
    if (pos != bits) {
      return DataLoss("qsgd-elias stream has {} bits left after its {} values", bits - pos, n);
    }
    return Status::Ok();
  }

 private:
  bool omega_;
  int order_;
  int max_symbol_bits_;
  int max_zeros_;  // gamma: leading zeros of the longest code
  std::vector<EliasCode> codes_;
};

// ---- qsgd-linf: max-abs scale, int8/int16 signed levels ----

class QsgdLinfCodec final : public QsgdBase {
 public:
  explicit QsgdLinfCodec(const CodecConfig& c) : QsgdBase(c, true), wide_(bits_ > 7) {}

  size_t MaxPayloadBytes(size_t n) const override {
    return kHeader + 4 * NumBuckets(n) + (wide_ ? 2 : 1) * n;
  }

  Status Encode(std::span<const float> x, uint64_t seed,
                std::vector<std::byte>& out) const override {
    P2P_ASSIGN_OR_RETURN(Encoding e, BeginEncode(x, out, 0));
    const size_t n = x.size(), nb = NumBuckets(n);
    std::byte* p = e.p;
    const std::vector<float>& scales = e.scales;
    std::byte* values = p + kHeader + 4 * nb;
    LaneRng rng(seed);
    alignas(64) uint32_t level[64];
    ForEachGroup(n, scales.data(), [&](size_t i, size_t m, float inv, size_t) {
      const uint64_t signs = QuantizeGroup(x.data() + i, m, inv, top_, rng, level);
      alignas(64) int32_t signed_level[64];
      ApplySigns(level, static_cast<uint32_t>(signs), signed_level);
      ApplySigns(level + 32, static_cast<uint32_t>(signs >> 32), signed_level + 32);
      if (wide_) {
        int16_t v[64];
        for (int j = 0; j < 64; ++j) v[j] = static_cast<int16_t>(signed_level[j]);
        std::memcpy(values + 2 * i, v, 2 * m);
      } else {
        int8_t v[64];
        for (int j = 0; j < 64; ++j) v[j] = static_cast<int8_t>(signed_level[j]);
        std::memcpy(values + i, v, m);
      }
    });
    return Status::Ok();
  }

  Status Decode(std::span<const std::byte> payload, std::span<float> out) const override {
    P2P_RETURN_IF_ERROR(CheckParams(payload, out.size(), 0));
    const size_t n = out.size();
    P2P_RETURN_IF_ERROR(CheckSize(id(), payload, MaxPayloadBytes(n)));
    std::vector<float> step;
    P2P_RETURN_IF_ERROR(Steps(payload, n, step));
    const std::byte* values = payload.data() + kHeader + 4 * NumBuckets(n);
    const int32_t max_level = static_cast<int32_t>(s_);
    int32_t worst = 0;  // largest |level| seen
    ForEachGroup(n, step.data(), [&](size_t i, size_t m, float, size_t k) {
      const float scale = step[k];
      float* y = out.data() + i;
      if (wide_) {
        int16_t v[64];
        std::memcpy(v, values + 2 * i, 2 * m);
        for (size_t j = 0; j < m; ++j) {
          const int32_t l = v[j];
          worst = std::max(worst, l < 0 ? -l : l);
          y[j] = static_cast<float>(l) * scale;
        }
      } else {
        int8_t v[64];
        std::memcpy(v, values + i, m);
        for (size_t j = 0; j < m; ++j) {
          const int32_t l = v[j];
          worst = std::max(worst, l < 0 ? -l : l);
          y[j] = static_cast<float>(l) * scale;
        }
      }
    });
    if (worst > max_level) {
      return DataLoss("qsgd-linf payload holds level {} beyond the top level {}", worst, max_level);
    }
    return Status::Ok();
  }

 private:
  bool wide_;
};

}  // namespace

std::unique_ptr<Codec> MakeQsgd(const CodecConfig& c) { return std::make_unique<QsgdCodec>(c); }
std::unique_ptr<Codec> MakeQsgdElias(const CodecConfig& c) {
  return std::make_unique<QsgdEliasCodec>(c);
}
std::unique_ptr<Codec> MakeQsgdLinf(const CodecConfig& c) {
  return std::make_unique<QsgdLinfCodec>(c);
}

}  // namespace p2p::sync::codecs::internal
