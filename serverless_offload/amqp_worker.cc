#include "serverless_offload/amqp_worker.h"

#include <fcntl.h>
#include <malloc.h>
#include <poll.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <optional>
#include <vector>

#include "broker/amqp_queue_client.h"
#include "broker/backoff.h"
#include "ml/threads.h"
#include "serverless_offload/gradient_worker.h"

namespace p2p::offload {
namespace {

using broker::QueueClient;
using broker::QueueMessage;
using Clock = std::chrono::steady_clock;

// SIGINT/SIGTERM: a flag for the serving loop, and a byte on a pipe so a reconnect backoff wakes
// up at once (both async-signal-safe).
std::atomic<bool> g_stop{false};
int g_stop_pipe[2] = {-1, -1};
extern "C" void RequestStop(int) {
  g_stop.store(true);
  const char byte = 1;
  if (g_stop_pipe[1] >= 0) (void)!::write(g_stop_pipe[1], &byte, 1);
}

// Waits `d` or until a stop is requested, whichever comes first.
void WaitUnlessStopped(std::chrono::milliseconds d) {
  pollfd f{g_stop_pipe[0], POLLIN, 0};
  if (!g_stop.load()) (void)::poll(&f, 1, static_cast<int>(d.count()));
}

struct CachedParams {
  std::string pool;  // the pool's reply queue
  uint64_t version = 0;
  std::vector<float> values;
  uint64_t last_used = 0;
};
constexpr size_t kCachedPools = 8;

// Keeps the model, the parameter cache and the counts across reconnects.
class Worker {
 public:
  explicit Worker(const WorkerOptions& o) : o_(o) {}

  // Serves on one connection until a stop, --max-tasks, or an error of the connection.
  Status Serve(QueueClient session, std::string private_queue) {
    session_.emplace(std::move(session));
    private_queue_ = std::move(private_queue);
    Status s = ServeLoop();
    if (s.ok()) {
      (void)session_->DeleteQueue(private_queue_);
      s = session_->Close();
    }
    session_.reset();
    return s;
  }

  bool done() const { return g_stop.load() || (o_.max_tasks > 0 && served_ >= o_.max_tasks); }
  std::string Summary() const {
    return fmt::format("served {} task(s) ({} failed), fetched {} parameter version(s)", served_,
                       failed_, fetched_);
  }

 private:
  Status ServeLoop() {
    // Short waits only so a stop request or heartbeat is noticed; deliveries wake us at once.
    const auto idle =
        std::chrono::milliseconds(std::clamp(session_->heartbeat_s() * 250, 100, 1000));
    while (!g_stop.load() && (o_.max_tasks == 0 || served_ < o_.max_tasks)) {
      P2P_ASSIGN_OR_RETURN(std::optional<QueueMessage> d, session_->Receive(idle));
      if (!d) continue;
      if (d->routing_key == private_queue_) {  // a parameter reply we stopped waiting for
        P2P_RETURN_IF_ERROR(session_->Ack(d->delivery_tag));
        continue;
      }
      P2P_RETURN_IF_ERROR(Handle(*d));
    }
    return Status::Ok();
  }

  Status Handle(const QueueMessage& d) {
    const auto start = Clock::now();
    const uint64_t tag = d.delivery_tag;
    auto task = DecodeTask(AsText(d.body));
    if (!task.ok() || task->reply_to.empty()) {
      spdlog::warn("worker: dropping a malformed task: {}",
                   task.ok() ? "it names no reply queue" : task.status().message());
      return session_->Ack(tag);
    }
    spdlog::debug("worker: task {} attempt {} from {}: received, {} samples", task->id,
                  task->attempt, task->reply_to, task->y.size());
    TaskResult r;
    r.id = task->id;
    r.worker = private_queue_;
    r.redelivered = d.redelivered;
    Status computed = Compute(*task, r);
    r.busy_seconds = std::chrono::duration<double>(Clock::now() - start).count();
    std::string body;
    if (computed.ok()) {
      const auto g = gradient_.grads();
      body = EncodeResultHead(r, g.size());
      body.append(reinterpret_cast<const char*>(g.data()), g.size_bytes());
    } else {
      ++failed_;
      r.error = computed.message();
      body = EncodeResult(r);
    }
    // Result first, then the ack: if we die in between, the task is redelivered and the pool
    // drops the duplicate result.
    P2P_RETURN_IF_ERROR(session_->Publish(task->reply_to, AsBytes(body)));
    P2P_RETURN_IF_ERROR(session_->Ack(tag));
    ++served_;
    spdlog::debug("worker: task {} attempt {} from {}: done in {:.1f} ms{}{}{}", task->id,
                  task->attempt, task->reply_to, r.busy_seconds * 1000, r.cold ? ", cold" : "",
                  r.redelivered ? ", redelivered" : "",
                  computed.ok() ? "" : ", error: " + computed.message());
    return Status::Ok();
  }

