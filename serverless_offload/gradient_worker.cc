#include "serverless_offload/gradient_worker.h"

#include <chrono>

namespace p2p::offload {

Status GradientWorker::Compute(const Task& task, std::string_view params_key,
                               std::span<const float> params, TaskResult& r,
                               std::span<float> grad_out) {
  const std::string key =
      fmt::format("{}/{}/{}/{}x{}x{}/{}/{}", task.model.name, fmt::join(task.model.hidden, "x"),
                  task.model.dropout, task.model.input.c, task.model.input.h, task.model.input.w,
                  task.model.num_classes, ml::LossName(task.model.loss));
  built_model_ = key != model_key_ || !model_;
  if (built_model_) {
    model_key_.clear();
    P2P_ASSIGN_OR_RETURN(model_, ml::Model::Create(task.model));
    model_key_ = key;
    loaded_key_.clear();
  }
  if (model_->NumParams() != params.size() || params.size() != task.num_params) {
    return InvalidArgument("task has {} parameters ({} given) but model {} has {}", task.num_params,
                           params.size(), task.model.name, model_->NumParams());
  }
  // ComputeGradient leaves the parameters alone: they are copied in once per version.
  if (loaded_key_ != params_key) {
    std::copy(params.begin(), params.end(), model_->Params().begin());
    loaded_key_ = params_key;
  }
  if (!grad_out.empty() && (grad_out.size() != params.size() ||
                            reinterpret_cast<uintptr_t>(grad_out.data()) % 64 != 0)) {
    return InvalidArgument("gradient slot of {} floats is misaligned or the wrong size",
                           grad_out.size());
  }
  model_->BindGradients(grad_out);  // empty: the model's own buffer
  const auto start = std::chrono::steady_clock::now();
  const float loss = model_->ComputeGradient(task.x, task.y);
  r.compute_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  r.loss_sum = double(loss) * double(task.y.size());
  r.samples = task.y.size();
  return Status::Ok();
}

}  // namespace p2p::offload
