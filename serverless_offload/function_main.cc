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

// The parameter mapping a warm process keeps; the model is in the GradientWorker.
struct MappedVersion {
  std::string key;  // path#version
  std::optional<MappedParams> params;
};

Status Compute(GradientWorker& worker, MappedVersion& mapped, const Task& task, TaskResult& r) {
  const std::string key = fmt::format("{}#{}", task.params_path, task.params_version);
  if (!mapped.params || mapped.key != key) {
    mapped.params.reset();
    P2P_ASSIGN_OR_RETURN(auto params, MappedParams::Open(task.params_path, task.num_params));
    mapped.params = std::move(params);
    mapped.key = key;
  }
  return worker.Compute(task, key, mapped.params->floats(), r);
}

}  // namespace

Status ServeTasks(int in_fd, int out_fd) {
  // Die with the pool that started us (it was spawned without a chance to set this before exec).
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  ml::SetThreads(1);  // one function = one vCPU's worth of work; the pool runs K in parallel
  GradientWorker worker;
  MappedVersion mapped;
  std::string buffer;
  std::vector<char> chunk(1 << 20);
  while (true) {
    P2P_ASSIGN_OR_RETURN(auto task, TakeTask(buffer));
    if (task) {
      TaskResult r;
      r.id = task->id;
      if (Status s = Compute(worker, mapped, *task, r); !s.ok()) {
        r = TaskResult();
        r.id = task->id;
        r.error = s.message();
        const std::string bytes = EncodeResult(r);
        P2P_RETURN_IF_ERROR(WriteAll(out_fd, bytes.data(), bytes.size()));
        continue;
      }
      // The gradient goes out straight from the model's buffer.
      const auto g = worker.grads();
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
