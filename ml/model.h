// Model: a Sequential stack of layers over one flat parameter buffer and one gradient buffer.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/status.h"
#include "ml/layer.h"
#include "ml/loss.h"

namespace p2p::ml {

struct ModelOptions {
  std::string name = "mlp";              // Model::Names(): logreg, mlp, ..., resnet18
  std::vector<int> hidden = {256, 128};  // mlp hidden widths
  Shape input{1, 28, 28};
  int num_classes = 10;
  float dropout = 0.0f;  // dropout before the last linear layer (0 = none; the MobileNets: 0.2)
  LossKind loss = LossKind::kCrossEntropy;  // kNll appends LogSoftmax to the model
  uint64_t seed = 1;
};

class Model {
 public:
  // Builds the named model; an unknown name is kInvalidArgument listing the valid names.
  // Refuses (kInvalidArgument, naming the count and the memory) a model of more than
  // kMaxParams parameters before allocating anything, and turns a failed allocation into
  // kUnavailable naming the bytes it needed instead of letting std::bad_alloc escape.
  static Result<std::unique_ptr<Model>> Create(const ModelOptions& options);
  // The parameter count of the model `options` describes, without building its buffers (cheap
  // for any size); kInvalidArgument as Create for bad options or more than kMaxParams.
  static Result<size_t> CountParams(const ModelOptions& options);
  // 2^31 parameters: 8 GiB for the parameters and 8 GiB more for their gradients, far beyond
  // what this CPU trainer can train in useful time, and comfortably inside every size type.
  static constexpr size_t kMaxParams = size_t{1} << 31;
  static std::vector<std::string> Names();

  size_t NumParams() const { return params_.size(); }
  std::span<float> Params() { return params_; }
  std::span<const float> Params() const { return params_; }
  // The gradient of the last ComputeGradient, no copy.
  std::span<const float> Grads() const { return grads_; }
  std::span<float> MutableGrads() { return grads_; }
  // Buffers: non-trained state, in layer order (BatchNorm's running mean then running variance,
  // per BatchNorm layer); empty for models without BatchNorm. Training-mode forward passes
  // update them; evaluation reads them. They are part of the model's state as the parameters
  // are: what a hash of the model, a checkpoint or a cross-peer agreement must cover.
  size_t NumBuffers() const { return buffers_.size(); }
  std::span<float> Buffers() { return buffers_; }
  std::span<const float> Buffers() const { return buffers_; }
  // Makes `external` (NumParams() floats, 64-byte aligned like the model's own buffer, so the
  // summation order and thus the bits stay the same) the gradient buffer: ComputeGradient then
  // writes straight into it, e.g. a function's shared-memory result slot. An empty span goes
  // back to the model's own buffer. The caller keeps `external` alive while it is bound.
  void BindGradients(std::span<float> external);

  // Re-initialises all parameters and buffers deterministically from `seed` with each layer's
  // rule (see the layers and docs/models.md). Same seed, same model options -> same bits.
  void Init(uint64_t seed);

  // x: (N, input.size()). Returns the model's final output (logits, or log-probs for NLL).
  const Matrix& Forward(const Matrix& x, bool training);
  // Zeroes the gradient buffer, runs forward and backward on the batch, leaves the mean-over-batch
  // gradient in Grads() and returns the mean loss.
  float ComputeGradient(const Matrix& x, std::span<const int32_t> labels);
  // Mean loss and number of correct argmax predictions over a batch, without touching gradients.
  struct Eval {
    double loss_sum = 0;
    int64_t correct = 0;
    int64_t count = 0;
  };
  Eval Evaluate(const Matrix& x, std::span<const int32_t> labels);

  const ModelOptions& options() const { return options_; }
  std::string Summary() const;  // one line per layer with output shape and parameter count

  // Used by the registry; prefer Create().
  Model(ModelOptions options, std::vector<std::unique_ptr<Layer>> layers);

 private:
  ModelOptions options_;
  std::vector<std::unique_ptr<Layer>> layers_;
  std::vector<Shape> shapes_;  // shapes_[i] is the input shape of layer i; back() the output
  AlignedFloats params_;
  AlignedFloats buffers_;
  AlignedFloats own_grads_;
  std::span<float> grads_;  // own_grads_, or a buffer given to BindGradients
  // activations_[i] = output of layer i (the input x is not copied);
  // deltas_[i] = d(mean loss)/d(activations_[i]).
  std::vector<Matrix> activations_;
  std::vector<Matrix> deltas_;
  Matrix eval_batch_;  // Evaluate's current slice of a large x
  std::unique_ptr<Loss> loss_;
};

}  // namespace p2p::ml
