// Tensor conventions for ml/.
//
// A batch is a row-major matrix of shape (N, features): one sample per row. Image samples are
// stored channel-major inside the row (C, H, W), the IDX/CIFAR layout. Parameters and gradients
// of a whole model are each one contiguous float buffer; layers see them through Eigen::Map.
#pragma once

#include <Eigen/Core>
#include <Eigen/StdVector>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace p2p::ml {

using Matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using Vector = Eigen::VectorXf;
using MatrixMap = Eigen::Map<Matrix>;
using ConstMatrixMap = Eigen::Map<const Matrix>;
using VectorMap = Eigen::Map<Vector>;
using ConstVectorMap = Eigen::Map<const Vector>;
// A model's parameter or gradient buffer. Aligned to Eigen's maximum alignment so every layer
// view starts at the same alignment in every process: Eigen's vectorised reductions peel an
// unaligned head, so an unaligned buffer would change summation order (and the last bits of
// gradients) with the heap layout.
using AlignedFloats = std::vector<float, Eigen::aligned_allocator<float>>;

// Shape of one sample, (channels, height, width); a flat vector is (features, 1, 1).
struct Shape {
  int c = 1, h = 1, w = 1;
  int size() const { return c * h * w; }
  bool operator==(const Shape&) const = default;
  std::string ToString() const;
};

}  // namespace p2p::ml
