#include "ml/layers/graph.h"

#include <fmt/format.h>

#include "common/status.h"

namespace p2p::ml {

Sequential::Sequential(Shape input, Layers layers) : layers_(std::move(layers)) {
  shapes_.push_back(input);
  for (const auto& layer : layers_) {
    shapes_.push_back(layer->OutputShape(shapes_.back()));
    num_params_ += layer->NumParams();
    num_buffers_ += layer->NumBuffers();
  }
  acts_.resize(layers_.size());
  deltas_.resize(layers_.size());
}

std::string Sequential::Name() const {
  std::string names;
  for (const auto& layer : layers_) names += (names.empty() ? "" : ", ") + layer->Name();
  return "[" + names + "]";
}

Shape Sequential::OutputShape(Shape input) const {
  P2P_CHECK(input == shapes_.front(), "sequential built for {}, got {}", shapes_.front().ToString(),
            input.ToString());
  return shapes_.back();
}

void Sequential::Bind(float* params, float* grads) {
  for (const auto& layer : layers_) {
    layer->Bind(params, grads);
    params += layer->NumParams();
    grads += layer->NumParams();
  }
}

void Sequential::BindBuffers(float* buffers) {
  for (const auto& layer : layers_) {
    layer->BindBuffers(buffers);
    buffers += layer->NumBuffers();
  }
}

void Sequential::Init(Rng& rng) {
  for (const auto& layer : layers_) layer->Init(rng);
}

void Sequential::Forward(const Matrix& input, Matrix& output, bool training) {
  if (layers_.empty()) {
    output = input;
    return;
  }
  const Matrix* x = &input;
  for (size_t i = 0; i < layers_.size(); ++i) {
    Matrix& y = i + 1 == layers_.size() ? output : acts_[i];
    layers_[i]->Forward(*x, y, training);
    x = &y;
  }
}

void Sequential::Backward(const Matrix& input, const Matrix& doutput, Matrix* dinput) {
  if (layers_.empty()) {
    if (dinput != nullptr) *dinput = doutput;
    return;
  }
  for (size_t i = layers_.size(); i-- > 0;) {
    const Matrix& x = i == 0 ? input : acts_[i - 1];
    const Matrix& dy = i + 1 == layers_.size() ? doutput : deltas_[i];
    layers_[i]->Backward(x, dy, i == 0 ? dinput : &deltas_[i - 1]);
  }
}

Residual::Residual(std::unique_ptr<Sequential> body, std::unique_ptr<Sequential> shortcut)
    : body_(std::move(body)), shortcut_(std::move(shortcut)) {
  P2P_CHECK(body_ != nullptr && !body_->empty(), "residual block without a body");
}

std::string Residual::Name() const {
  return fmt::format("residual(body {}, shortcut {})", body_->Name(),
                     shortcut_ ? shortcut_->Name() : "identity");
}

Shape Residual::OutputShape(Shape input) const {
  const Shape out = body_->OutputShape(input);
  const Shape skip = shortcut_ ? shortcut_->OutputShape(input) : input;
  P2P_CHECK(out == skip, "residual body gives {}, shortcut gives {}", out.ToString(),
            skip.ToString());
  return out;
}

size_t Residual::NumParams() const {
  return body_->NumParams() + (shortcut_ ? shortcut_->NumParams() : 0);
}

size_t Residual::NumBuffers() const {
  return body_->NumBuffers() + (shortcut_ ? shortcut_->NumBuffers() : 0);
}

void Residual::Bind(float* params, float* grads) {
  body_->Bind(params, grads);
  if (shortcut_) shortcut_->Bind(params + body_->NumParams(), grads + body_->NumParams());
}

void Residual::BindBuffers(float* buffers) {
  body_->BindBuffers(buffers);
  if (shortcut_) shortcut_->BindBuffers(buffers + body_->NumBuffers());
}

void Residual::Init(Rng& rng) {
  body_->Init(rng);
  if (shortcut_) shortcut_->Init(rng);
}

void Residual::Forward(const Matrix& input, Matrix& output, bool training) {
  body_->Forward(input, output, training);
  if (!shortcut_) {
    output += input;
    return;
  }
  shortcut_->Forward(input, short_out_, training);
  output += short_out_;
}

void Residual::Backward(const Matrix& input, const Matrix& doutput, Matrix* dinput) {
  const bool want_dx = dinput != nullptr;
  body_->Backward(input, doutput, want_dx ? &dbody_ : nullptr);
  if (shortcut_) shortcut_->Backward(input, doutput, want_dx ? &dshort_ : nullptr);
  if (!want_dx) return;
  dinput->resize(input.rows(), input.cols());
  dinput->noalias() = dbody_ + (shortcut_ ? dshort_ : doutput);
}

Concat::Concat(Shape input, std::vector<std::unique_ptr<Sequential>> branches)
    : in_(input), branches_(std::move(branches)) {
  P2P_CHECK(!branches_.empty(), "concat without branches");
  out_ = branches_.front()->OutputShape(in_);
  out_.c = 0;
  for (const auto& branch : branches_) {
    const Shape s = branch->OutputShape(in_);
    P2P_CHECK(s.h == out_.h && s.w == out_.w, "concat branches give {}x{} and {}x{} maps", out_.h,
              out_.w, s.h, s.w);
    out_.c += s.c;
  }
  outs_.resize(branches_.size());
  douts_.resize(branches_.size());
}

std::string Concat::Name() const {
  std::string names;
  for (const auto& b : branches_) names += (names.empty() ? "" : " | ") + b->Name();
  return "concat(" + names + ")";
}

Shape Concat::OutputShape(Shape input) const {
  P2P_CHECK(input == in_, "concat built for {}, got {}", in_.ToString(), input.ToString());
  return out_;
}

size_t Concat::NumParams() const {
  size_t n = 0;
  for (const auto& b : branches_) n += b->NumParams();
  return n;
}

size_t Concat::NumBuffers() const {
  size_t n = 0;
  for (const auto& b : branches_) n += b->NumBuffers();
  return n;
}

void Concat::Bind(float* params, float* grads) {
  for (const auto& b : branches_) {
    b->Bind(params, grads);
    params += b->NumParams();
    grads += b->NumParams();
  }
}

void Concat::BindBuffers(float* buffers) {
  for (const auto& b : branches_) {
    b->BindBuffers(buffers);
    buffers += b->NumBuffers();
  }
}

void Concat::Init(Rng& rng) {
  for (const auto& b : branches_) b->Init(rng);
}

// A sample's row is (C, H, W) channel-major, so concatenating channels is concatenating each
// sample's branch rows.
void Concat::Forward(const Matrix& input, Matrix& output, bool training) {
  output.resize(input.rows(), out_.size());
  Eigen::Index col = 0;
  for (size_t b = 0; b < branches_.size(); ++b) {
    branches_[b]->Forward(input, outs_[b], training);
    output.middleCols(col, outs_[b].cols()) = outs_[b];
    col += outs_[b].cols();
  }
}

void Concat::Backward(const Matrix& input, const Matrix& doutput, Matrix* dinput) {
  Eigen::Index col = 0;
  for (size_t b = 0; b < branches_.size(); ++b) {
    douts_[b] = doutput.middleCols(col, outs_[b].cols());
    col += outs_[b].cols();
    branches_[b]->Backward(input, douts_[b], dinput == nullptr ? nullptr : &dx_);
    if (dinput == nullptr) continue;
    if (b == 0) {
      *dinput = dx_;
    } else {
      *dinput += dx_;
    }
  }
}

}  // namespace p2p::ml
