// Layer: one differentiable step of a Sequential model.
#pragma once

#include <memory>
#include <random>
#include <string>

#include "ml/tensor.h"

namespace p2p::ml {

using Rng = std::mt19937_64;

// Contract: a layer owns no parameter memory. The model allocates one flat parameter buffer and one
// gradient buffer and hands each layer its slice with Bind() before any Init/Forward/Backward.
// Forward caches what Backward needs, so calls alternate Forward, Backward on the same batch.
// Backward *accumulates* into its gradient slice (the model zeroes it per batch), and overwrites
// `*dinput` with the gradient w.r.t. its input. `dinput` is null when nobody needs that gradient
// (the first layer: the data has none), which saves the largest GEMM of a first Linear/Conv.
// Output matrices are resized by the callee; buffers are reused across calls of the same batch
// size, so steady-state training allocates nothing. Not thread-safe; one model per thread.
class Layer {
 public:
  virtual ~Layer() = default;
  virtual std::string Name() const = 0;
  // Output shape for a given input shape; also validates the input shape (P2P_CHECK).
  virtual Shape OutputShape(Shape input) const = 0;
  virtual size_t NumParams() const { return 0; }
  virtual void Bind(float* /*params*/, float* /*grads*/) {}
  // Buffers: state that is not trained by gradients but is part of the model (BatchNorm's running
  // mean and variance). The model owns them in one flat buffer beside the parameters, so they can
  // be hashed, checkpointed and averaged across peers; Init sets them.
  virtual size_t NumBuffers() const { return 0; }
  virtual void BindBuffers(float* /*buffers*/) {}
  virtual void Init(Rng& /*rng*/) {}
  // input: (N, in.size()), output: (N, out.size()).
  virtual void Forward(const Matrix& input, Matrix& output, bool training) = 0;
  // input: as given to the last Forward; doutput: (N, out.size()); *dinput: (N, in.size()).
  virtual void Backward(const Matrix& input, const Matrix& doutput, Matrix* dinput) = 0;
};

}  // namespace p2p::ml
