#include "serverless_offload/task.h"

#include <cstring>

#include "serverless_offload/wire_frame.h"

namespace p2p::offload {
namespace {

using wire::Field;
using wire::Frame;
using wire::kMaxFloats;
using wire::OptionalField;
using wire::Peek;
using wire::Put;
using wire::TakeHeader;

using wire::kResultMagic;
using wire::kTaskMagic;
constexpr uint64_t kMaxRows = 1 << 20;
constexpr uint64_t kMaxCols = 1 << 24;
constexpr size_t kMaxNameBytes = 255;  // an AMQP queue name (reply_to) or a worker id

nlohmann::json ModelToJson(const ml::ModelOptions& m) {
  return {{"name", m.name},           {"hidden", m.hidden},
          {"dropout", m.dropout},     {"input", {m.input.c, m.input.h, m.input.w}},
          {"classes", m.num_classes}, {"loss", ml::LossName(m.loss)}};
}

Result<ml::ModelOptions> ModelFromJson(const nlohmann::json& j) {
  constexpr const char* kWhat = "task model";
  ml::ModelOptions m;
  P2P_ASSIGN_OR_RETURN(m.name, Field<std::string>(j, "name", kWhat));
  P2P_ASSIGN_OR_RETURN(m.hidden, Field<std::vector<int>>(j, "hidden", kWhat));
  P2P_ASSIGN_OR_RETURN(m.dropout, Field<float>(j, "dropout", kWhat));
  P2P_ASSIGN_OR_RETURN(auto input, Field<std::vector<int>>(j, "input", kWhat));
  P2P_ASSIGN_OR_RETURN(m.num_classes, Field<int>(j, "classes", kWhat));
  P2P_ASSIGN_OR_RETURN(auto loss, Field<std::string>(j, "loss", kWhat));
  if (input.size() != 3 || m.hidden.size() > 16) return DataLoss("{}: bad shape", kWhat);
  for (int v : input) {
    if (v < 1 || v > 4096) return DataLoss("{}: input dimension {} out of range", kWhat, v);
  }
  for (int v : m.hidden) {
    if (v < 1 || v > (1 << 16)) return DataLoss("{}: hidden width {} out of range", kWhat, v);
  }
  if (m.num_classes < 2 || m.num_classes > (1 << 16)) return DataLoss("{}: bad class count", kWhat);
  m.input = {input[0], input[1], input[2]};
  auto kind = ml::ParseLoss(loss);
  if (!kind.ok()) return DataLoss("{}: {}", kWhat, kind.status().message());
  m.loss = *kind;
  return m;
}

// The "store" object of a task header; every string bounded (a Redis key of the run is short).
Result<Task::Store> StoreFromJson(const nlohmann::json& j) {
  constexpr const char* kWhat = "task store";
  constexpr size_t kMaxBytes = 4096;
  Task::Store s;
  P2P_ASSIGN_OR_RETURN(s.url, Field<std::string>(j, "url", kWhat));
  P2P_ASSIGN_OR_RETURN(s.password, Field<std::string>(j, "password", kWhat));
  P2P_ASSIGN_OR_RETURN(s.params_key, Field<std::string>(j, "params", kWhat));
  P2P_ASSIGN_OR_RETURN(s.list_key, Field<std::string>(j, "list", kWhat));
  P2P_ASSIGN_OR_RETURN(s.index, Field<uint32_t>(j, "index", kWhat));
  for (const std::string* v : {&s.url, &s.password, &s.params_key, &s.list_key}) {
    if (v->size() > kMaxBytes)
      return DataLoss("{}: a field is longer than {} bytes", kWhat, kMaxBytes);
  }
  if (s.url.empty() || s.params_key.empty() || s.list_key.empty()) {
    return DataLoss("{}: url, params and list must not be empty", kWhat);
  }
  if (s.index >= kMaxRows) return DataLoss("{}: slot index {} out of range", kWhat, s.index);
  return s;
}

}  // namespace

std::string EncodeTask(const Task& t) {
  nlohmann::json header = {{"id", t.id},
                           {"attempt", t.attempt},
                           {"model", ModelToJson(t.model)},
                           {"params_path", t.params_path},
                           {"params_version", t.params_version},
                           {"num_params", t.num_params},
                           {"reply_to", t.reply_to},
                           {"rows", t.x.rows()},
                           {"cols", t.x.cols()}};
  const bool shared = !t.shared.path.empty();
  if (shared) {
    header["shared"] = {
        {"path", t.shared.path}, {"x", t.shared.x_offset}, {"grad", t.shared.grad_offset}};
  }
  if (t.store) {
    header["store"] = {{"url", t.store->url},
                       {"password", t.store->password},
                       {"params", t.store->params_key},
                       {"list", t.store->list_key},
                       {"index", t.store->index}};
  }
  std::string out = Frame(kTaskMagic, header);
  if (!shared) {
    out.append(reinterpret_cast<const char*>(t.x.data()), sizeof(float) * size_t(t.x.size()));
  }
  out.append(reinterpret_cast<const char*>(t.y.data()), sizeof(int32_t) * t.y.size());
  return out;
}

std::string EncodeResultHead(const TaskResult& r, uint64_t gradient_size) {
  std::string out = Frame(kResultMagic, {{"id", r.id},
                                         {"loss_sum", r.loss_sum},
                                         {"samples", r.samples},
                                         {"compute_s", r.compute_seconds},
                                         {"busy_s", r.busy_seconds},
                                         {"worker", r.worker},
                                         {"cold", r.cold},
                                         {"redelivered", r.redelivered},
                                         {"error", r.error}});
  Put(out, gradient_size);
  return out;
}

std::string EncodeResult(const TaskResult& r) {
  std::string out = EncodeResultHead(r, r.gradient.size());
  out.append(reinterpret_cast<const char*>(r.gradient.data()), sizeof(float) * r.gradient.size());
  return out;
}

Result<std::optional<Task>> TakeTask(std::string& buffer) {
  constexpr const char* kWhat = "task";
  P2P_ASSIGN_OR_RETURN(auto head, TakeHeader(buffer, kTaskMagic, kWhat));
  if (!head) return std::optional<Task>();
  const auto& [h, at] = *head;
  P2P_ASSIGN_OR_RETURN(const uint64_t rows, Field<uint64_t>(h, "rows", kWhat));
  P2P_ASSIGN_OR_RETURN(const uint64_t cols, Field<uint64_t>(h, "cols", kWhat));
  if (rows < 1 || rows > kMaxRows || cols < 1 || cols > kMaxCols || rows * cols > kMaxFloats) {
    return DataLoss("task: {} x {} samples out of bounds", rows, cols);
  }
  Task t;
  if (h.contains("shared")) {
    const auto& sh = h.at("shared");
    P2P_ASSIGN_OR_RETURN(t.shared.path, Field<std::string>(sh, "path", kWhat));
    P2P_ASSIGN_OR_RETURN(t.shared.x_offset, Field<uint64_t>(sh, "x", kWhat));
    P2P_ASSIGN_OR_RETURN(t.shared.grad_offset, Field<uint64_t>(sh, "grad", kWhat));
    if (t.shared.path.empty() || t.shared.path.size() > 4096 || t.shared.grad_offset % 64 != 0) {
      return DataLoss("task: bad shared slot");
    }
    t.shared.rows = rows;
    t.shared.cols = cols;
  }
  const size_t features = t.shared.path.empty() ? sizeof(float) * rows * cols : 0;
  const size_t body = features + sizeof(int32_t) * rows;
  if (buffer.size() < at + body) return std::optional<Task>();
  P2P_ASSIGN_OR_RETURN(t.id, Field<uint64_t>(h, "id", kWhat));
  P2P_ASSIGN_OR_RETURN(t.attempt, Field<uint32_t>(h, "attempt", kWhat));
  P2P_ASSIGN_OR_RETURN(t.params_path, Field<std::string>(h, "params_path", kWhat));
  P2P_ASSIGN_OR_RETURN(t.params_version, Field<uint64_t>(h, "params_version", kWhat));
  P2P_ASSIGN_OR_RETURN(t.num_params, Field<uint64_t>(h, "num_params", kWhat));
  if (t.num_params < 1 || t.num_params > kMaxFloats) return DataLoss("task: bad parameter count");
  P2P_ASSIGN_OR_RETURN(t.reply_to, OptionalField<std::string>(h, "reply_to", "", kWhat));
  if (t.reply_to.size() > kMaxNameBytes) return DataLoss("task: reply_to is too long");
  if (h.contains("store")) {
    P2P_ASSIGN_OR_RETURN(t.store, StoreFromJson(h.at("store")));
  }
  if (!h.contains("model")) return DataLoss("task: no model");
  P2P_ASSIGN_OR_RETURN(t.model, ModelFromJson(h.at("model")));
  if (static_cast<uint64_t>(t.model.input.size()) != cols) {
    return DataLoss("task: {} features per sample but the model takes {}", cols,
                    t.model.input.size());
  }
  if (features > 0) {
    t.x.resize(static_cast<Eigen::Index>(rows), static_cast<Eigen::Index>(cols));
    std::memcpy(t.x.data(), buffer.data() + at, features);
  }
  t.y.resize(rows);
  std::memcpy(t.y.data(), buffer.data() + at + features, sizeof(int32_t) * rows);
  for (int32_t label : t.y) {
    if (label < 0 || label >= t.model.num_classes)
      return DataLoss("task: label {} out of range", label);
  }
  buffer.erase(0, at + body);
  return std::optional<Task>(std::move(t));
}

Result<std::optional<TaskResult>> TakeResult(std::string& buffer) {
  constexpr const char* kWhat = "result";
  P2P_ASSIGN_OR_RETURN(auto head, TakeHeader(buffer, kResultMagic, kWhat));
  if (!head) return std::optional<TaskResult>();
  const auto& [h, at] = *head;
  if (buffer.size() < at + 8) return std::optional<TaskResult>();
  const uint64_t n = Peek<uint64_t>(buffer, at);
  if (n > kMaxFloats) return DataLoss("result: {} gradient values is too many", n);
  if (buffer.size() < at + 8 + n * sizeof(float)) return std::optional<TaskResult>();
  TaskResult r;
  P2P_ASSIGN_OR_RETURN(r.id, Field<uint64_t>(h, "id", kWhat));
  P2P_ASSIGN_OR_RETURN(r.loss_sum, Field<double>(h, "loss_sum", kWhat));
  P2P_ASSIGN_OR_RETURN(r.samples, Field<uint64_t>(h, "samples", kWhat));
  P2P_ASSIGN_OR_RETURN(r.compute_seconds, Field<double>(h, "compute_s", kWhat));
  P2P_ASSIGN_OR_RETURN(r.error, Field<std::string>(h, "error", kWhat));
  P2P_ASSIGN_OR_RETURN(r.busy_seconds, OptionalField<double>(h, "busy_s", 0.0, kWhat));
  P2P_ASSIGN_OR_RETURN(r.worker, OptionalField<std::string>(h, "worker", "", kWhat));
  P2P_ASSIGN_OR_RETURN(r.cold, OptionalField<bool>(h, "cold", false, kWhat));
  P2P_ASSIGN_OR_RETURN(r.redelivered, OptionalField<bool>(h, "redelivered", false, kWhat));
  if (r.worker.size() > kMaxNameBytes) return DataLoss("result: worker id is too long");
  r.gradient.resize(n);
  // An empty gradient (an error result) has no data(): memcpy from or to null is undefined even
  // for 0 bytes.
  if (n > 0) std::memcpy(r.gradient.data(), buffer.data() + at + 8, n * sizeof(float));
  buffer.erase(0, at + 8 + n * sizeof(float));
  return std::optional<TaskResult>(std::move(r));
}

}  // namespace p2p::offload