  Status Compute(const Task& task, TaskResult& r) {
    try {
      return ComputeOrThrow(task, r);
    } catch (const std::bad_alloc&) {
      return Internal("out of memory computing the task (worker --fn-memory {} MB)", o_.memory_mb);
    }
  }

  Status ComputeOrThrow(const Task& task, TaskResult& r) {
    if (!task.shared.path.empty()) {
      return InvalidArgument("task names a shared file of another host");
    }
    P2P_ASSIGN_OR_RETURN(const CachedParams* params, Params(task));
    const std::string key = fmt::format("{}#{}", params->pool, params->version);
    P2P_RETURN_IF_ERROR(gradient_.Compute(task, key, params->values, r));
    r.cold = gradient_.built_model();
    return Status::Ok();
  }

  // The task's parameters: cached, or asked from its pool once.
  Result<const CachedParams*> Params(const Task& task) {
    ++use_counter_;
    for (auto& c : cache_) {
      if (c.pool == task.reply_to && c.version == task.params_version) {
        c.last_used = use_counter_;
        return &c;
      }
    }
    if (task.num_params * sizeof(float) > kMaxRemoteParamBytes) {
      return InvalidArgument("task has {} parameters, more than a worker accepts", task.num_params);
    }
    const std::string request = EncodeParamsRequest({.version = task.params_version,
                                                     .num_params = task.num_params,
                                                     .reply_to = private_queue_,
                                                     .worker = private_queue_});
    P2P_RETURN_IF_ERROR(session_->Publish(task.reply_to, AsBytes(request)));
    const auto deadline =
        Clock::now() + std::chrono::milliseconds(static_cast<int64_t>(o_.params_timeout_s * 1000));
    while (Clock::now() < deadline) {
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
      P2P_ASSIGN_OR_RETURN(std::optional<QueueMessage> d, session_->Receive(left));
      if (!d) continue;
      P2P_RETURN_IF_ERROR(session_->Ack(d->delivery_tag));
      if (d->routing_key != private_queue_) {
        return Internal("a second task arrived while one was in hand (prefetch is 1)");
      }
      auto reply = DecodeParamsReply(AsText(d->body), task.num_params);
      if (!reply.ok()) return reply.status();
      if (reply->version != task.params_version) continue;  // an older request's late answer
      if (!reply->error.empty()) {
        return Unavailable("pool {} has no parameter version {}: {}", task.reply_to,
                           task.params_version, reply->error);
      }
      ++fetched_;
      return Insert(
          CachedParams{task.reply_to, task.params_version, std::move(reply->params), use_counter_});
    }
    return Unavailable("pool {} did not answer the parameter request within {} s", task.reply_to,
                       o_.params_timeout_s);
  }

  const CachedParams* Insert(CachedParams params) {
    std::erase_if(cache_, [&](const CachedParams& c) { return c.pool == params.pool; });
    if (cache_.size() >= kCachedPools) {
      cache_.erase(std::min_element(cache_.begin(), cache_.end(), [](const auto& a, const auto& b) {
        return a.last_used < b.last_used;
      }));
    }
    cache_.push_back(std::move(params));
    return &cache_.back();
  }

