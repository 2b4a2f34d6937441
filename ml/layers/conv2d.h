// 2-D convolution by im2col + GEMM, with groups, an optional bias and a 1x1 fast path.
#pragma once

#include "ml/layer.h"

namespace p2p::ml {

// How a convolution's (or a Linear's) weights start.
enum class WeightInit {
  kFanIn,           // W ~ N(0, 2 / fan_in), b = 0 (this trainer's lenet5 and cnn-cifar)
  kFanOut,          // W ~ N(0, 2 / (out_c*k*k)), b = 0: torchvision's kaiming_normal_(fan_out)
  kTorchDefault,    // W, b ~ U(+-1/sqrt(fan_in)): PyTorch's default for nn.Conv2d / nn.Linear
  kKaimingUniform,  // W ~ U(+-sqrt(6 / fan_in)), b = 0: kaiming_uniform_ as torchvision SqueezeNet
  kNormal001,       // W ~ N(0, 0.01^2), b = 0: SqueezeNet's final (classifier) convolution
};

struct ConvOptions {
  int groups = 1;  // in_c and out_c must both be multiples of it
  bool bias = true;
  WeightInit init = WeightInit::kFanIn;
  int chunk = 0;  // samples per GEMM; 0 = chosen from the weights' size (tests force it)
};

// Cross-correlation (as PyTorch's Conv2d) with square kernel, stride, zero padding and groups.
// Parameters: W (out_c, in_c/groups*k*k) row-major, column index (ci*k + ki)*k + kj with ci the
// channel within the group (PyTorch's weight layout), then b (out_c) if it has a bias.
// Group g maps input channels [g*in_c/G, (g+1)*in_c/G) to outputs [g*out_c/G, (g+1)*out_c/G);
// their im2col rows are contiguous, so each group is one GEMM on a row block.
//
// 1x1, stride 1, no padding ("pointwise", most of a MobileNet's FLOPs): a sample's input row
// already is the (in_c, H*W) GEMM operand and its output row the (out_c, H*W) result, so the
// GEMMs read and write the batch matrices directly: no im2col, scatter or gather copies.
//
// Per sample, Y (out_c, cols) = W im2col(x) with output pixel (oh, ow) in GEMM column
// oh*pitch + ow. With stride 1 the im2col is "wide": pitch is the padded input width, so each
// im2col row is one contiguous slice of the padded input (a single memcpy instead of OH short
// runs); the pitch - OW columns per output row that straddle the border are computed and dropped.
// Otherwise pitch = OW. Per-sample GEMMs keep im2col buffers in L2 (a whole-batch GEMM was
// measured slower: its buffers stream through L3), and Backward recomputes im2col rather than
// keeping N copies.
class Conv2d final : public Layer {
 public:
  // `input` is the per-sample shape this layer will see; OutputShape checks it.
  Conv2d(Shape input, int out_channels, int kernel, int stride = 1, int padding = 0,
         ConvOptions options = {});
  std::string Name() const override;
  Shape OutputShape(Shape input) const override;
  size_t NumParams() const override { return size_t(out_c_) * w_cols() + (bias_ ? out_c_ : 0); }
  void Bind(float* params, float* grads) override;
  void Init(Rng& rng) override;
  void Forward(const Matrix& input, Matrix& output, bool training) override;
  void Backward(const Matrix& input, const Matrix& doutput, Matrix* dinput) override;

