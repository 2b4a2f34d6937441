#include "ml/model.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <limits>
#include <new>
#include <optional>

#include "common/format_bytes.h"
#include "ml/model_registry.h"

namespace p2p::ml {
namespace {

// Rows evaluated per forward pass in Evaluate, bounding activation memory for whole test sets.
constexpr Eigen::Index kEvalBatch = 256;

Status ValidateOptions(const ModelOptions& o) {
  if (o.input.c <= 0 || o.input.h <= 0 || o.input.w <= 0) {
    return InvalidArgument("input shape {} must be positive", o.input.ToString());
  }
  if (o.num_classes < 2) return InvalidArgument("num_classes {} < 2", o.num_classes);
  if (!(o.dropout >= 0.0f && o.dropout < 1.0f)) {
    return InvalidArgument("dropout {} not in [0, 1)", o.dropout);
  }
  return Status::Ok();
}

// "mlp (hidden 1000000,1000000)": what to name in a size error.
std::string Describe(const ModelOptions& o) {
  if (o.name != "mlp") return o.name;
  return fmt::format("mlp (hidden {})", fmt::join(o.hidden, ","));
}

// Sum of the layers' parameters; nothing if it does not fit in size_t.
std::optional<size_t> SumParams(const Layers& layers) {
  size_t total = 0;
  for (const auto& layer : layers) {
    if (layer->NumParams() > std::numeric_limits<size_t>::max() - total) return std::nullopt;
    total += layer->NumParams();
  }
  return total;
}

Status CheckParamCount(const ModelOptions& o, std::optional<size_t> count) {
  if (count && *count <= Model::kMaxParams) return Status::Ok();
  // float parameters + float gradients, the least any training needs.
  const std::string need =
      count ? fmt::format("{} parameters, {} for the parameters and their gradients alone", *count,
                          FormatBytes(8.0 * double(*count)))
            : std::string("more parameters than fit in a 64-bit count");
  return InvalidArgument("model {} has {}; the limit is {} parameters: choose smaller layers{}",
                         Describe(o), need, Model::kMaxParams,
                         o.name == "mlp" ? " (--hidden)" : "");
}

Result<Layers> BuildLayers(const ModelEntry& entry, const ModelOptions& options) {
  P2P_RETURN_IF_ERROR(ValidateOptions(options));
  Result<Layers> layers = entry.build(options);
  if (!layers.ok()) return layers.status().Annotate(fmt::format("model {}", options.name));
  P2P_RETURN_IF_ERROR(CheckParamCount(options, SumParams(*layers)));
  return layers;
}

std::string NameList() {
  std::string names;
  for (const ModelEntry& e : ModelRegistry())
    names += fmt::format("{}{}", names.empty() ? "" : ", ", e.name);
  return names;
}

Result<const ModelEntry*> FindEntry(const std::string& name) {
  const auto registry = ModelRegistry();
  const auto it = std::find_if(registry.begin(), registry.end(),
                               [&](const ModelEntry& e) { return name == e.name; });
  if (it == registry.end()) {
    return InvalidArgument("unknown model '{}'; valid: {}", name, NameList());
  }
  return &*it;
}

}  // namespace

Result<std::unique_ptr<Model>> Model::Create(const ModelOptions& options) {
  P2P_ASSIGN_OR_RETURN(const ModelEntry* entry, FindEntry(options.name));
  P2P_ASSIGN_OR_RETURN(Layers layers, BuildLayers(*entry, options));
  const size_t count = *SumParams(layers);
  try {
    return std::make_unique<Model>(options, std::move(layers));
  } catch (const std::bad_alloc&) {
    // Even under the limit a model can be larger than this process may allocate (an
    // address-space limit such as a function's --fn-memory, or a busy machine).
    return Unavailable(
        "model {} with {} parameters: allocating {} for its parameters and gradients failed (out "
        "of memory); use a smaller model or run where more memory is available",
        Describe(options), count, FormatBytes(8.0 * double(count)));
  }
}

Result<size_t> Model::CountParams(const ModelOptions& options) {
  P2P_ASSIGN_OR_RETURN(const ModelEntry* entry, FindEntry(options.name));
  P2P_ASSIGN_OR_RETURN(Layers layers, BuildLayers(*entry, options));
  return *SumParams(layers);
}

std::vector<std::string> Model::Names() {
  std::vector<std::string> names;
  for (const ModelEntry& e : ModelRegistry()) names.emplace_back(e.name);
  return names;
}

Model::Model(ModelOptions options, std::vector<std::unique_ptr<Layer>> layers)
    : options_(std::move(options)), layers_(std::move(layers)), loss_(MakeLoss(options_.loss)) {
  P2P_CHECK(!layers_.empty(), "a model needs at least one layer");
  shapes_.push_back(options_.input);
  size_t total = 0, total_buffers = 0;
  for (const auto& layer : layers_) {
    shapes_.push_back(layer->OutputShape(shapes_.back()));
    total += layer->NumParams();
    total_buffers += layer->NumBuffers();
  }
  P2P_CHECK(shapes_.back().size() == options_.num_classes, "model outputs {}, want {} classes",
            shapes_.back().ToString(), options_.num_classes);
  params_.assign(total, 0.0f);
  own_grads_.assign(total, 0.0f);
  buffers_.assign(total_buffers, 0.0f);
  float* buffers = buffers_.data();
  for (const auto& layer : layers_) {
    layer->BindBuffers(buffers);
    buffers += layer->NumBuffers();
  }
  BindGradients({});
  activations_.resize(layers_.size());
  deltas_.resize(layers_.size());
  Init(options_.seed);
}

void Model::BindGradients(std::span<float> external) {
  P2P_CHECK(external.empty() || external.size() == params_.size(),
            "gradient buffer of {} floats for {} parameters", external.size(), params_.size());
  grads_ = external.empty() ? std::span<float>(own_grads_) : external;
  size_t offset = 0;
  for (const auto& layer : layers_) {
    layer->Bind(params_.data() + offset, grads_.data() + offset);
    offset += layer->NumParams();
  }
}

void Model::Init(uint64_t seed) {
  Rng rng(seed);
  for (const auto& layer : layers_) layer->Init(rng);
  std::fill(grads_.begin(), grads_.end(), 0.0f);
}

const Matrix& Model::Forward(const Matrix& x, bool training) {
  P2P_CHECK(x.cols() == options_.input.size(), "input has {} columns, model wants {}", x.cols(),
            options_.input.size());
  const Matrix* input = &x;
  for (size_t i = 0; i < layers_.size(); ++i) {
    layers_[i]->Forward(*input, activations_[i], training);
    input = &activations_[i];
  }
  return *input;
}

float Model::ComputeGradient(const Matrix& x, std::span<const int32_t> labels) {
  std::fill(grads_.begin(), grads_.end(), 0.0f);
  const Matrix& output = Forward(x, /*training=*/true);
  const float loss = loss_->Compute(output, labels, deltas_.back());
  for (size_t i = layers_.size(); i-- > 0;) {
    const Matrix& input = i == 0 ? x : activations_[i - 1];
    layers_[i]->Backward(input, deltas_[i], i == 0 ? nullptr : &deltas_[i - 1]);
  }
  return loss;
}

Model::Eval Model::Evaluate(const Matrix& x, std::span<const int32_t> labels) {
  P2P_CHECK(static_cast<Eigen::Index>(labels.size()) == x.rows(), "{} labels for {} rows",
            labels.size(), x.rows());
  Eval eval;
  for (Eigen::Index start = 0; start < x.rows(); start += kEvalBatch) {
    const Eigen::Index rows = std::min(kEvalBatch, x.rows() - start);
    const bool whole = rows == x.rows();
    if (!whole) eval_batch_ = x.middleRows(start, rows);
    const Matrix& output = Forward(whole ? x : eval_batch_, /*training=*/false);
    const auto batch_labels = labels.subspan(start, rows);
    eval.loss_sum += loss_->Sum(output, batch_labels);
    for (Eigen::Index n = 0; n < rows; ++n) {
      Eigen::Index predicted;
      output.row(n).maxCoeff(&predicted);
      eval.correct += predicted == batch_labels[n];
    }
    eval.count += rows;
  }
  return eval;
}

std::string Model::Summary() const {
  std::string out = fmt::format("{} input {}\n", options_.name, options_.input.ToString());
  for (size_t i = 0; i < layers_.size(); ++i) {
    out += fmt::format("  {:<28} -> {:<10} {:>9} params\n", layers_[i]->Name(),
                       shapes_[i + 1].ToString(), layers_[i]->NumParams());
  }
  out += fmt::format("  total {} params, {} buffers", params_.size(), buffers_.size());
  return out;
}

}  // namespace p2p::ml