  const WorkerOptions& o_;
  std::optional<QueueClient> session_;
  std::string private_queue_;
  GradientWorker gradient_;
  std::vector<CachedParams> cache_;
  uint64_t use_counter_ = 0, served_ = 0, failed_ = 0, fetched_ = 0;
};

// Opens a connection, declares the work queue and a private queue, consumes both.
Result<std::pair<QueueClient, std::string>> Connect(const broker::AmqpUrl& url,
                                                    const std::string& queue) {
  const auto deadline = broker::DeadlineIn(std::chrono::seconds(10));
  P2P_ASSIGN_OR_RETURN(QueueClient session,
                       QueueClient::Open(url, url.heartbeat_s.value_or(30), deadline));
  std::string private_queue = PrivateQueueName("p2ptrain.fnworker");
  session.SetRpcDeadline(deadline);
  P2P_RETURN_IF_ERROR(session.DeclareQueue(queue, kWorkQueueExpiry));
  P2P_RETURN_IF_ERROR(session.DeclareQueue(private_queue, kReplyQueueExpiry));
  P2P_RETURN_IF_ERROR(session.SetPrefetch(1));
  P2P_RETURN_IF_ERROR(session.Consume(queue, /*exclusive=*/false));
  P2P_RETURN_IF_ERROR(session.Consume(private_queue, /*exclusive=*/true));
  session.SetRpcDeadline(Clock::now() + std::chrono::hours(24));
  return std::make_pair(std::move(session), std::move(private_queue));
}

}  // namespace

Status ServeAmqpWorker(const WorkerOptions& o) {
  P2P_RETURN_IF_ERROR(ValidateQueueName(o.queue, "--queue"));
  P2P_ASSIGN_OR_RETURN(broker::AmqpUrl url, broker::ParseAmqpUrl(o.broker));
  ml::SetThreads(1);  // one worker = one function = one vCPU; run one worker per core
  if (o.memory_mb > 0) {
    ::mallopt(M_ARENA_MAX, 1);  // glibc's per-thread arenas would reserve address space for nothing
    const rlim_t bytes = static_cast<rlim_t>(o.memory_mb) << 20;
    const rlimit limit{bytes, bytes};
    if (::setrlimit(RLIMIT_AS, &limit) != 0) {
      return IoError("cannot set the memory limit of {} MB: {}", o.memory_mb, std::strerror(errno));
    }
  }
  if (g_stop_pipe[0] < 0 && ::pipe2(g_stop_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
    return IoError("pipe: {}", std::strerror(errno));
  }
  struct sigaction sa {};
  sa.sa_handler = RequestStop;
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);

  const auto patience =
      std::chrono::milliseconds(static_cast<int64_t>(o.reconnect_timeout_s * 1000));
  Worker worker(o);
  auto give_up = Clock::now() + patience;
  broker::Backoff backoff;
  while (!worker.done()) {
    Status s = [&]() -> Status {
      P2P_ASSIGN_OR_RETURN(auto connected, Connect(url, o.queue));
      spdlog::info("worker {}: serving gradient tasks from queue '{}' on {}", connected.second,
                   o.queue, url.Redacted());
      give_up = Clock::now() + patience;  // connected: the patience starts over
      backoff.Reset();
      return worker.Serve(std::move(connected.first), std::move(connected.second));
    }();
    if (s.ok() || worker.done()) break;
    if (!broker::IsRetryable(s)) return s;
    const auto wait = backoff.Next();
    if (Clock::now() + wait >= give_up) {
      return Status(s.code(), fmt::format("{}; gave up after {} s without the broker "
                                          "(--reconnect-timeout)",
                                          s.message(), o.reconnect_timeout_s));
    }
    spdlog::warn("worker: {}; retrying in {} ms (a task in hand goes back to the queue)",
                 s.message(), wait.count());
    WaitUnlessStopped(wait);
  }
  spdlog::info("worker: {}", worker.Summary());
  return Status::Ok();
}

}  // namespace p2p::offload
