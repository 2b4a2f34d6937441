#include "ml/models/net.h"

#include <algorithm>

#include "ml/layers/activation.h"
#include "ml/layers/adaptive_avg_pool.h"
#include "ml/layers/avg_pool.h"
#include "ml/layers/batchnorm.h"
#include "ml/layers/depthwise_conv2d.h"
#include "ml/layers/dropout.h"
#include "ml/layers/hard_activation.h"
#include "ml/layers/linear.h"
#include "ml/layers/pool.h"
#include "ml/layers/squeeze_excite.h"
#include "ml/model.h"

namespace p2p::ml {

int MakeDivisible(double v, int divisor) {
  int rounded = std::max(divisor, int(v + divisor / 2.0) / divisor * divisor);
  if (rounded < 0.9 * v) rounded += divisor;
  return rounded;
}

Net& Net::Conv(int out, int kernel, int stride, int padding, ConvOptions options) {
  if (!Fits(kernel, stride, padding)) return *this;
  if (options.groups > 1 && options.groups == shape_.c && out == shape_.c) {
    return Add(std::make_unique<DepthwiseConv2d>(shape_, kernel, stride, padding, options));
  }
  return Add(std::make_unique<Conv2d>(shape_, out, kernel, stride, padding, options));
}

Net& Net::BatchNorm(float eps, float momentum) {
  return Add(std::make_unique<BatchNorm2d>(shape_, eps, momentum));
}
Net& Net::Relu() { return Add(std::make_unique<ReLU>()); }
Net& Net::Relu6() { return Add(std::make_unique<ml::ReLU6>()); }
Net& Net::Hardswish() { return Add(std::make_unique<ml::Hardswish>()); }
Net& Net::SqueezeExcite(int squeeze_channels) {
  return Add(std::make_unique<ml::SqueezeExcite>(shape_, squeeze_channels));
}
Net& Net::MaxPool(int kernel, int stride, bool ceil_mode) {
  if (Fits(kernel, stride, 0)) Add(std::make_unique<MaxPool2d>(shape_, kernel, stride, ceil_mode));
  return *this;
}
Net& Net::AvgPool(int kernel, int stride) {
  if (Fits(kernel, stride, 0)) Add(std::make_unique<AvgPool2d>(shape_, kernel, stride));
  return *this;
}
Net& Net::GlobalAvgPool() { return Add(std::make_unique<ml::GlobalAvgPool>(shape_)); }
Net& Net::AdaptiveAvgPool(int out_h, int out_w) {
  return Add(std::make_unique<AdaptiveAvgPool2d>(shape_, out_h, out_w));
}
Net& Net::Dropout(float p) { return p > 0.0f ? Add(std::make_unique<ml::Dropout>(p)) : *this; }
Net& Net::Linear(int out, bool torch_default_init) {
  return Add(std::make_unique<ml::Linear>(shape_.size(), out, torch_default_init));
}

Net& Net::Residual(const Branch& body, const Branch& shortcut) {
  auto body_seq = Build(body);
  auto short_seq = shortcut ? Build(shortcut) : nullptr;
  if (!status_.ok()) return *this;
  const Shape out = body_seq->OutputShape(shape_);
  const Shape skip = short_seq ? short_seq->OutputShape(shape_) : shape_;
  if (out != skip) {
    status_ = InvalidArgument("residual block at layer {}: body gives {}, shortcut {}",
                              layers_.size(), out.ToString(), skip.ToString());
    return *this;
  }
  return Add(std::make_unique<ml::Residual>(std::move(body_seq), std::move(short_seq)));
}

Net& Net::Concat(const std::vector<Branch>& branches) {
  std::vector<std::unique_ptr<Sequential>> built;
  for (const Branch& b : branches) built.push_back(Build(b));
  if (!status_.ok()) return *this;
  return Add(std::make_unique<ml::Concat>(shape_, std::move(built)));
}

Net& Net::Head(const ModelOptions& o, bool torch_default_init) {
  if (shape_.h * shape_.w != 1 && status_.ok()) {
    status_ = InvalidArgument("classifier expects a pooled 1x1 map, got {}", shape_.ToString());
  }
  Dropout(o.dropout).Linear(o.num_classes, torch_default_init);
  return OutputFor(o);
}

Net& Net::OutputFor(const ModelOptions& o) {
  if (o.loss == LossKind::kNll) Add(std::make_unique<LogSoftmax>());
  return *this;
}

Result<Layers> Net::Finish() {
  if (!status_.ok()) return status_;
  return std::move(layers_);
}

Net& Net::Add(std::unique_ptr<Layer> layer) {
  if (!status_.ok()) return *this;
  shape_ = layer->OutputShape(shape_);
  layers_.push_back(std::move(layer));
  return *this;
}

bool Net::Fits(int kernel, int stride, int padding) {
  if (!status_.ok()) return false;
  if (ConvOutExtent(shape_.h, kernel, stride, padding) > 0 &&
      ConvOutExtent(shape_.w, kernel, stride, padding) > 0) {
    return true;
  }
  status_ = InvalidArgument(
      "input {} is too small for a {}x{} window at layer {}: the model needs a larger input",
      shape_.ToString(), kernel, kernel, layers_.size());
  return false;
}

std::unique_ptr<Sequential> Net::Build(const Branch& branch) {
  if (!status_.ok()) return nullptr;
  Net sub(shape_);
  branch(sub);
  Result<Layers> layers = sub.Finish();
  if (!layers.ok()) {
    status_ = layers.status();
    return nullptr;
  }
  return std::make_unique<Sequential>(shape_, std::move(*layers));
}

}  // namespace p2p::ml
