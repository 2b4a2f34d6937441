// What a function keeps between tasks (a warm Lambda container keeps its globals): the model,
// and which parameter version is loaded into it. Used by the pipe-served function process and by
// the remote `function --serve` worker alike.
#pragma once

#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "common/status.h"
#include "ml/model.h"
#include "serverless_offload/task.h"

namespace p2p::offload {

class GradientWorker {
 public:
  // Computes the task's gradient at `params` into grads(), filling `result` (loss, samples,
  // compute time). `params_key` identifies the values: the same key means the same parameters,
  // which are then not copied into the model again. InvalidArgument if the task's model cannot
  // be built or does not have `params.size()` parameters. A non-empty `grad_out` (64-byte
  // aligned) receives the gradient directly and is what grads() shows until the next Compute.
  Status Compute(const Task& task, std::string_view params_key, std::span<const float> params,
                 TaskResult& result, std::span<float> grad_out = {});
  // The gradient of the last successful Compute (mean over its samples).
  std::span<const float> grads() const { return model_->Grads(); }
  // Whether the last Compute had to build its model (a cold start for the remote worker).
  bool built_model() const { return built_model_; }

 private:
  std::string model_key_;
  std::unique_ptr<ml::Model> model_;
  std::string loaded_key_;
  bool built_model_ = false;
};

}  // namespace p2p::offload
