#include "ml/loss.h"

#include <fmt/format.h>

#include <array>
#include <cmath>

namespace p2p::ml {
namespace {

struct LossEntry {
  const char* name;  // the canonical spelling, as in the study's configs
  LossKind kind;
};
constexpr std::array<LossEntry, 2> kLosses = {{
    {"cross_entropy", LossKind::kCrossEntropy},
    {"NLL", LossKind::kNll},
}};

void CheckBatch(const Matrix& output, std::span<const int32_t> labels) {
  P2P_CHECK(static_cast<Eigen::Index>(labels.size()) == output.rows(), "{} labels for {} rows",
            labels.size(), output.rows());
  for (int32_t y : labels) {
    P2P_CHECK(y >= 0 && y < output.cols(), "label {} outside [0, {})", y, output.cols());
  }
}

// log(sum(exp(row))), stable: the max is factored out so exp never overflows.
float LogSumExp(const Eigen::Ref<const Eigen::RowVectorXf>& row) {
  const float max = row.maxCoeff();
  return max + std::log((row.array() - max).exp().sum());
}

// Softmax cross-entropy on raw logits: loss_n = logsumexp(z_n) - z_n[y_n].
class CrossEntropyLoss final : public Loss {
 public:
  float Compute(const Matrix& output, std::span<const int32_t> labels,
                Matrix& doutput) const override {
    CheckBatch(output, labels);
    doutput.resize(output.rows(), output.cols());
    const float inv_n = 1.0f / static_cast<float>(output.rows());
    double sum = 0;
    for (Eigen::Index n = 0; n < output.rows(); ++n) {
      const float lse = LogSumExp(output.row(n));
      sum += lse - output(n, labels[n]);
      // d/dz of the mean loss: (softmax(z) - onehot(y)) / N.
      doutput.row(n).array() = (output.row(n).array() - lse).exp() * inv_n;
      doutput(n, labels[n]) -= inv_n;
    }
    return static_cast<float>(sum / static_cast<double>(output.rows()));
  }

  double Sum(const Matrix& output, std::span<const int32_t> labels) const override {
    CheckBatch(output, labels);
    double sum = 0;
    for (Eigen::Index n = 0; n < output.rows(); ++n) {
      sum += LogSumExp(output.row(n)) - output(n, labels[n]);
    }
    return sum;
  }
};

// Negative log-likelihood on log-probabilities: loss_n = -z_n[y_n].
class NllLoss final : public Loss {
 public:
  float Compute(const Matrix& output, std::span<const int32_t> labels,
                Matrix& doutput) const override {
    CheckBatch(output, labels);
    doutput.setZero(output.rows(), output.cols());
    const float inv_n = 1.0f / static_cast<float>(output.rows());
    for (Eigen::Index n = 0; n < output.rows(); ++n) doutput(n, labels[n]) = -inv_n;
    return static_cast<float>(Sum(output, labels) / static_cast<double>(output.rows()));
  }

  double Sum(const Matrix& output, std::span<const int32_t> labels) const override {
    CheckBatch(output, labels);
    double sum = 0;
    for (Eigen::Index n = 0; n < output.rows(); ++n) sum -= output(n, labels[n]);
    return sum;
  }
};

}  // namespace

Result<LossKind> ParseLoss(const std::string& name) {
  for (const LossEntry& e : kLosses) {
    if (name == e.name) return e.kind;
  }
  if (name == "nll") return LossKind::kNll;  // lower-case alias
  std::string valid;
  for (const LossEntry& e : kLosses)
    valid += fmt::format("{}{}", valid.empty() ? "" : ", ", e.name);
  return InvalidArgument("unknown loss '{}'; valid: {} (or nll)", name, valid);
}

std::string LossName(LossKind kind) {
  for (const LossEntry& e : kLosses) {
    if (kind == e.kind) return e.name;
  }
  FailCheck("known LossKind", __FILE__, __LINE__, fmt::format("{}", static_cast<int>(kind)));
}

std::unique_ptr<Loss> MakeLoss(LossKind kind) {
  if (kind == LossKind::kNll) return std::make_unique<NllLoss>();
  return std::make_unique<CrossEntropyLoss>();
}

}  // namespace p2p::ml
