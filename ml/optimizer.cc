// The torch.optim update rules over one flat parameter buffer.
//
// Each optimizer is a FlatOptimizer: the base owns the step count, the lazily sized state
// buffers and save/load; a subclass only writes Update(), which calls the arithmetic in
// ml/optimizer_kernels.h (shared with the Redis module's P2P.UPDATE). Names map to factories in
// one table, kRegistry.
#include "ml/optimizer.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <optional>
#include <string_view>

#include "ml/optimizer_kernels.h"

namespace p2p::ml {
namespace {

// Shared bookkeeping: step count, state buffers sized lazily on the first Step, save and load.
class FlatOptimizer : public Optimizer {
 public:
  void Step(std::span<float> params, std::span<const float> grads) final;
  State SaveState() const final;
  Status LoadState(const State& state) final;

 protected:
  FlatOptimizer(float lr, size_t num_buffers) : num_buffers_(num_buffers) { lr_ = lr; }

  // One update. step() is already incremented (1 on the first update) and every buffer holds
  // params.size() floats, zero before the first update.
  virtual void Update(std::span<float> params, std::span<const float> grads) = 0;

  int64_t step() const { return step_; }
  // State buffer i (params.size() floats once a step has sized it).
  float* Buffer(size_t i) { return buffers_[i].data(); }

 private:
  Status ValidateState(const State& state) const;

  size_t num_buffers_;
  int64_t step_ = 0;
  std::optional<size_t> size_;  // parameter count, fixed by the first Step or a LoadState
  std::vector<std::vector<float>> buffers_;
};

void FlatOptimizer::Step(std::span<float> params, std::span<const float> grads) {
  P2P_CHECK(params.size() == grads.size(), "{} params but {} grads", params.size(), grads.size());
  if (!size_) {
    size_ = params.size();
    buffers_.assign(num_buffers_, std::vector<float>(params.size(), 0.0f));
  }
  P2P_CHECK(params.size() == *size_, "optimizer state is for {} params, got {}", *size_,
            params.size());
  ++step_;
  Update(params, grads);
}

Optimizer::State FlatOptimizer::SaveState() const { return {step_, lr_, buffers_}; }

Status FlatOptimizer::ValidateState(const State& state) const {
  if (state.step < 0) return InvalidArgument("optimizer state: step {} < 0", state.step);
  if (!(state.lr > 0.0f) || !std::isfinite(state.lr)) {
    return InvalidArgument("optimizer state: lr {} is not a positive number", state.lr);
  }
  if (state.buffers.empty()) {
    // Saved before any step, or by an optimizer without buffers: nothing to size.
    if (num_buffers_ == 0 || state.step == 0) return Status::Ok();
    return InvalidArgument("optimizer state: step {} but no buffers, this optimizer keeps {}",
                           state.step, num_buffers_);
  }
  if (state.buffers.size() != num_buffers_) {
    return InvalidArgument("optimizer state: {} buffers, this optimizer keeps {}",
                           state.buffers.size(), num_buffers_);
  }
  const size_t n = state.buffers[0].size();
  for (size_t i = 1; i < state.buffers.size(); ++i) {
    if (state.buffers[i].size() != n) {
      return InvalidArgument("optimizer state: buffer {} has {} floats, buffer 0 has {}", i,
                             state.buffers[i].size(), n);
    }
  }
  if (size_ && *size_ != n) {
    return InvalidArgument("optimizer state: buffers of {} floats, earlier steps used {} params", n,
                           *size_);
  }
  if (state.step == 0) {
    return InvalidArgument("optimizer state: step 0 with {} non-empty buffers", num_buffers_);
  }
  return Status::Ok();
}

Status FlatOptimizer::LoadState(const State& state) {
  P2P_RETURN_IF_ERROR(ValidateState(state));
  step_ = state.step;
  lr_ = state.lr;
  buffers_ = state.buffers;
  // No buffers means nothing fixes the size; the next Step sizes the state again.
  size_ = buffers_.empty() ? std::nullopt : std::optional<size_t>(buffers_[0].size());
  return Status::Ok();
}

// torch.optim.SGD with dampening 0. Buffers: [momentum_buffer] if momentum > 0.
class Sgd final : public FlatOptimizer {
 public:
  explicit Sgd(const OptimizerOptions& o)
      : FlatOptimizer(o.lr, o.momentum > 0.0f ? 1 : 0),
        momentum_(o.momentum),
        weight_decay_(o.weight_decay),
        nesterov_(o.nesterov) {}

