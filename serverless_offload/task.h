// A gradient task for a function process and its result, and their byte framing on a pipe (or a
// work queue). Both directions are untrusted input: every length is bounded and checked before
// anything is allocated, and the header is validated field by field.
//
// Task:   "P2PTASK1" | u32 header_len | header JSON | rows*cols f32 features | rows i32 labels
//         (no features when the header names a shared file: {"shared": {path, x, grad}})
// Result: "P2PRSLT1" | u32 header_len | header JSON | u64 n | n f32 gradient
// (little-endian). Task header: {"id", "attempt", "model": {name, hidden, dropout, input [c,h,w],
// classes, loss}, "params_path", "params_version", "num_params", "reply_to", "rows", "cols"}
// (+ "store": {url, password, params, list, index} on SPIRT's store path).
// Result header: {"id", "loss_sum", "samples", "compute_s", "busy_s", "worker", "cold",
// "redelivered", "error"} (error: empty when ok). Fields added after version 1 are optional
// when decoding. The framing helpers are in wire_frame.h.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/status.h"
#include "ml/model.h"
#include "ml/tensor.h"

namespace p2p::offload {

struct Task {
  uint64_t id = 0;
  uint32_t attempt = 0;
  ml::ModelOptions model;
  // Same-host parameter snapshot (ParamStore): a read-only file the function maps, never copied
  // through the pipe. Functions cache the mapping per version.
  std::string params_path;
  uint64_t params_version = 0;
  uint64_t num_params = 0;
  // Remote workers (amqp backend): the pool's queue for results and parameter requests; they
  // fetch parameters once per (reply_to, params_version) and cache them.
  std::string reply_to;
  // Same-host process backend: the samples are in a shared file (shared_file.h) instead of the
  // message, and the function writes the gradient there too, at grad_offset (a 64-byte aligned
  // byte offset); its result then carries no gradient values. Empty path: all in the messages.
  struct Shared {
    std::string path;
    uint64_t x_offset = 0, grad_offset = 0;
    uint64_t rows = 0, cols = 0;  // decoded tasks: the shape of the samples in the file
  };
  Shared shared;
  // SPIRT's store path (docs/spirt.md): the function reads the parameters from its peer's Redis
  // database (`params_key`, cached per params_version) instead of params_path, and writes its
  // gradient into slot `index` of the list `list_key` there (LSET: the peer sized the list, so
  // the gradients stay in task order whatever order the functions finish in, and a retried task
  // overwrites its own slot). Its result then carries no gradient values. The password travels
  // only on the pool's private pipe: the process backend is the only one that sends these.
  struct Store {
    std::string url;  // store::StoreAddress::Describe(): no password in it
    std::string password;
    std::string params_key, list_key;
    uint32_t index = 0;
  };
  std::optional<Store> store;
  ml::Matrix x;  // the samples, one per row (empty in a decoded task with a shared path)
  std::vector<int32_t> y;
};

struct TaskResult {
  uint64_t id = 0;
  double loss_sum = 0;  // sum over samples of the loss
  uint64_t samples = 0;
  double compute_seconds = 0;   // inside the function: forward + backward
  std::string error;            // a function-side failure (bad task, unreadable parameters)
  std::vector<float> gradient;  // mean over the task's samples, when it came in the message
  // ... or, from the process backend, a view of the function's shared slot, which `slot` keeps
  // alive (and out of reuse) for as long as this result exists: no copy of the gradient at all.
  std::span<const float> shared_gradient;
  std::shared_ptr<const void> slot;
  std::span<const float> values() const {
    return gradient.empty() ? shared_gradient : std::span<const float>(gradient);
  }
  // Remote workers only: receipt of the task to its result (Lambda's billed duration), which
  // worker served it, whether it had to build the model first (a cold start), and whether the
  // broker redelivered the task (its first worker died holding it).
  double busy_seconds = 0;
  std::string worker;
  bool cold = false;
  bool redelivered = false;
};

std::string EncodeTask(const Task& task);
std::string EncodeResult(const TaskResult& result);
// The result frame without its gradient values, which follow it on the wire (`gradient_size`
// floats): lets a function write the gradient straight from its model, without a copy.
std::string EncodeResultHead(const TaskResult& result, uint64_t gradient_size);

// Parse one complete frame from the front of `buffer` and erase it. nullopt: incomplete, read
// more. DataLoss: malformed (bad magic, lengths over the bounds, inconsistent header).
Result<std::optional<Task>> TakeTask(std::string& buffer);
Result<std::optional<TaskResult>> TakeResult(std::string& buffer);

}  // namespace p2p::offload
