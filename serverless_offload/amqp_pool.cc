#include "serverless_offload/amqp_pool.h"

#include <spdlog/spdlog.h>

#include <cmath>
#include <deque>
#include <map>
#include <optional>

#include "broker/amqp_queue_client.h"
#include "common/stop_signal.h"
#include "serverless_offload/param_store.h"
#include "serverless_offload/task_ledger.h"

namespace p2p::offload {
namespace {

using broker::QueueClient;
using broker::QueueMessage;
using Clock = std::chrono::steady_clock;

// A parameter version the pool can hand to workers: a copy of the peer's ParamStore file (whose
// files are reused by later versions).
struct HeldParams {
  std::string path;
  uint64_t store_version = 0;
  uint64_t wire_version = 0;  // what tasks and workers call it: unique within this pool
  std::vector<float> params;
  uint64_t last_used = 0;  // RunAll call that last needed it
};

class AmqpPool final : public FunctionPool {
 public:
  AmqpPool(PoolOptions o, QueueClient session, std::string reply_queue)
      : o_(std::move(o)), session_(std::move(session)), reply_queue_(std::move(reply_queue)) {}

  ~AmqpPool() override {
    if (session_) {
      (void)session_->DeleteQueue(reply_queue_);
      (void)session_->Close();
    }
  }

  const PoolStats& stats() const override { return stats_; }

  Result<std::vector<TaskResult>> RunAll(std::vector<Task> tasks) override {
    if (!session_) return broken_;
    ++calls_;
    std::vector<uint64_t> ids(tasks.size());
    for (size_t i = 0; i < tasks.size(); ++i) {
      ids[i] = tasks[i].id;
      P2P_ASSIGN_OR_RETURN(tasks[i].params_version, Hold(tasks[i]));
      tasks[i].reply_to = reply_queue_;
    }
    Forget();
    auto result = Run(tasks, ids);
    if (!result.ok() && !session_) return broken_;
    return result;
  }

 private:
  // How long one Receive may block. The queue client waits inside rabbitmq-c and cannot also
  // watch the stop pipe (common/stop_signal.h), so with stop signals installed a wait is cut into
  // slices short enough that SIGINT/SIGTERM ends it promptly; without them, up to the task timeout.
  static std::chrono::milliseconds MaxWait(std::chrono::milliseconds timeout) {
    constexpr std::chrono::milliseconds kStopSlice{100};
    return StopFd() >= 0 ? std::min(timeout, kStopSlice) : timeout;
  }

  // Tasks still on the queue expire there by their TTL (--fn-timeout); results that arrive for
  // them go to this pool's reply queue, which the broker deletes with the connection.
  Status Stopped(size_t inflight) const {
    return StoppedBySignal(
        fmt::format("while {} offload task(s) were out on queue '{}' (the broker drops them after "
                    "--fn-timeout)",
                    inflight, o_.queue));
  }

  struct Attempt {
    size_t task = 0;
    Clock::time_point start, deadline;
  };

