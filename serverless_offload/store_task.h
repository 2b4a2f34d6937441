// SPIRT's store path on the function's side (docs/spirt.md): a function reads the parameters of
// the current version from its peer's Redis database and writes its gradient there itself, so the
// peer only hands it the samples and the keys (Task::store).
#pragma once

#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/status.h"
#include "serverless_offload/task.h"
#include "store/client.h"

namespace p2p::offload {

// What a warm function keeps of the store: one connection (its peer's database; a task naming
// another database reconnects) and the last parameter version it read.
class StoreSession {
 public:
  // The parameters task.store->params_key holds, read once per (key, params_version).
  // InvalidArgument/Unavailable naming the database if it cannot be read; DataLoss if it is not a
  // blob of task.num_params floats.
  Result<std::span<const float>> Params(const Task& task);
  // Writes `grad` into slot task.store->index of task.store->list_key (LSET). An error names the
  // database and the key (e.g. the peer never created the list).
  Status Push(const Task& task, std::span<const float> grad);

 private:
  Result<store::RedisClient*> Client(const Task::Store& s);

  std::string url_, password_;
  std::unique_ptr<store::RedisClient> client_;
  std::string params_id_;  // "<key>#<version>" of params_
  std::vector<float> params_;
};

}  // namespace p2p::offload