 private:
  void Update(std::span<float> params, std::span<const float> grads) override {
    const kernels::SgdHyper h{lr_, momentum_, weight_decay_, nesterov_};
    float* buf = momentum_ > 0.0f ? Buffer(0) : nullptr;
    kernels::SgdUpdate(h, step(), params.data(), grads.data(), buf, params.size());
  }

  float momentum_, weight_decay_;
  bool nesterov_;
};

// torch.optim.Adam (L2 weight decay folded into the gradient) and, with `decoupled`,
// torch.optim.AdamW (p *= 1 - lr*wd before the Adam step). Buffers: [exp_avg, exp_avg_sq].
class Adam final : public FlatOptimizer {
 public:
  Adam(const OptimizerOptions& o, bool decoupled)
      : FlatOptimizer(o.lr, 2),
        beta1_(o.beta1),
        beta2_(o.beta2),
        eps_(o.eps),
        weight_decay_(o.weight_decay),
        decoupled_(decoupled) {}

 private:
  void Update(std::span<float> params, std::span<const float> grads) override {
    const kernels::AdamHyper h{lr_, beta1_, beta2_, eps_, weight_decay_, decoupled_};
    kernels::AdamUpdate(h, step(), params.data(), grads.data(), Buffer(0), Buffer(1),
                        params.size());
  }

  float beta1_, beta2_, eps_, weight_decay_;
  bool decoupled_;
};

// torch.optim.RMSprop, centered=False. Buffers: [square_avg] + [momentum_buffer] if momentum > 0
// (torch starts that buffer at zero, unlike SGD's).
class RmsProp final : public FlatOptimizer {
 public:
  explicit RmsProp(const OptimizerOptions& o)
      : FlatOptimizer(o.lr, o.momentum > 0.0f ? 2 : 1),
        alpha_(o.alpha),
        eps_(o.eps),
        momentum_(o.momentum),
        weight_decay_(o.weight_decay) {}

 private:
  void Update(std::span<float> params, std::span<const float> grads) override {
    const kernels::RmsPropHyper h{lr_, alpha_, eps_, momentum_, weight_decay_};
    float* buf = momentum_ > 0.0f ? Buffer(1) : nullptr;
    kernels::RmsPropUpdate(h, params.data(), grads.data(), Buffer(0), buf, params.size());
  }

  float alpha_, eps_, momentum_, weight_decay_;
};

// torch.optim.Adagrad with its defaults lr_decay 0, initial_accumulator_value 0, eps 1e-10.
// Buffers: [sum].
class Adagrad final : public FlatOptimizer {
 public:
  explicit Adagrad(const OptimizerOptions& o)
      : FlatOptimizer(o.lr, 1), weight_decay_(o.weight_decay) {}

 private:
  void Update(std::span<float> params, std::span<const float> grads) override {
    kernels::AdagradUpdate(lr_, weight_decay_, params.data(), grads.data(), Buffer(0),
                           params.size());
  }