  Result<std::vector<TaskResult>> Run(std::vector<Task>& tasks, const std::vector<uint64_t>& ids) {
    TaskLedger ledger(tasks.size(), o_.retries, stats_);
    std::map<uint64_t, Attempt> inflight;  // by wire id
    const auto timeout = std::chrono::milliseconds(static_cast<int64_t>(o_.timeout_s * 1000));
    while (!ledger.done()) {
      while (static_cast<int>(inflight.size()) < o_.functions && ledger.has_pending()) {
        const size_t i = ledger.StartNext();
        const uint64_t wire = ++next_wire_id_;
        tasks[i].id = wire;
        tasks[i].attempt = ledger.attempts(i) - 1;
        const std::string body = EncodeTask(tasks[i]);
        P2P_RETURN_IF_ERROR(Check(session_->Publish(o_.queue, AsBytes(body), timeout)));
        const auto now = Clock::now();
        inflight[wire] = Attempt{i, now, now + timeout};
      }
      if (StopSignal() != 0) return Stopped(inflight.size());
      auto wake = Clock::time_point::max();
      for (const auto& [wire, a] : inflight) wake = std::min(wake, a.deadline);
      const auto wait =
          std::clamp(std::chrono::ceil<std::chrono::milliseconds>(wake - Clock::now()),
                     std::chrono::milliseconds(1), MaxWait(timeout));
      P2P_ASSIGN_OR_RETURN(std::optional<QueueMessage> d, Check(session_->Receive(wait)));
      if (d) {
        P2P_RETURN_IF_ERROR(Check(session_->Ack(d->delivery_tag)));
        P2P_RETURN_IF_ERROR(OnMessage(AsText(d->body), tasks, ids, inflight, ledger));
      }
      for (auto it = inflight.begin(); it != inflight.end();) {
        if (Clock::now() < it->second.deadline) {
          ++it;
          continue;
        }
        const size_t task = it->second.task;
        it = inflight.erase(it);
        P2P_RETURN_IF_ERROR(ledger.Failed(
            task, ids[task],
            fmt::format("no result within {} s (--fn-timeout): no worker took it from queue '{}' "
                        "on {}, or its worker hung. Are workers running (p2ptrain function "
                        "--serve --broker URL --queue {})?",
                        o_.timeout_s, o_.queue, session_->endpoint(), o_.queue)));
      }
    }
    std::vector<TaskResult> results = ledger.TakeResults();
    for (size_t i = 0; i < results.size(); ++i) results[i].id = ids[i];
    return results;
  }

  Status OnMessage(std::string_view body, const std::vector<Task>& tasks,
                   const std::vector<uint64_t>& ids, std::map<uint64_t, Attempt>& inflight,
                   TaskLedger& ledger) {
    switch (KindOf(body)) {
      case MessageKind::kParamsRequest:
        return AnswerParamsRequest(body);
      case MessageKind::kResult:
        break;
      default:
        Drop("a message that is neither a result nor a parameter request");
        return Status::Ok();
    }
    auto decoded = DecodeResult(body);
    if (!decoded.ok()) {
      Drop(decoded.status().message());
      return Status::Ok();
    }
    TaskResult& r = *decoded;
    const auto it = inflight.find(r.id);
    if (it == inflight.end()) {  // an attempt we gave up on, or a duplicate after a redelivery
      ++stale_results_;
      return Status::Ok();
    }
    const Attempt a = it->second;
    inflight.erase(it);
    if (!r.error.empty()) {
      return ledger.Failed(a.task, ids[a.task], fmt::format("worker {}: {}", r.worker, r.error));
    }
    if (r.samples != tasks[a.task].y.size() || r.gradient.size() != tasks[a.task].num_params) {
      return ledger.Failed(a.task, ids[a.task],
                           fmt::format("worker {} returned {} values for {} samples", r.worker,
                                       r.gradient.size(), r.samples));
    }
    stats_.latencies_ms.push_back(
        std::chrono::duration<double, std::milli>(Clock::now() - a.start).count());
    const double billed = std::ceil(r.busy_seconds * 1000.0);
    stats_.billed_ms += billed;
    stats_.gb_seconds += billed / 1000.0 * (o_.memory_mb / 1024.0);
    ++(r.cold ? stats_.cold_starts : stats_.warm_starts);
    if (r.redelivered) ++stats_.redeliveries;
    ledger.Succeeded(a.task, std::move(r));
    return Status::Ok();
  }

  Status AnswerParamsRequest(std::string_view body) {
    auto request = DecodeParamsRequest(body);
    if (!request.ok()) {
      Drop(request.status().message());
      return Status::Ok();
    }
    const HeldParams* held = nullptr;
    for (const auto& h : held_) {
      if (h.wire_version == request->version) held = &h;
    }
    std::string reply;
    if (held == nullptr) {
      reply = EncodeParamsReply(request->version, "this parameter version is no longer held", {});
    } else if (held->params.size() != request->num_params) {
      reply = EncodeParamsReply(request->version, "parameter count does not match", {});
    } else {
      reply = EncodeParamsReply(request->version, "", held->params);
      ++stats_.params_sent;
    }
    return Check(session_->Publish(request->reply_to, AsBytes(reply)));
  }

