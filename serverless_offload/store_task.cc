#include "serverless_offload/store_task.h"

#include <fmt/format.h>

#include "store/blob.h"

namespace p2p::offload {

Result<store::RedisClient*> StoreSession::Client(const Task::Store& s) {
  if (client_ && url_ == s.url && password_ == s.password) return client_.get();
  client_.reset();
  params_id_.clear();
  store::ConnectOptions options;
  P2P_ASSIGN_OR_RETURN(options.address, store::ParseStoreUrl(s.url));
  if (!s.password.empty()) options.password = s.password;
  auto client = store::RedisClient::Connect(options);
  if (!client.ok()) return client.status().Annotate("function: its peer's database");
  client_ = std::make_unique<store::RedisClient>(std::move(*client));
  url_ = s.url;
  password_ = s.password;
  return client_.get();
}

Result<std::span<const float>> StoreSession::Params(const Task& task) {
  P2P_CHECK(task.store.has_value(), "StoreSession::Params for a task without a store");
  const std::string id = fmt::format("{}#{}", task.store->params_key, task.params_version);
  P2P_ASSIGN_OR_RETURN(store::RedisClient * db, Client(*task.store));
  if (params_id_ != id) {
    params_id_.clear();
    P2P_ASSIGN_OR_RETURN(params_, db->GetBlob(task.store->params_key));
    if (params_.size() != task.num_params) {
      return DataLoss("function: {} holds {} parameters in {}; the task's model has {}", db->name(),
                      params_.size(), task.store->params_key, task.num_params);
    }
    params_id_ = id;
  }
  return std::span<const float>(params_);
}

Status StoreSession::Push(const Task& task, std::span<const float> grad) {
  P2P_CHECK(task.store.has_value(), "StoreSession::Push for a task without a store");
  P2P_ASSIGN_OR_RETURN(store::RedisClient * db, Client(*task.store));
  const std::string blob = store::EncodeBlob(grad);
  const std::string index = std::to_string(task.store->index);
  Status s = db->Command({"LSET", task.store->list_key, index, blob}).status();
  if (!s.ok()) {
    return s.Annotate(fmt::format("function: writing its gradient into slot {} of {}", index,
                                  task.store->list_key));
  }
  return Status::Ok();
}

}  // namespace p2p::offload
