// "topk": the k = ceil(ratio * n) values of largest magnitude as (index, value) pairs (DGC / top-k
// sparsification, REFERENCE.md Part B 4). The rest is dropped here; with error feedback (on by
// default, GradientEncoder) the sender keeps it and adds it to its next gradient.
// Layout (little-endian): u32 n | u32 k | k x u32 index (strictly increasing) | k x f32 value
// Ties in magnitude go to the lower index, so the selection is a function of the input alone.
#include <algorithm>
#include <cmath>

#include "sync/codecs/codec_internal.h"

namespace p2p::sync::codecs::internal {
namespace {

constexpr size_t kHeader = 8;
constexpr int kHistogramShift = 19;  // 2^31 magnitudes -> 4096 bins (8 exponent + 4 mantissa bits)
constexpr size_t kBins = size_t{1} << (31 - kHistogramShift);

inline uint32_t MagnitudeKey(float v) { return std::bit_cast<uint32_t>(v) & 0x7fffffffu; }
// Unique and ordered like (magnitude, then lower index first).
inline uint64_t RankKey(uint32_t key, size_t i) {
  return (uint64_t{key} << 32) | (0xffffffffu - static_cast<uint32_t>(i));
}

class TopkCodec final : public Codec {
 public:
  explicit TopkCodec(const CodecConfig& c) : Codec(c), ratio_(Param(c, "ratio")) {}

  size_t K(size_t n) const {
    if (n == 0) return 0;
    const double k = std::ceil(ratio_ * static_cast<double>(n));
    return std::clamp<size_t>(static_cast<size_t>(k), 1, n);
  }
  size_t MaxPayloadBytes(size_t n) const override { return kHeader + 8 * K(n); }

  Status Encode(std::span<const float> x, uint64_t, std::vector<std::byte>& out) const override {
    P2P_RETURN_IF_ERROR(CheckCount(x.size()));
    const size_t n = x.size(), k = K(n);
    // Pass 1: histogram of magnitudes (their float bits order like the magnitudes).
    std::vector<uint32_t> hist(kBins, 0);
    uint32_t worst = 0;
    for (size_t i = 0; i < n; ++i) {
      const uint32_t key = MagnitudeKey(x[i]);
      worst = std::max(worst, key);
      ++hist[key >> kHistogramShift];
    }
    if (worst > std::bit_cast<uint32_t>(kMaxScale)) return NonFiniteError(x);
    // The bin holding the k-th largest magnitude: `above` values lie in higher bins.
    size_t bin = kBins, above = 0;
    while (k > 0 && bin > 0) {
      --bin;
      if (above + hist[bin] >= k) break;
      above += hist[bin];
    }
    // Pass 2: the candidates in that bin; the (k - above) largest of them are selected.
    uint64_t threshold = 0;  // rank key of the smallest selected candidate
    if (k > 0) {
      std::vector<uint64_t> candidates;
      candidates.reserve(hist[bin]);
      for (size_t i = 0; i < n; ++i) {
        const uint32_t key = MagnitudeKey(x[i]);
        if ((key >> kHistogramShift) == bin) candidates.push_back(RankKey(key, i));
      }
      const size_t need = k - above;
      std::nth_element(candidates.begin(), candidates.begin() + static_cast<ptrdiff_t>(need - 1),
                       candidates.end(), std::greater<>());
      threshold = candidates[need - 1];
    }
    // Pass 3: emit in index order.
    std::byte* p = Extend(out, MaxPayloadBytes(n));
    StoreU32(p, static_cast<uint32_t>(n));
    StoreU32(p + 4, static_cast<uint32_t>(k));
    std::byte* idx = p + kHeader;
    std::byte* val = idx + 4 * k;
    size_t emitted = 0;
    for (size_t i = 0; i < n && emitted < k; ++i) {
      const uint32_t key = MagnitudeKey(x[i]);
      const uint32_t b = key >> kHistogramShift;
      if (b > bin || (b == bin && RankKey(key, i) >= threshold)) {
        StoreU32(idx + 4 * emitted, static_cast<uint32_t>(i));
        StoreF32(val + 4 * emitted, x[i]);
        ++emitted;
      }
    }
    P2P_CHECK(emitted == k, "top-k selected {} of {} values", emitted, k);
    return Status::Ok();
  }

  Status Decode(std::span<const std::byte> payload, std::span<float> out) const override {
    P2P_RETURN_IF_ERROR(CheckHeader("topk", payload, out.size(), kHeader));
    const size_t n = out.size(), k = K(n);
    const uint32_t declared = LoadU32(payload.data() + 4);
    if (declared != k) {
      return DataLoss("topk payload declares {} values but ratio {} of {} gives {}", declared,
                      ratio_, n, k);
    }
    P2P_RETURN_IF_ERROR(CheckSize("topk", payload, MaxPayloadBytes(n)));
    const std::byte* idx = payload.data() + kHeader;
    const std::byte* val = idx + 4 * k;
    int64_t previous = -1;
    for (size_t j = 0; j < k; ++j) {
      const uint32_t i = LoadU32(idx + 4 * j);
      if (static_cast<int64_t>(i) <= previous || i >= n) {
        return DataLoss("topk payload: index {} at position {} is not increasing within [0, {})", i,
                        j, n);
      }
      previous = i;
      if (!(std::fabs(LoadF32(val + 4 * j)) <= kMaxScale)) {
        return DataLoss("topk payload: value at index {} is not finite or beyond {}", i, kMaxScale);
      }
    }
    std::fill(out.begin(), out.end(), 0.0f);
    for (size_t j = 0; j < k; ++j) out[LoadU32(idx + 4 * j)] = LoadF32(val + 4 * j);
    return Status::Ok();
  }

 private:
  double ratio_;
};

}  // namespace

std::unique_ptr<Codec> MakeTopk(const CodecConfig& c) { return std::make_unique<TopkCodec>(c); }

}  // namespace p2p::sync::codecs::internal
