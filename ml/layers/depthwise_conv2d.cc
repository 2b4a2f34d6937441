#include "ml/layers/depthwise_conv2d.h"

#include <fmt/format.h>

#include <cmath>

#include "common/status.h"
#include "ml/random.h"

namespace p2p::ml {

DepthwiseConv2d::DepthwiseConv2d(Shape input, int kernel, int stride, int padding,
                                 ConvOptions options)
    : in_(input),
      kernel_(kernel),
      stride_(stride),
      padding_(padding),
      bias_(options.bias),
      init_(options.init) {
  P2P_CHECK(kernel > 0 && stride > 0 && padding >= 0, "depthwise conv k={} s={} p={}", kernel,
            stride, padding);
  out_ = {in_.c, ConvOutExtent(in_.h, kernel, stride, padding),
          ConvOutExtent(in_.w, kernel, stride, padding)};
  P2P_CHECK(out_.h > 0 && out_.w > 0, "input {} too small for depthwise conv kernel {} padding {}",
            in_.ToString(), kernel, padding);
  plane_.setZero(hp() * wp());
  dplane_.setZero(hp() * wp());
}

std::string DepthwiseConv2d::Name() const {
  return fmt::format("dwconv2d({}, k{} s{} p{}{})", in_.c, kernel_, stride_, padding_,
                     bias_ ? "" : " nobias");
}

Shape DepthwiseConv2d::OutputShape(Shape input) const {
  P2P_CHECK(input == in_, "depthwise conv built for {}, got {}", in_.ToString(), input.ToString());
  return out_;
}

void DepthwiseConv2d::Bind(float* params, float* grads) {
  params_ = params;
  grads_ = grads;
}

// fan_in = k*k (one input channel per filter); fan_out = C*k*k as PyTorch computes it for a
// (C, 1, k, k) weight, whatever the groups.
void DepthwiseConv2d::Init(Rng& rng) {
  const std::span<float> weights(params_, size_t(in_.c) * kk());
  const std::span<float> biases(params_ + weights.size(), bias_ ? size_t(in_.c) : 0);
  switch (init_) {
    case WeightInit::kFanIn:
      FillNormal(rng, std::sqrt(2.0f / float(kk())), weights);
      std::fill(biases.begin(), biases.end(), 0.0f);
      break;
    case WeightInit::kFanOut:
      FillNormal(rng, std::sqrt(2.0f / float(in_.c * kk())), weights);
      std::fill(biases.begin(), biases.end(), 0.0f);
      break;
    case WeightInit::kTorchDefault:
      FillUniform(rng, 1.0f / std::sqrt(float(kk())), weights);
      FillUniform(rng, 1.0f / std::sqrt(float(kk())), biases);
      break;
    case WeightInit::kKaimingUniform:
      FillUniform(rng, std::sqrt(6.0f / float(kk())), weights);
      std::fill(biases.begin(), biases.end(), 0.0f);
      break;
    case WeightInit::kNormal001:
      FillNormal(rng, 0.01f, weights);
      std::fill(biases.begin(), biases.end(), 0.0f);
      break;
  }
}

void DepthwiseConv2d::PadPlane(const float* x) {
  for (int h = 0; h < in_.h; ++h) {
    std::copy_n(x + h * in_.w, in_.w, plane_.data() + (h + padding_) * wp() + padding_);
  }
}

void DepthwiseConv2d::ForwardPlane(const float* w, float bias, float* y) const {
  const float* xp = plane_.data();
  for (int oh = 0; oh < out_.h; ++oh) {
    float* row = y + oh * out_.w;
    std::fill(row, row + out_.w, bias);
    for (int ki = 0; ki < kernel_; ++ki) {
      const float* src = xp + (oh * stride_ + ki) * wp();
      for (int kj = 0; kj < kernel_; ++kj) {
        const float wv = w[ki * kernel_ + kj];
        const float* s = src + kj;
        if (stride_ == 1) {
          for (int ow = 0; ow < out_.w; ++ow) row[ow] += wv * s[ow];
        } else {
          for (int ow = 0; ow < out_.w; ++ow) row[ow] += wv * s[ow * stride_];
        }
      }
    }
  }
}

void DepthwiseConv2d::BackwardPlane(const float* w, const float* dy, float* dw, bool want_dx) {
  const float* xp = plane_.data();
  float* dxp = dplane_.data();
  if (want_dx) dplane_.setZero();
  for (int oh = 0; oh < out_.h; ++oh) {
    const float* g = dy + oh * out_.w;
    for (int ki = 0; ki < kernel_; ++ki) {
      const int offset = (oh * stride_ + ki) * wp();
      for (int kj = 0; kj < kernel_; ++kj) {
        const float* s = xp + offset + kj;
        float* d = dxp + offset + kj;
        const float wv = w[ki * kernel_ + kj];
        float acc = 0;
        if (stride_ == 1) {
          for (int ow = 0; ow < out_.w; ++ow) acc += g[ow] * s[ow];
          if (want_dx)
            for (int ow = 0; ow < out_.w; ++ow) d[ow] += wv * g[ow];
        } else {
          for (int ow = 0; ow < out_.w; ++ow) acc += g[ow] * s[ow * stride_];
          if (want_dx)
            for (int ow = 0; ow < out_.w; ++ow) d[ow * stride_] += wv * g[ow];
        }
        dw[ki * kernel_ + kj] += acc;
      }
    }
  }
}

void DepthwiseConv2d::Forward(const Matrix& input, Matrix& output, bool /*training*/) {
  P2P_CHECK(input.cols() == in_.size(), "depthwise conv input has {} columns, want {}",
            input.cols(), in_.size());
  output.resize(input.rows(), out_.size());
  const int plane_in = in_.h * in_.w, plane_out = out_.h * out_.w;
  for (Eigen::Index n = 0; n < input.rows(); ++n) {
    for (int c = 0; c < in_.c; ++c) {
      PadPlane(input.row(n).data() + c * plane_in);
      const float bias = bias_ ? params_[size_t(in_.c) * kk() + c] : 0.0f;
      ForwardPlane(params_ + c * kk(), bias, output.row(n).data() + c * plane_out);
    }
  }
}

void DepthwiseConv2d::Backward(const Matrix& input, const Matrix& doutput, Matrix* dinput) {
  if (dinput != nullptr) dinput->resize(input.rows(), in_.size());
  const int plane_in = in_.h * in_.w, plane_out = out_.h * out_.w;
  for (Eigen::Index n = 0; n < input.rows(); ++n) {
    for (int c = 0; c < in_.c; ++c) {
      const float* dy = doutput.row(n).data() + c * plane_out;
      if (bias_) {
        grads_[size_t(in_.c) * kk() + c] += Eigen::Map<const Eigen::ArrayXf>(dy, plane_out).sum();
      }
      PadPlane(input.row(n).data() + c * plane_in);
      BackwardPlane(params_ + c * kk(), dy, grads_ + c * kk(), dinput != nullptr);
      if (dinput == nullptr) continue;
      float* dx = dinput->row(n).data() + c * plane_in;
      for (int h = 0; h < in_.h; ++h) {
        std::copy_n(dplane_.data() + (h + padding_) * wp() + padding_, in_.w, dx + h * in_.w);
      }
    }
  }
}

}  // namespace p2p::ml
