// The synthetic dataset: a seeded Gaussian mixture, one isotropic unit-variance blob per class.
//
// Class means are drawn from N(0, s^2 I) with s = 4 / sqrt(2 * dim), so the expected distance
// between two means is ~4 noise standard deviations whatever the dimension. The Bayes-optimal
// (nearest class mean, hence linear) classifier then reaches roughly 75-90% accuracy depending on
// seed and dim: far from chance, and not trivially separable either. Every number comes from
// DetRng, so the same options give the same bits on every run and platform.
#include <cmath>

#include "ml/dataset.h"
#include "ml/dataset_internal.h"

namespace p2p::ml::internal {
namespace {

constexpr size_t kMaxElements = size_t{1} << 28;  // 1 GiB of floats per set

Status ValidateSynthetic(const DataOptions& o) {
  if (o.synthetic_dim < 1 || o.synthetic_dim > (1 << 16)) {
    return InvalidArgument("synthetic: dim must be in [1, 65536], got {}", o.synthetic_dim);
  }
  if (o.synthetic_classes < 2 || o.synthetic_classes > (1 << 16)) {
    return InvalidArgument("synthetic: classes must be in [2, 65536], got {}", o.synthetic_classes);
  }
  for (size_t n : {o.synthetic_train, o.synthetic_test}) {
    if (n < 1 || n > kMaxElements / static_cast<size_t>(o.synthetic_dim)) {
      return InvalidArgument("synthetic: {} samples of dim {} is not a usable size", n,
                             o.synthetic_dim);
    }
  }
  return Status::Ok();
}

// (classes, dim) class means.
Matrix ClassMeans(const DataOptions& o) {
  DetRng rng(o.seed, kSyntheticMeans);
  const double spread = 4.0 / std::sqrt(2.0 * o.synthetic_dim);
  Matrix means(o.synthetic_classes, o.synthetic_dim);
  for (Eigen::Index i = 0; i < means.size(); ++i) {
    means.data()[i] = static_cast<float>(spread * rng.Normal());
  }
  return means;
}

// n samples: a label uniform over the classes, then its mean plus N(0, I) noise.
Dataset Sample(const Matrix& means, size_t n, uint64_t seed, RngStream stream) {
  DetRng rng(seed, stream);
  Dataset out;
  out.shape = Shape{static_cast<int>(means.cols()), 1, 1};
  out.num_classes = static_cast<int>(means.rows());
  out.x.resize(static_cast<Eigen::Index>(n), means.cols());
  out.y.resize(n);
  for (size_t i = 0; i < n; ++i) {
    const auto label = static_cast<int32_t>(rng.Below(static_cast<uint64_t>(means.rows())));
    out.y[i] = label;
    for (Eigen::Index j = 0; j < means.cols(); ++j) {
      out.x(static_cast<Eigen::Index>(i), j) = means(label, j) + static_cast<float>(rng.Normal());
    }
  }
  return out;
}

}  // namespace

Result<Splits> MakeSynthetic(const DataOptions& options, const DataSelection& selection) {
  P2P_RETURN_IF_ERROR(ValidateSynthetic(options));
  const size_t n_train = selection.test_only ? 0 : options.synthetic_train;
  P2P_ASSIGN_OR_RETURN(SplitRows rows,
                       SelectRows(n_train, options.synthetic_test, options.seed, selection));
  // The sets are small and float: generated whole, then the selected rows are kept.
  const Matrix means = ClassMeans(options);
  Splits out;
  if (n_train > 0) {
    const Dataset all = Sample(means, n_train, options.seed, kSyntheticTrain);
    out.train = all.Subset(rows.train);
    out.validation = all.Subset(rows.validation);
  }
  out.test = Sample(means, options.synthetic_test, options.seed, kSyntheticTest);
  if (rows.test.size() != out.test.size()) out.test = out.test.Subset(rows.test);
  out.train.shape = out.validation.shape = out.test.shape;
  out.train.num_classes = out.validation.num_classes = out.test.num_classes;
  return out;
}

}  // namespace p2p::ml::internal
