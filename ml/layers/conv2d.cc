#include "ml/layers/conv2d.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "common/status.h"
#include "ml/random.h"

namespace p2p::ml {

Conv2d::Conv2d(Shape input, int out_channels, int kernel, int stride, int padding,
               ConvOptions options)
    : in_(input),
      out_c_(out_channels),
      kernel_(kernel),
      stride_(stride),
      padding_(padding),
      groups_(options.groups),
      bias_(options.bias),
      init_(options.init) {
  P2P_CHECK(out_channels > 0 && kernel > 0 && stride > 0 && padding >= 0 && groups_ > 0,
            "conv out_c={} k={} s={} p={} groups={}", out_channels, kernel, stride, padding,
            groups_);
  P2P_CHECK(in_.c % groups_ == 0 && out_c_ % groups_ == 0,
            "conv {}->{} channels: both must be multiples of groups {}", in_.c, out_c_, groups_);
  out_ = {out_c_, ConvOutExtent(in_.h, kernel, stride, padding),
          ConvOutExtent(in_.w, kernel, stride, padding)};
  P2P_CHECK(out_.h > 0 && out_.w > 0, "input {} too small for conv kernel {} padding {}",
            in_.ToString(), kernel, padding);
  pitch_ = wide() ? padded_w() : out_.w;
  gemm_cols_ = (out_.h - 1) * pitch_ + out_.w;  // the last row needs no trailing gap
  chunk_ = options.chunk > 0 ? options.chunk
           : out_c_ * w_cols() < kChunkMinWeights
               ? 1
               : std::clamp(kChunkTargetCols / gemm_cols_, 1, kMaxChunk);
  if (pointwise()) return;  // works on the batch matrices in place: no scratch
  const int cols = chunk_ * gemm_cols_;
  cols_.resize(k_size(), cols);
  y_.resize(out_c_, cols);
  dy_.setZero(out_c_, cols);
  dcols_.resize(k_size(), cols);
  padded_.setZero(in_.c * padded_h() * padded_w());
}

std::string Conv2d::Name() const {
  return fmt::format("conv2d({}->{}, k{} s{} p{}{}{})", in_.c, out_c_, kernel_, stride_, padding_,
                     groups_ > 1 ? fmt::format(" g{}", groups_) : "", bias_ ? "" : " nobias");
}

Shape Conv2d::OutputShape(Shape input) const {
  P2P_CHECK(input == in_, "conv built for {}, got {}", in_.ToString(), input.ToString());
  return out_;
}

void Conv2d::Bind(float* params, float* grads) {
  params_ = params;
  grads_ = grads;
}

void Conv2d::Init(Rng& rng) {
  const std::span<float> weights(params_, size_t(out_c_) * w_cols());
  const float fan_in = static_cast<float>(w_cols());
  switch (init_) {
    case WeightInit::kFanIn:
      FillNormal(rng, std::sqrt(2.0f / fan_in), weights);
      b().setZero();
      break;
    case WeightInit::kFanOut:
      FillNormal(rng, std::sqrt(2.0f / static_cast<float>(out_c_ * kernel_ * kernel_)), weights);
      b().setZero();
      break;
    case WeightInit::kTorchDefault:
      FillUniform(rng, 1.0f / std::sqrt(fan_in), weights);
      FillUniform(rng, 1.0f / std::sqrt(fan_in), {b().data(), size_t(b().size())});
      break;
    case WeightInit::kKaimingUniform:
      FillUniform(rng, std::sqrt(6.0f / fan_in), weights);
      b().setZero();
      break;
    case WeightInit::kNormal001:
      FillNormal(rng, 0.01f, weights);
      b().setZero();
      break;
  }
}

// cols_(row, oh*pitch + ow) = xp[c, oh*s + ki, ow*s + kj] with row = (c*k + ki)*k + kj, where xp
// is x zero-padded by p. Wide (stride 1): row r is xp from offset (c*hp + ki)*wp + kj onwards.
void Conv2d::Im2col(const float* x, int slot) {
  const float* src = Pad(x);
  const int hp = padded_h(), wp = padded_w(), ow_n = out_.w;
  float* cols = cols_.data() + slot * gemm_cols_;
  for (int c = 0; c < in_.c; ++c) {
    for (int ki = 0; ki < kernel_; ++ki) {
      for (int kj = 0; kj < kernel_; ++kj, cols += cols_.cols()) {
        const float* plane = src + (c * hp + ki) * wp + kj;
        if (wide()) {
          std::copy(plane, plane + gemm_cols_, cols);  // ends inside xp: see gemm_cols_
          continue;
        }
        for (int oh = 0; oh < out_.h; ++oh) {
          const float* run = plane + oh * stride_ * wp;
          for (int ow = 0; ow < ow_n; ++ow) cols[oh * ow_n + ow] = run[ow * stride_];
        }
      }
    }
  }
}

const float* Conv2d::Pad(const float* x) {
  if (padding_ == 0) return x;
  const int wp = padded_w();
  for (int c = 0; c < in_.c; ++c) {
    for (int h = 0; h < in_.h; ++h) {
      float* dst = padded_.data() + (c * padded_h() + h + padding_) * wp + padding_;
      std::copy_n(x + (c * in_.h + h) * in_.w, in_.w, dst);
    }
  }
  return padded_.data();
}

// The adjoint of Im2col: accumulates dcols_ into a zeroed padded gradient, then crops it to dx.
void Conv2d::Col2im(float* dx, int slot) {
  float* dst = padding_ == 0 ? dx : padded_.data();
  const int hp = padded_h(), wp = padded_w(), ow_n = out_.w;
  std::fill(dst, dst + in_.c * hp * wp, 0.0f);
  const float* dcols = dcols_.data() + slot * gemm_cols_;
  for (int c = 0; c < in_.c; ++c) {
    for (int ki = 0; ki < kernel_; ++ki) {
      for (int kj = 0; kj < kernel_; ++kj, dcols += dcols_.cols()) {
        float* plane = dst + (c * hp + ki) * wp + kj;
        if (wide()) {  // gap columns of dcols_ are 0, since dy_'s are
          Eigen::Map<Eigen::ArrayXf>(plane, gemm_cols_) +=
              Eigen::Map<const Eigen::ArrayXf>(dcols, gemm_cols_);
          continue;
        }
        for (int oh = 0; oh < out_.h; ++oh) {
          float* run = plane + oh * stride_ * wp;
          for (int ow = 0; ow < ow_n; ++ow) run[ow * stride_] += dcols[oh * ow_n + ow];
        }
      }
    }
  }
  if (padding_ > 0) Crop(dx);
}

void Conv2d::Crop(float* dx) {
  const int wp = padded_w();
  for (int c = 0; c < in_.c; ++c) {
    for (int h = 0; h < in_.h; ++h) {
      const float* src = padded_.data() + (c * padded_h() + h + padding_) * wp + padding_;
      std::copy_n(src, in_.w, dx + (c * in_.h + h) * in_.w);
    }
  }
  padded_.setZero();  // Pad relies on a zero border
}

void Conv2d::Scatter(float* y, int slot) const {
  for (int o = 0; o < out_c_; ++o) {
    const float bias = this->bias(o);
    for (int oh = 0; oh < out_.h; ++oh, y += out_.w) {
      Eigen::Map<Eigen::ArrayXf>(y, out_.w) =
          Eigen::Map<const Eigen::ArrayXf>(&y_(o, slot * gemm_cols_ + oh * pitch_), out_.w) + bias;
    }
  }
}

void Conv2d::Gather(const float* dy, int slot) {
  for (int o = 0; o < out_c_; ++o) {
    for (int oh = 0; oh < out_.h; ++oh, dy += out_.w) {
      std::copy_n(dy, out_.w, &dy_(o, slot * gemm_cols_ + oh * pitch_));
    }
  }
}

// dW(o, r) += dy_.row(o) . (im2col row r), reading row r straight from the padded sample: in the
// wide layout it is the slice starting at (c*hp + ki)*wp + kj, so no im2col copy is needed.
void Conv2d::AccumulateDwDirect(const float* xp) {
  MatrixMap dw = dW();
  for (int r = 0; r < k_size(); ++r) {
    const int c = r / (kernel_ * kernel_), ki = (r / kernel_) % kernel_, kj = r % kernel_;
    const Eigen::Map<const Eigen::RowVectorXf> row(xp + (c * padded_h() + ki) * padded_w() + kj,
                                                   dy_.cols());
    for (int o = 0; o < out_c_; ++o) dw(o, r) += dy_.row(o).dot(row);  // groups_ == 1
  }
}

void Conv2d::Multiply(const ConstBlock& cols, Block dst) const {
  const int ocg = out_c_ / groups_, kg = w_cols();
  if (groups_ == 1) {
    dst.noalias() = W() * cols;
    return;
  }
  for (int g = 0; g < groups_; ++g) {
    dst.middleRows(g * ocg, ocg).noalias() =
        W().middleRows(g * ocg, ocg) * cols.middleRows(g * kg, kg);
  }
}

void Conv2d::MultiplyBackward(const ConstBlock& dy, const ConstBlock& cols, Block* dcols) {
  const int ocg = out_c_ / groups_, kg = w_cols();
  for (int g = 0; g < groups_; ++g) {
    const auto dy_g = dy.middleRows(g * ocg, ocg);
    dW().middleRows(g * ocg, ocg).noalias() += dy_g * cols.middleRows(g * kg, kg).transpose();
    if (dcols != nullptr) {
      dcols->middleRows(g * kg, kg).noalias() = W().middleRows(g * ocg, ocg).transpose() * dy_g;
    }
  }
}

void Conv2d::ForwardPointwise(const float* x, float* y) const {
  const int hw = in_.h * in_.w;
  MatrixMap out(y, out_c_, hw);
  Multiply(ConstMatrixMap(x, in_.c, hw), out);
  if (bias_) out.colwise() += b();
}

void Conv2d::BackwardPointwise(const float* x, const float* dy, float* dx) {
  const int hw = in_.h * in_.w;
  const ConstMatrixMap dy_map(dy, out_c_, hw);
  if (bias_) db() += dy_map.rowwise().sum();
  MatrixMap dx_map(dx, in_.c, hw);
  Block dx_block(dx_map);
  MultiplyBackward(dy_map, ConstMatrixMap(x, in_.c, hw), dx == nullptr ? nullptr : &dx_block);
}

void Conv2d::Forward(const Matrix& input, Matrix& output, bool /*training*/) {
  P2P_CHECK(input.cols() == in_.size(), "conv input has {} columns, want {}", input.cols(),
            in_.size());
  output.resize(input.rows(), out_.size());
  if (pointwise()) {
    for (Eigen::Index n = 0; n < input.rows(); ++n) {
      ForwardPointwise(input.row(n).data(), output.row(n).data());
    }
    return;
  }
  for (Eigen::Index start = 0; start < input.rows(); start += chunk_) {
    const int count = int(std::min<Eigen::Index>(chunk_, input.rows() - start));
    for (int s = 0; s < count; ++s) Im2col(input.row(start + s).data(), s);
    const int cols = count * gemm_cols_;
    Multiply(cols_.leftCols(cols), y_.leftCols(cols));
    for (int s = 0; s < count; ++s) Scatter(output.row(start + s).data(), s);
  }
}

void Conv2d::Backward(const Matrix& input, const Matrix& doutput, Matrix* dinput) {
  if (dinput != nullptr) dinput->resize(input.rows(), in_.size());
  if (pointwise()) {
    for (Eigen::Index n = 0; n < input.rows(); ++n) {
      BackwardPointwise(input.row(n).data(), doutput.row(n).data(),
                        dinput == nullptr ? nullptr : dinput->row(n).data());
    }
    return;
  }
  for (Eigen::Index start = 0; start < input.rows(); start += chunk_) {
    const int count = int(std::min<Eigen::Index>(chunk_, input.rows() - start));
    const int cols = count * gemm_cols_;
    for (int s = 0; s < count; ++s) {
      const Eigen::Index n = start + s;
      Gather(doutput.row(n).data(), s);
      if (bias_) {
        db() += ConstMatrixMap(doutput.row(n).data(), out_c_, out_.h * out_.w).rowwise().sum();
      }
    }
    Block dcols(dcols_.leftCols(cols));
    if (direct_dw()) {  // implies chunk_ == 1
      AccumulateDwDirect(Pad(input.row(start).data()));
      if (dinput == nullptr) continue;
      dcols.noalias() = W().transpose() * dy_;
    } else {
      // im2col is recomputed: cheaper than keeping N copies out of cache.
      for (int s = 0; s < count; ++s) Im2col(input.row(start + s).data(), s);
      MultiplyBackward(dy_.leftCols(cols), cols_.leftCols(cols),
                       dinput == nullptr ? nullptr : &dcols);
      if (dinput == nullptr) continue;
    }
    for (int s = 0; s < count; ++s) Col2im(dinput->row(start + s).data(), s);
  }
}

}  // namespace p2p::ml
