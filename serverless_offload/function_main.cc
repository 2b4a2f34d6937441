#include "serverless_offload/function_main.h"

#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>
#include <memory>
#include <vector>

#include "ml/model.h"
#include "ml/threads.h"
#include "serverless_offload/param_store.h"
#include "serverless_offload/task.h"

namespace p2p::offload {
namespace {

Status WriteAll(int fd, const char* data, size_t size) {
  size_t done = 0;
  while (done < size) {
    const ssize_t n = ::write(fd, data + done, size - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return IoError("function: writing the result: {}", std::strerror(errno));
    done += static_cast<size_t>(n);
  }
  return Status::Ok();
}

// What a warm process keeps between invocations: the model and the current parameter mapping.
struct Warm {
  std::string model_key;
  std::unique_ptr<ml::Model> model;
  uint64_t params_version = 0;
  std::string params_path;
  std::optional<MappedParams> params;
  uint64_t loaded_version = 0;  // what is in the model's parameter buffer
  std::string loaded_path;
};

Status Compute(Warm& warm, const Task& task, TaskResult& r) {
  const std::string key =
      fmt::format("{}/{}/{}/{}x{}x{}/{}/{}", task.model.name, fmt::join(task.model.hidden, "x"),
                  task.model.dropout, task.model.input.c, task.model.input.h, task.model.input.w,
                  task.model.num_classes, ml::LossName(task.model.loss));
  if (key != warm.model_key) {
    P2P_ASSIGN_OR_RETURN(warm.model, ml::Model::Create(task.model));
    warm.model_key = key;
    warm.loaded_path.clear();
  }
  if (warm.model->NumParams() != task.num_params) {
    return InvalidArgument("task has {} parameters but model {} has {}", task.num_params,
                           task.model.name, warm.model->NumParams());
  }
  if (!warm.params || warm.params_version != task.params_version ||
      warm.params_path != task.params_path) {
    warm.params.reset();
    P2P_ASSIGN_OR_RETURN(auto mapped, MappedParams::Open(task.params_path, task.num_params));
    warm.params = std::move(mapped);
    warm.params_version = task.params_version;
    warm.params_path = task.params_path;
  }
  // ComputeGradient leaves the parameters alone: a warm process copies them once per version.
  if (warm.loaded_version != task.params_version || warm.loaded_path != task.params_path) {
    const auto p = warm.params->floats();
    std::copy(p.begin(), p.end(), warm.model->Params().begin());
    warm.loaded_version = task.params_version;
    warm.loaded_path = task.params_path;
  }
  const auto start = std::chrono::steady_clock::now();
  const float loss = warm.model->ComputeGradient(task.x, task.y);
  r.compute_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  r.loss_sum = double(loss) * double(task.y.size());
  r.samples = task.y.size();
  return Status::Ok();
}

}  // namespace

Status ServeTasks(int in_fd, int out_fd) {
  // Die with the pool that started us (it was spawned without a chance to set this before exec).
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  ml::SetThreads(1);  // one function = one vCPU's worth of work; the pool runs K in parallel
  Warm warm;
  std::string buffer;
  std::vector<char> chunk(1 << 20);
  while (true) {
    P2P_ASSIGN_OR_RETURN(auto task, TakeTask(buffer));
    if (task) {
      TaskResult r;
      r.id = task->id;
      if (Status s = Compute(warm, *task, r); !s.ok()) {
        r = TaskResult{.id = task->id, .error = s.message()};
        const std::string bytes = EncodeResult(r);
        P2P_RETURN_IF_ERROR(WriteAll(out_fd, bytes.data(), bytes.size()));
        continue;
      }
      // The gradient goes out straight from the model's buffer.
      const auto g = warm.model->Grads();
      const std::string head = EncodeResultHead(r, g.size());
      P2P_RETURN_IF_ERROR(WriteAll(out_fd, head.data(), head.size()));
      P2P_RETURN_IF_ERROR(
          WriteAll(out_fd, reinterpret_cast<const char*>(g.data()), g.size_bytes()));
      continue;
    }
    const ssize_t n = ::read(in_fd, chunk.data(), chunk.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return IoError("function: reading tasks: {}", std::strerror(errno));
    if (n == 0) {
      if (!buffer.empty()) return DataLoss("function: input ended inside a task");
      return Status::Ok();
    }
    buffer.append(chunk.data(), static_cast<size_t>(n));
  }
}

}  // namespace p2p::offload