 private:
  int k_size() const { return in_.c * kernel_ * kernel_; }  // im2col rows
  int w_cols() const { return k_size() / groups_; }         // GEMM inner dimension per group
  bool pointwise() const { return kernel_ == 1 && stride_ == 1 && padding_ == 0 && chunk_ == 1; }
  int padded_h() const { return in_.h + 2 * padding_; }
  int padded_w() const { return in_.w + 2 * padding_; }
  bool wide() const { return stride_ == 1; }
  // Thin weight matrices (LeNet's first conv: 6 x 25) get dW from dot products over the padded
  // input instead of a GEMM over im2col: measured 1.5x faster for 6 x 25 at batch 64, while
  // 32 x 27 (the CIFAR CNN's first conv) was 1.4x slower than the GEMM.
  bool direct_dw() const {
    return wide() && groups_ == 1 && chunk_ == 1 && out_c_ * k_size() <= kDirectDwMaxWeights;
  }
  static constexpr int kDirectDwMaxWeights = 256;
  // Weights from which samples are chunked, and the GEMM width a chunk aims for.
  static constexpr int kChunkMinWeights = 1 << 16;
  static constexpr int kChunkTargetCols = 1024;
  static constexpr int kMaxChunk = 32;
  MatrixMap W() const { return {params_, out_c_, w_cols()}; }
  VectorMap b() const { return {params_ + size_t(out_c_) * w_cols(), bias_ ? out_c_ : 0}; }
  MatrixMap dW() const { return {grads_, out_c_, w_cols()}; }
  VectorMap db() const { return {grads_ + size_t(out_c_) * w_cols(), bias_ ? out_c_ : 0}; }
  float bias(int o) const { return bias_ ? params_[size_t(out_c_) * w_cols() + o] : 0.0f; }

  // dst (out_c, cols) = W cols, group by group.
  using ConstBlock = Eigen::Ref<const Matrix, 0, Eigen::OuterStride<>>;
  using Block = Eigen::Ref<Matrix, 0, Eigen::OuterStride<>>;
  void Multiply(const ConstBlock& cols, Block dst) const;
  // dW += dy cols^T and, if dcols, *dcols = W^T dy, group by group.
  void MultiplyBackward(const ConstBlock& dy, const ConstBlock& cols, Block* dcols);
  void ForwardPointwise(const float* x, float* y) const;
  void BackwardPointwise(const float* x, const float* dy, float* dx);

  // `slot` is the sample's place in a chunk: its GEMM columns start at slot * gemm_cols_.
  void Im2col(const float* x, int slot);   // one sample's input row -> cols_
  const float* Pad(const float* x);        // x, or a zero-bordered copy of it in padded_
  void Col2im(float* dx, int slot);        // dcols_ -> one sample's input gradient, overwriting dx
  void Crop(float* dx);                    // dx = interior of padded_, then clear padded_
  void Scatter(float* y, int slot) const;  // y_ + b -> one sample's output row
  void Gather(const float* dy, int slot);  // one sample's output gradient -> dy_ (gaps stay 0)
  void AccumulateDwDirect(const float* xp);  // dW += dy_ im2col(xp)^T, xp = Pad(x)

  Shape in_, out_;
  int out_c_, kernel_, stride_, padding_, groups_;
  bool bias_;
  WeightInit init_;
  int pitch_;      // GEMM columns per output row
  int gemm_cols_;  // GEMM columns per sample
  // Samples per GEMM. 1 keeps a sample's im2col buffer in L2; but a large weight matrix (ResNet's
  // 512 x 4608 on 4x4 maps, MobileNet's 1024 x 1024 1x1 on 2x2) then streams from memory once
  // per sample for a GEMM of a few columns, which several samples side by side would avoid.
  // Measured (ml_bench, samples per CPU-second, two interleaved A/B rounds on a loaded machine):
  // resnet18 +5-10 %, mobilenet +18-25 %. Layers under kChunkMinWeights keep chunk 1.
  int chunk_;
  float* params_ = nullptr;
  float* grads_ = nullptr;
  // Per-sample scratch reused across samples and calls: steady-state training allocates nothing.
  Matrix cols_;             // (k_size, chunk * gemm cols)
  Matrix y_;                // (out_c, chunk * gemm cols): W cols_
  Matrix dy_;               // (out_c, gemm cols): doutput in GEMM columns, 0 in the gaps
  Matrix dcols_;            // (k_size, chunk * gemm cols): W^T dy_
  Eigen::VectorXf padded_;  // (in_c, h + 2p, w + 2p): zero-bordered sample or its gradient
};

// Output extent of a window sweep; <= 0 means the input is too small.
inline int ConvOutExtent(int in, int kernel, int stride, int padding) {
  return in + 2 * padding < kernel ? 0 : (in + 2 * padding - kernel) / stride + 1;
}

}  // namespace p2p::ml
