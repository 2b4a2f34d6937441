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

#include "ml/threads.h"
#include "serverless_offload/gradient_worker.h"
#include "serverless_offload/param_store.h"
#include "serverless_offload/shared_file.h"
#include "serverless_offload/store_task.h"
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

// What a warm process keeps besides its model: the parameter mapping, the shared slot file and
// the sample matrix (reused, so a task's samples land in memory that is already paged in).
struct Kept {
  std::string params_path;  // mapped once; new versions arrive in the same file
  std::optional<MappedParams> params;
  std::optional<SharedFile> slot;
  ml::Matrix x;
  StoreSession store;  // SPIRT's store path: parameters from and gradients to the peer's database
};

// The parameters a task names: its peer's database (store path) or the pool's mapped snapshot.
// `id` identifies the values for GradientWorker (same id, same parameters).
Result<std::span<const float>> TaskParams(Kept& kept, const Task& task, std::string& id) {
  if (task.store) {
    id = fmt::format("store:{}#{}", task.store->params_key, task.params_version);
    return kept.store.Params(task);
  }
  id = fmt::format("{}#{}", task.params_path, task.params_version);
  // A path names a descriptor of the pool (shared_file.h), and descriptor numbers are reused:
  // the mapping is kept only while the path still leads to the same file.
  if (!kept.params || kept.params_path != task.params_path ||
      kept.params->floats().size() != task.num_params ||
      InodeOf(task.params_path) != kept.params->inode()) {
    kept.params.reset();
    P2P_ASSIGN_OR_RETURN(auto params, MappedParams::Open(task.params_path, task.num_params));
    kept.params = std::move(params);
    kept.params_path = task.params_path;
  }
  return kept.params->floats();
}

// The task's gradient into the worker's model, or into the task's shared slot if it names one.
// `in_reply` says whether the result must carry the gradient values: not when they are in the
// shared slot already, nor on the store path, where they went into the peer's database.
Status Compute(GradientWorker& worker, Kept& kept, Task& task, TaskResult& r, bool& in_reply) {
  std::string key;
  P2P_ASSIGN_OR_RETURN(const std::span<const float> params, TaskParams(kept, task, key));
  in_reply = task.shared.path.empty() && !task.store;
  if (task.shared.path.empty()) {
    P2P_RETURN_IF_ERROR(worker.Compute(task, key, params, r));
    return task.store ? kept.store.Push(task, worker.grads()) : Status::Ok();
  }
  if (!kept.slot || kept.slot->path() != task.shared.path ||
      InodeOf(task.shared.path) != kept.slot->inode()) {
    kept.slot.reset();
    P2P_ASSIGN_OR_RETURN(auto slot, SharedFile::Open(task.shared.path));
    kept.slot = std::move(slot);
  }
  const uint64_t rows = task.shared.rows, cols = task.shared.cols;
  P2P_ASSIGN_OR_RETURN(auto x, kept.slot->Floats(task.shared.x_offset, rows * cols));
  P2P_ASSIGN_OR_RETURN(auto grad, kept.slot->Floats(task.shared.grad_offset, task.num_params));
  kept.x.resize(static_cast<Eigen::Index>(rows), static_cast<Eigen::Index>(cols));
  std::copy(x.begin(), x.end(), kept.x.data());
  task.x.swap(kept.x);  // lend the kept matrix to the task, then take it back
  Status s = worker.Compute(task, key, params, r, grad);
  task.x.swap(kept.x);
  P2P_RETURN_IF_ERROR(s);
  return task.store ? kept.store.Push(task, grad) : Status::Ok();
}

}  // namespace

Status ServeTasks(int in_fd, int out_fd) {
  // Die with the pool that started us (it was spawned without a chance to set this before exec).
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  ml::SetThreads(1);  // one function = one vCPU's worth of work; the pool runs K in parallel
  GradientWorker worker;
  Kept kept;
  std::string buffer;
  std::vector<char> chunk(1 << 20);
  while (true) {
    P2P_ASSIGN_OR_RETURN(auto task, TakeTask(buffer));
    if (task) {
      TaskResult r;
      r.id = task->id;
      bool in_reply = true;
      if (Status s = Compute(worker, kept, *task, r, in_reply); !s.ok()) {
        r = TaskResult();
        r.id = task->id;
        r.error = s.message();
        const std::string bytes = EncodeResult(r);
        P2P_RETURN_IF_ERROR(WriteAll(out_fd, bytes.data(), bytes.size()));
        continue;
      }
      // The gradient is in the shared slot or the database already, or goes out straight from
      // the model's buffer.
      const auto g = in_reply ? worker.grads() : std::span<const float>();
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