  // The pool-wide version of the task's parameters, mapping the file the first time.
  Result<uint64_t> Hold(const Task& t) {
    for (auto& h : held_) {
      if (h.path == t.params_path && h.store_version == t.params_version) {
        h.last_used = calls_;
        return h.wire_version;
      }
    }
    if (t.num_params * sizeof(float) > kMaxRemoteParamBytes) {
      return InvalidArgument(
          "--offload amqp: the model has {} parameters ({} MiB) but parameters travel in one "
          "message of at most {} MiB; use --offload process for this model",
          t.num_params, t.num_params * sizeof(float) >> 20, kMaxRemoteParamBytes >> 20);
    }
    P2P_ASSIGN_OR_RETURN(auto mapped, MappedParams::Open(t.params_path, t.num_params));
    held_.push_back(HeldParams{t.params_path, t.params_version, ++next_version_,
                               std::vector<float>(mapped.floats().begin(), mapped.floats().end()),
                               calls_});
    return held_.back().wire_version;
  }

  // Keeps the versions this call and the previous one use: a worker finishing a late task of
  // the previous step may still ask for its version.
  void Forget() {
    std::erase_if(held_, [&](const HeldParams& h) { return h.last_used + 1 < calls_; });
  }

  void Drop(const std::string& why) {
    if (dropped_++ == 0) {
      spdlog::warn("offload: dropped a malformed message on queue {}: {} (logged once)",
                   reply_queue_, why);
    }
  }

  // A broker error ends the pool: later calls return it without touching the dead connection.
  Status Check(Status s) {
    if (!s.ok()) {
      broken_ = Status(s.code(), fmt::format("--offload amqp: lost the broker: {}", s.message()));
      session_.reset();
    }
    return s;
  }
  template <typename T>
  Result<T> Check(Result<T> r) {
    if (!r.ok()) (void)Check(r.status());
    return r;
  }

  PoolOptions o_;
  std::optional<QueueClient> session_;
  std::string reply_queue_;
  Status broken_;
  PoolStats stats_;
  std::deque<HeldParams> held_;
  uint64_t calls_ = 0, next_wire_id_ = 0, next_version_ = 0;
  uint64_t stale_results_ = 0, dropped_ = 0;
};

}  // namespace

Result<std::unique_ptr<FunctionPool>> MakeAmqpPool(const PoolOptions& o) {
  if (o.broker.empty()) {
    return InvalidArgument("--offload amqp needs --fn-broker amqp://user:pass@host:port/");
  }
  P2P_RETURN_IF_ERROR(ValidateQueueName(o.queue, "--fn-queue"));
  P2P_ASSIGN_OR_RETURN(broker::AmqpUrl url, broker::ParseAmqpUrl(o.broker));
  const auto deadline = broker::DeadlineIn(std::chrono::seconds(10));
  auto session = QueueClient::Open(url, /*heartbeat_s=*/0, deadline);
  if (!session.ok()) {
    return Status(session.status().code(),
                  fmt::format("--offload amqp: {}", session.status().message()));
  }
  const std::string reply_queue = PrivateQueueName("p2ptrain.fnpool");
  session->SetRpcDeadline(deadline);
  P2P_RETURN_IF_ERROR(session->DeclareQueue(o.queue, kWorkQueueExpiry));
  P2P_RETURN_IF_ERROR(session->DeclareQueue(reply_queue, kReplyQueueExpiry));
  P2P_RETURN_IF_ERROR(session->SetPrefetch(256));
  P2P_RETURN_IF_ERROR(session->Consume(reply_queue, /*exclusive=*/true));
  session->SetRpcDeadline(Clock::now() + std::chrono::hours(24));
  spdlog::info("offload: publishing tasks to queue '{}' on {}", o.queue, url.Redacted());
  return std::unique_ptr<FunctionPool>(
      std::make_unique<AmqpPool>(o, std::move(*session), reply_queue));
}

}  // namespace p2p::offload
