// The update rules as Eigen array expressions over Maps of one block of the buffers at a time
// (see kBlock). Moved here unchanged from ml/optimizer.cc so the Redis module can compile them.
#include "ml/optimizer_kernels.h"

#include <Eigen/Core>
#include <algorithm>
#include <array>
#include <cmath>

namespace p2p::ml::kernels {
namespace {

// Correctly rounded sqrt on both of Eigen's paths, as torch's. Eigen's own .sqrt() under its
// default EIGEN_FAST_MATH=1 computes packets with rsqrt + one Newton step (1-2 ulp off, denormals
// flushed) but the unaligned head and the tail with std::sqrt, so an update would depend on where
// the buffers happen to sit in memory and a resumed run would not reproduce an uninterrupted one.
struct ExactSqrt {
  float operator()(float x) const { return std::sqrt(x); }
#if defined(EIGEN_VECTORIZE_SSE)
  __m128 packetOp(__m128 x) const { return _mm_sqrt_ps(x); }
#endif
#if defined(EIGEN_VECTORIZE_AVX)
  __m256 packetOp(__m256 x) const { return _mm256_sqrt_ps(x); }
#endif
#if defined(EIGEN_VECTORIZE_AVX512)
  __m512 packetOp(__m512 x) const { return _mm512_sqrt_ps(x); }
#endif
};

}  // namespace
}  // namespace p2p::ml::kernels

namespace Eigen::internal {
// Vectorised where ExactSqrt has a packetOp (x86); elsewhere Eigen evaluates it scalar.
template <>
struct functor_traits<p2p::ml::kernels::ExactSqrt> {
  enum {
    Cost = 5 * NumTraits<float>::MulCost,
#if defined(EIGEN_VECTORIZE_SSE)
    PacketAccess = true
#else
    PacketAccess = false
#endif
  };
};
}  // namespace Eigen::internal

namespace p2p::ml::kernels {
namespace {

using Index = Eigen::Index;
using ArrayMap = Eigen::Map<Eigen::ArrayXf>;
using ConstArrayMap = Eigen::Map<const Eigen::ArrayXf>;

// Elements per block. An update is several Eigen statements over the same 3-5 arrays; running
// them block by block keeps the block (5 x 8 KiB) in L1/L2 between statements instead of
// streaming multi-megabyte buffers from memory once per statement. Elementwise math, so the
// blocking never changes a result.
constexpr Index kBlock = 2048;
using Scratch = std::array<float, kBlock>;

// Calls fn(begin, length) over [0, n) in blocks of at most kBlock elements.
template <typename Fn>
void ForEachBlock(size_t n, Fn&& fn) {
  const auto total = static_cast<Index>(n);
  for (Index b = 0; b < total; b += kBlock) fn(b, std::min(kBlock, total - b));
}

template <typename Derived>
auto Sqrt(const Eigen::ArrayBase<Derived>& x) {
  return x.unaryExpr(ExactSqrt{});
}

ArrayMap Slice(float* data, Index begin, Index n) { return ArrayMap(data + begin, n); }
ConstArrayMap Slice(const float* data, Index begin, Index n) {
  return ConstArrayMap(data + begin, n);
}

// torch's L2 weight decay, grad.add(param, alpha=wd): g, or g + wd*p written to `scratch`
// (>= g.size() floats). Skipped entirely when wd == 0, as in torch, so 0 * inf never makes a NaN.
ConstArrayMap WithL2(ConstArrayMap g, const ArrayMap& p, float wd, float* scratch) {
  if (wd == 0.0f) return g;
  ArrayMap out(scratch, g.size());
  out = g + wd * p;
  return ConstArrayMap(scratch, g.size());
}

}  // namespace

void SgdUpdate(const SgdHyper& h, int64_t step, float* params, const float* grads, float* buf,
               size_t n) {
  Scratch scratch;
  const float lr = h.lr, momentum = h.momentum;
  ForEachBlock(n, [&](Index b, Index len) {
    ArrayMap p = Slice(params, b, len);
    ConstArrayMap g = WithL2(Slice(grads, b, len), p, h.weight_decay, scratch.data());
    if (momentum == 0.0f) {
      p -= lr * g;
      return;
    }
    ArrayMap m = Slice(buf, b, len);
    if (step == 1) {
      m = g;  // torch starts the buffer as a clone of the first gradient
    } else {
      m = momentum * m + g;
    }
    if (h.nesterov) {
      p -= lr * (g + momentum * m);
    } else {
      p -= lr * m;
    }
  });
}

void AdamUpdate(const AdamHyper& h, int64_t step, float* params, const float* grads, float* m,
                float* v, size_t n) {
  Scratch scratch;
  const float lr = h.lr, beta1 = h.beta1, beta2 = h.beta2, eps = h.eps, wd = h.weight_decay;
  // torch computes these scalars in double: step_size = lr / bc1, denom = sqrt(v)/sqrt(bc2)+eps.
  const auto t = static_cast<double>(step);
  const double bc1 = 1.0 - std::pow(static_cast<double>(beta1), t);
  const double bc2 = 1.0 - std::pow(static_cast<double>(beta2), t);
  const auto step_size = static_cast<float>(lr / bc1);
  const auto bc2_sqrt = static_cast<float>(std::sqrt(bc2));
  const auto shrink = static_cast<float>(1.0 - static_cast<double>(lr) * wd);
  const float l2 = h.decoupled ? 0.0f : wd;
  ForEachBlock(n, [&](Index b, Index len) {
    ArrayMap p = Slice(params, b, len);
    if (h.decoupled && wd != 0.0f) p *= shrink;
    ConstArrayMap g = WithL2(Slice(grads, b, len), p, l2, scratch.data());
    ArrayMap mb = Slice(m, b, len);
    ArrayMap vb = Slice(v, b, len);
    mb = beta1 * mb + (1.0f - beta1) * g;
    vb = beta2 * vb + (1.0f - beta2) * g.square();
    p -= step_size * (mb / (Sqrt(vb) / bc2_sqrt + eps));
  });
}

void RmsPropUpdate(const RmsPropHyper& h, float* params, const float* grads, float* square_avg,
                   float* buf, size_t n) {
  Scratch scratch;
  const float lr = h.lr, alpha = h.alpha, eps = h.eps, momentum = h.momentum;
  ForEachBlock(n, [&](Index b, Index len) {
    ArrayMap p = Slice(params, b, len);
    ConstArrayMap g = WithL2(Slice(grads, b, len), p, h.weight_decay, scratch.data());
    ArrayMap v = Slice(square_avg, b, len);
    v = alpha * v + (1.0f - alpha) * g.square();
    if (momentum == 0.0f) {
      p -= lr * (g / (Sqrt(v) + eps));
      return;
    }
    ArrayMap m = Slice(buf, b, len);
    m = momentum * m + g / (Sqrt(v) + eps);
    p -= lr * m;
  });
}

void AdagradUpdate(float lr, float weight_decay, float* params, const float* grads, float* sum,
                   size_t n) {
  constexpr float kEps = 1e-10f;
  Scratch scratch;
  ForEachBlock(n, [&](Index b, Index len) {
    ArrayMap p = Slice(params, b, len);
    ConstArrayMap g = WithL2(Slice(grads, b, len), p, weight_decay, scratch.data());
    ArrayMap s = Slice(sum, b, len);
    s += g.square();
    p -= lr * (g / (Sqrt(s) + kEps));
  });
}

}  // namespace p2p::ml::kernels