  float weight_decay_;
};

// --- Options validation and the registry ---

bool IsNonNegative(float x) { return x >= 0.0f && std::isfinite(x); }

Status CheckCommon(const OptimizerOptions& o) {
  if (!(o.lr > 0.0f) || !std::isfinite(o.lr)) {
    return InvalidArgument("{}: lr must be > 0, got {}", o.name, o.lr);
  }
  if (!IsNonNegative(o.weight_decay)) {
    return InvalidArgument("{}: weight_decay must be >= 0, got {}", o.name, o.weight_decay);
  }
  if (!IsNonNegative(o.momentum)) {
    return InvalidArgument("{}: momentum must be >= 0, got {}", o.name, o.momentum);
  }
  return Status::Ok();
}

// Rejects momentum/nesterov where the algorithm has no such setting, rather than ignoring it.
Status CheckNoMomentum(const OptimizerOptions& o) {
  if (o.momentum != 0.0f) return InvalidArgument("{} does not take momentum", o.name);
  if (o.nesterov) return InvalidArgument("{} does not take nesterov", o.name);
  return Status::Ok();
}

Status CheckEps(const OptimizerOptions& o) {
  if (!IsNonNegative(o.eps)) return InvalidArgument("{}: eps must be >= 0, got {}", o.name, o.eps);
  return Status::Ok();
}

Status CheckSgd(const OptimizerOptions& o) {
  if (o.nesterov && o.momentum == 0.0f) {
    return InvalidArgument("sgd: nesterov requires momentum > 0");
  }
  return Status::Ok();
}

Status CheckAdam(const OptimizerOptions& o) {
  P2P_RETURN_IF_ERROR(CheckNoMomentum(o));
  P2P_RETURN_IF_ERROR(CheckEps(o));
  for (auto [name, beta] : {std::pair{"beta1", o.beta1}, std::pair{"beta2", o.beta2}}) {
    if (!(beta >= 0.0f && beta < 1.0f)) {
      return InvalidArgument("{}: {} must be in [0, 1), got {}", o.name, name, beta);
    }
  }
  return Status::Ok();
}

Status CheckRmsProp(const OptimizerOptions& o) {
  if (o.nesterov) return InvalidArgument("rmsprop does not take nesterov");
  P2P_RETURN_IF_ERROR(CheckEps(o));
  if (!IsNonNegative(o.alpha)) {
    return InvalidArgument("rmsprop: alpha must be >= 0, got {}", o.alpha);
  }
  return Status::Ok();
}

struct Entry {
  std::string_view name;
  Status (*check)(const OptimizerOptions&);  // algorithm-specific checks, after CheckCommon
  std::unique_ptr<Optimizer> (*make)(const OptimizerOptions&);
};

constexpr Entry kRegistry[] = {
    {"sgd", CheckSgd,
     [](const OptimizerOptions& o) -> std::unique_ptr<Optimizer> {
       return std::make_unique<Sgd>(o);
     }},
    {"adam", CheckAdam,
     [](const OptimizerOptions& o) -> std::unique_ptr<Optimizer> {
       return std::make_unique<Adam>(o, /*decoupled=*/false);
     }},
    {"adamw", CheckAdam,
     [](const OptimizerOptions& o) -> std::unique_ptr<Optimizer> {
       return std::make_unique<Adam>(o, /*decoupled=*/true);
     }},
    {"rmsprop", CheckRmsProp,
     [](const OptimizerOptions& o) -> std::unique_ptr<Optimizer> {
       return std::make_unique<RmsProp>(o);
     }},
    {"adagrad", CheckNoMomentum,
     [](const OptimizerOptions& o) -> std::unique_ptr<Optimizer> {
       return std::make_unique<Adagrad>(o);
     }},
};

}  // namespace

std::vector<std::string> Optimizer::Names() {
  std::vector<std::string> names;
  for (const Entry& e : kRegistry) names.emplace_back(e.name);
  return names;
}

Result<std::unique_ptr<Optimizer>> Optimizer::Create(const OptimizerOptions& options) {
  const auto* entry = std::find_if(std::begin(kRegistry), std::end(kRegistry),
                                   [&](const Entry& e) { return e.name == options.name; });
  if (entry == std::end(kRegistry)) {
    return InvalidArgument("unknown optimizer '{}'; valid: {}", options.name,
                           fmt::join(Names(), ", "));
  }
  P2P_RETURN_IF_ERROR(CheckCommon(options));
  P2P_RETURN_IF_ERROR(entry->check(options));
  return entry->make(options);
}

}  // namespace p2p::ml
