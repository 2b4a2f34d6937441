// Internals shared by the codec implementations: little-endian field access, payload cursors,
// finiteness checks, the stochastic-rounding generator and fixed-width bit packing. Not part of
// the codecs' interface (tests include it to check the building blocks directly).
#pragma once

#include <array>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "sync/codecs/codec.h"

namespace p2p::sync::codecs::internal {

static_assert(std::endian::native == std::endian::little,
              "the codec payloads are little-endian; add byte swapping for big-endian hosts");

// Largest scale (norm, absmax, range end) a payload may carry: keeps every decoded value and every
// weighted sum of them finite.
inline constexpr float kMaxScale = 1e38f;
// Smallest nonzero scale an encoder uses: below it (a bucket of values all under ~1e-30) s / scale
// could overflow, so the bucket is sent as zeros.
inline constexpr float kMinScale = 1e-30f;

inline uint64_t ByteSwap64(uint64_t v) { return __builtin_bswap64(v); }

inline void StoreU16(std::byte* p, uint16_t v) { std::memcpy(p, &v, 2); }
inline void StoreU32(std::byte* p, uint32_t v) { std::memcpy(p, &v, 4); }
inline void StoreU64(std::byte* p, uint64_t v) { std::memcpy(p, &v, 8); }
inline void StoreF32(std::byte* p, float v) { std::memcpy(p, &v, 4); }
inline uint16_t LoadU16(const std::byte* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}
inline uint32_t LoadU32(const std::byte* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
inline uint64_t LoadU64(const std::byte* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}
inline float LoadF32(const std::byte* p) {
  float v;
  std::memcpy(&v, p, 4);
  return v;
}

// Grows `out` by `n` bytes and returns a pointer to them (Encode's way of reserving its maximum;
// it shrinks `out` to what it wrote at the end).
inline std::byte* Extend(std::vector<std::byte>& out, size_t n) {
  const size_t old = out.size();
  out.resize(old + n);
  return out.data() + old;
}

// InvalidArgument naming the first value that is not finite or beyond +-kMaxScale, or Ok.
// Vectorised scan of the magnitude bits.
Status CheckFinite(std::span<const float> values);
// The error CheckFinite returns, for codecs that detect non-finite input on their own pass.
Status NonFiniteError(std::span<const float> values);

// Too many values for a u32 count.
Status CheckCount(size_t n);

// Reads the u32 count at the start of a payload and checks it against out.size() and the minimum
// size of the fixed header. DataLoss naming the codec otherwise.
Status CheckHeader(std::string_view codec, std::span<const std::byte> payload, size_t out_size,
                   size_t header_bytes);
// DataLoss unless the payload is exactly `expected` bytes.
Status CheckSize(std::string_view codec, std::span<const std::byte> payload, size_t expected);
// Validates a stored scale: finite, >= 0, <= kMaxScale.
Status CheckScale(std::string_view codec, std::string_view what, float scale, size_t index);

// Sum of squares in double over 16 fixed lanes (lane j takes elements j, j+16, ...), added in a
// fixed order at the end: the same result at any vector width. Non-finite iff an input is.
double SumOfSquares(const float* x, size_t n);
double Sum(const float* x, size_t n);
double SumOfSquaredDeviations(const float* x, size_t n, double mean);
// max |x_i| as float bits (a NaN or Inf shows as >= 0x7f800000).
uint32_t MaxAbsBits(const float* x, size_t n);

// SplitMix64 step: a well-mixed 64-bit value from any input.
inline uint64_t SplitMix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// Stochastic rounding randomness: 64 independent xoshiro128+ generators advanced in lock step, so
// one call yields 64 uniform 32-bit values with plain 32-bit vector arithmetic. Value i of a group
// of 64 comes from lane i; lanes are seeded from the 64-bit seed by SplitMix64.
class LaneRng {
 public:
  static constexpr int kLanes = 64;
  explicit LaneRng(uint64_t seed);
  void Next(uint32_t* out) {
    for (int j = 0; j < kLanes; ++j) {
      out[j] = s0_[j] + s3_[j];
      const uint32_t t = s1_[j] << 9;
      s2_[j] ^= s0_[j];
      s3_[j] ^= s1_[j];
      s1_[j] ^= s2_[j];
      s0_[j] ^= s3_[j];
      s2_[j] ^= t;
      s3_[j] = (s3_[j] << 11) | (s3_[j] >> 21);
    }
  }

 private:
  alignas(64) uint32_t s0_[kLanes], s1_[kLanes], s2_[kLanes], s3_[kLanes];
};

// Fixed-width packing of 64 values of W bits into W 64-bit words, value i at stream bits
// [i*W, i*W + W), least significant bit first (for W = 8 and 16 that is a plain byte / u16 array).
template <int W>
inline void PackGroup(const uint32_t* v, uint64_t* out) {
  static_assert(W >= 1 && W <= 32);
  if constexpr (W == 8 || W == 16) {
    using T = std::conditional_t<W == 8, uint8_t, uint16_t>;
    T tmp[64];
    for (int i = 0; i < 64; ++i) tmp[i] = static_cast<T>(v[i]);
    std::memcpy(out, tmp, sizeof(tmp));
  } else {
    uint64_t words[W] = {};
#pragma GCC unroll 64
    for (int i = 0; i < 64; ++i) {
      const int bit = i * W, w = bit >> 6, off = bit & 63;
      words[w] |= uint64_t{v[i]} << off;
      if (off + W > 64) words[w + 1] |= uint64_t{v[i]} >> (64 - off);
    }
    std::memcpy(out, words, sizeof(words));
  }
}

template <int W>
inline void UnpackGroup(const uint64_t* in, uint32_t* v) {
  static_assert(W >= 1 && W <= 32);
  if constexpr (W == 8 || W == 16) {
    using T = std::conditional_t<W == 8, uint8_t, uint16_t>;
    T tmp[64];
    std::memcpy(tmp, in, sizeof(tmp));
    for (int i = 0; i < 64; ++i) v[i] = tmp[i];
  } else {
    uint64_t words[W];
    std::memcpy(words, in, sizeof(words));
    constexpr uint64_t kMask = (uint64_t{1} << W) - 1;
#pragma GCC unroll 64
    for (int i = 0; i < 64; ++i) {
      const int bit = i * W, w = bit >> 6, off = bit & 63;
      uint64_t x = words[w] >> off;
      if (off + W > 64) x |= words[w + 1] << (64 - off);
      v[i] = static_cast<uint32_t>(x & kMask);
    }
  }
}

// Calls f(std::integral_constant<int, W>) for a runtime width 1..16 (one dispatch per call, so
// the per-element loops are specialised for their width).
template <typename F>
decltype(auto) DispatchWidth(int w, F&& f) {
  switch (w) {
#define P2P_WIDTH_CASE(n) \
  case n:                 \
    return f(std::integral_constant<int, n>{});
    P2P_WIDTH_CASE(1)
    P2P_WIDTH_CASE(2)
    P2P_WIDTH_CASE(3)
    P2P_WIDTH_CASE(4)
    P2P_WIDTH_CASE(5)
    P2P_WIDTH_CASE(6)
    P2P_WIDTH_CASE(7)
    P2P_WIDTH_CASE(8)
    P2P_WIDTH_CASE(9)
    P2P_WIDTH_CASE(10)
    P2P_WIDTH_CASE(11)
    P2P_WIDTH_CASE(12)
    P2P_WIDTH_CASE(13)
    P2P_WIDTH_CASE(14)
    P2P_WIDTH_CASE(15)
    default:
      return f(std::integral_constant<int, 16>{});
#undef P2P_WIDTH_CASE
  }
}

// IEEE binary16 conversions in software (round to nearest even, overflow to infinity): the
// portable fallback and the reference the hardware path is tested against.
uint16_t HalfFromFloatSoft(float f);
float FloatFromHalfSoft(uint16_t h);

// Elias codes of m >= 1, most significant bit first: the code's bits are the low `length` bits
// of `bits`. Omega as in REFERENCE.md Part A 3.1 (1 -> "0", 2 -> "100", 3 -> "110").
struct EliasCode {
  uint64_t bits = 0;
  int length = 0;
};
EliasCode EliasGamma(uint32_t m);
EliasCode EliasOmega(uint32_t m);

// An MSB-first bit stream: bit k of the stream is bit 7 - k % 8 of byte k / 8. Written 64 bits at
// a time (big-endian stores of a 64-bit accumulator).
class BitWriter {
 public:
  // `out` must have room for every bit written, rounded up to 8 bytes.
  explicit BitWriter(std::byte* out) : out_(out) {}
  // Appends the low `length` bits of `bits` (1 <= length <= 57; higher bits must be zero).
  void Put(uint64_t bits, int length) {
    const int free = 64 - used_;
    if (length < free) {
      acc_ |= bits << (free - length);
      used_ += length;
    } else {
      const int rest = length - free;
      acc_ |= bits >> rest;
      Flush();
      acc_ = rest ? bits << (64 - rest) : 0;
      used_ = rest;
    }
    total_ += static_cast<uint64_t>(length);
  }
  // Writes the partial last word's bytes; returns the number of bits written.
  uint64_t Finish() {
    const uint64_t be = ByteSwap64(acc_);
    std::memcpy(out_, &be, static_cast<size_t>((used_ + 7) / 8));
    return total_;
  }

 private:
  void Flush() {
    const uint64_t be = ByteSwap64(acc_);
    std::memcpy(out_, &be, 8);
    out_ += 8;
  }
  std::byte* out_;
  uint64_t acc_ = 0;
  int used_ = 0;
  uint64_t total_ = 0;
};

// Reads an MSB-first stream of `bits` bits without ever touching memory outside its bytes (bits
// past the end read as zero; callers check their position against size()).
class BitReader {
 public:
  static constexpr int kPeekBits = 57;
  BitReader(const std::byte* data, uint64_t bits)
      : data_(data), bits_(bits), bytes_((bits + 7) / 8) {}
  // The stream from bit `pos` on, most significant bit first; the first kPeekBits are meaningful.
  uint64_t PeekAt(uint64_t pos) const {
    const uint64_t byte = pos >> 3;
    uint64_t w;
    if (byte + 8 <= bytes_) {
      std::memcpy(&w, data_ + byte, 8);
    } else {
      unsigned char tmp[8] = {};
      if (byte < bytes_) std::memcpy(tmp, data_ + byte, static_cast<size_t>(bytes_ - byte));
      std::memcpy(&w, tmp, 8);
    }
    return ByteSwap64(w) << (pos & 7);
  }
  uint64_t size() const { return bits_; }

 private:
  const std::byte* data_;
  uint64_t bits_, bytes_;
};

// Codec factories (one per file).
std::unique_ptr<Codec> MakeNone(const CodecConfig& config);
std::unique_ptr<Codec> MakeFp16(const CodecConfig& config);
std::unique_ptr<Codec> MakeQsgd(const CodecConfig& config);
std::unique_ptr<Codec> MakeQsgdElias(const CodecConfig& config);
std::unique_ptr<Codec> MakeQsgdLinf(const CodecConfig& config);
std::unique_ptr<Codec> MakeUint8(const CodecConfig& config);
std::unique_ptr<Codec> MakeTopk(const CodecConfig& config);

// Parameter access for factories (the config is canonical, so the key exists).
inline double Param(const CodecConfig& config, const char* key) { return config.params.at(key); }

}  // namespace p2p::sync::codecs::internal
