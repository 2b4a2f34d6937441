#include "serverless_offload/process_pool.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <spdlog/spdlog.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <deque>
#include <optional>

#include "common/stop_signal.h"
#include "serverless_offload/amqp_pool.h"
#include "serverless_offload/shared_file.h"
#include "serverless_offload/task_ledger.h"

extern char** environ;

namespace p2p::offload {
namespace {

using Clock = std::chrono::steady_clock;
constexpr size_t kStderrTail = 2048;

double MsSince(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

// One function process and the pipes to it.
struct Proc {
  pid_t pid = -1;
  int pidfd = -1, in = -1, out = -1, err = -1;
  std::string out_buf, err_tail;
  // This process's samples and result slot (shared_file.h); results that view it share it.
  std::shared_ptr<SharedFile> slot;
  // The task of the current RunAll (generation `viewed_in`) whose result views the slot.
  size_t viewed_by = 0;
  uint64_t viewed_in = 0;
  bool exited = false;
  int wait_status = 0;

  ~Proc() {
    if (pid > 0 && !exited) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
    for (int fd : {pidfd, in, out, err}) {
      if (fd >= 0) ::close(fd);
    }
  }
  void CloseInput() {
    if (in >= 0) ::close(in);
    in = -1;
  }
  // Reads what is available on stdout/stderr without blocking.
  void Drain() {
    static thread_local std::vector<char> chunk(1 << 20);
    char* buf = chunk.data();
    const size_t size = chunk.size();
    for (int* fd : {&out, &err}) {
      while (*fd >= 0) {
        const ssize_t n = ::read(*fd, buf, size);
        if (n > 0) {
          (fd == &out ? out_buf : err_tail).append(buf, static_cast<size_t>(n));
          continue;
        }
        if (n == 0) {
          ::close(*fd);
          *fd = -1;
        }
        break;  // EAGAIN or error: nothing more now
      }
    }
    if (err_tail.size() > kStderrTail) err_tail.erase(0, err_tail.size() - kStderrTail);
  }
  void Reap() {
    if (exited) return;
    ::waitpid(pid, &wait_status, 0);
    exited = true;
  }
  std::string Describe() const {
    std::string how = WIFSIGNALED(wait_status)
                          ? fmt::format("killed by signal {} ({})", WTERMSIG(wait_status),
                                        strsignal(WTERMSIG(wait_status)))
                          : fmt::format("exited with status {}", WEXITSTATUS(wait_status));
    std::string tail = err_tail;
    while (!tail.empty() && (tail.back() == '\n' || tail.back() == '\r')) tail.pop_back();
    return tail.empty() ? how : fmt::format("{}; its stderr ends: {}", how, tail);
  }
};

// posix_spawn (vfork-style: no copy of the parent's page tables, which for a peer holding its
// dataset made fork() alone cost ~20 ms) and then the memory limit with prlimit, before the
// function has its task and so before it allocates anything of note.
Result<std::unique_ptr<Proc>> Spawn(const PoolOptions& o, std::vector<char*>& argv,
                                    std::vector<char*>& envp) {
  int in[2], out[2], err[2];
  if (::pipe2(in, O_CLOEXEC) != 0) return IoError("pipe: {}", std::strerror(errno));
  if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0) {
    return IoError("pipe: {}", std::strerror(errno));
  }
  // Big enough for a whole batch and a whole gradient of the usual models: one write each way.
  ::fcntl(in[1], F_SETPIPE_SZ, 1 << 20);
  ::fcntl(out[1], F_SETPIPE_SZ, 1 << 20);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in[0], 0);
  posix_spawn_file_actions_adddup2(&actions, out[1], 1);
  posix_spawn_file_actions_adddup2(&actions, err[1], 2);
  pid_t pid = -1;
  const int rc = ::posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  ::close(in[0]);
  ::close(out[1]);
  ::close(err[1]);
  if (rc != 0) {
    for (int fd : {in[1], out[0], err[0]}) ::close(fd);
    return IoError("cannot start the function {}: {}", argv[0], std::strerror(rc));
  }
  auto p = std::make_unique<Proc>();
  p->pid = pid;
  p->in = in[1];
  p->out = out[0];
  p->err = err[0];
  const rlim_t memory = static_cast<rlim_t>(o.memory_mb) << 20;
  const rlimit limit{memory, memory};
  if (::prlimit(pid, RLIMIT_AS, &limit, nullptr) != 0) {
    return IoError("cannot set the function's memory limit: {}", std::strerror(errno));
  }
  ::fcntl(p->out, F_SETFL, O_NONBLOCK);
  ::fcntl(p->err, F_SETFL, O_NONBLOCK);
  p->pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (p->pidfd < 0) return IoError("pidfd_open: {}", std::strerror(errno));
  return p;
}

Status WriteTask(Proc& p, const std::string& bytes) {
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(p.in, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Unavailable("writing the task: {}", std::strerror(errno));
    done += static_cast<size_t>(n);
  }
  return Status::Ok();
}

class ProcessPool final : public FunctionPool {
 public:
  explicit ProcessPool(PoolOptions o) : o_(std::move(o)) {
    for (auto& a : o_.command) argv_.push_back(a.data());
    argv_.push_back(nullptr);
    // glibc reserves 64 MiB of address space per malloc arena; with RLIMIT_AS as the memory limit
    // that would count against the function for nothing.
    env_.push_back("MALLOC_ARENA_MAX=1");
    for (char** e = environ; *e != nullptr; ++e) {
      if (std::strncmp(*e, "MALLOC_ARENA_MAX=", 17) != 0) env_.push_back(*e);
    }
    for (auto& e : env_) envp_.push_back(e.data());
    envp_.push_back(nullptr);
    ::signal(SIGPIPE, SIG_IGN);  // a function that died makes our write fail, not kill us
  }

  const PoolStats& stats() const override { return stats_; }

  Result<std::vector<TaskResult>> RunAll(std::vector<Task> tasks) override {
    TaskLedger ledger(tasks.size(), o_.retries, stats_);
    ++run_;
    std::vector<Attempt> running;

    // A failed attempt: bill it, then retry the task or fail the whole call.
    auto failed = [&](Attempt& a, const std::string& why) -> Status {
      Bill(a);
      return ledger.Failed(a.task, tasks[a.task].id, why);
    };

    while (!ledger.done()) {
      // SIGINT/SIGTERM (common/stop_signal.h): no new attempts, the running ones are killed and
      // reaped, and the caller gets an error instead of a partial result.
      if (StopSignal() != 0) return Cancel(running);
      while (static_cast<int>(running.size()) < o_.functions && ledger.has_pending()) {
        const size_t i = ledger.StartNext();
        tasks[i].attempt = ledger.attempts(i) - 1;
        P2P_ASSIGN_OR_RETURN(Attempt a, Start(i, tasks[i], ledger));
        running.push_back(std::move(a));
      }
      std::vector<pollfd> fds;
      auto wake = Clock::time_point::max();
      for (auto& a : running) {
        for (int fd : {a.proc->out, a.proc->err, a.proc->pidfd}) {
          if (fd >= 0) fds.push_back({fd, POLLIN, 0});
        }
        wake = std::min(wake, a.deadline);
      }
      if (StopFd() >= 0) fds.push_back({StopFd(), POLLIN, 0});
      const auto wait_ms = std::chrono::ceil<std::chrono::milliseconds>(wake - Clock::now());
      if (::poll(fds.data(), fds.size(), static_cast<int>(std::max<int64_t>(0, wait_ms.count()))) <
              0 &&
          errno != EINTR) {
        return IoError("poll: {}", std::strerror(errno));
      }
      // Before looking at exits: a Ctrl-C or `launch`'s SIGTERM reaches the functions too (one
      // process group), and their deaths are part of the stop, not failures to retry.
      if (StopSignal() != 0) return Cancel(running);
      for (size_t k = 0; k < running.size();) {
        Attempt& a = running[k];
        Proc& p = *a.proc;
        p.Drain();
        // The exit is looked at before parsing, so output written just before it is not missed.
        const bool ended = ProcessEnded(p);
        if (ended) p.Drain();
        auto parsed = TakeResult(p.out_buf);
        bool finished = true;
        if (!parsed.ok()) {
          ::kill(p.pid, SIGKILL);
          p.Reap();
          P2P_RETURN_IF_ERROR(failed(a, "sent a malformed result: " + parsed.status().message()));
        } else if (*parsed) {
          TaskResult& r = **parsed;
          if (!r.error.empty() || r.id != tasks[a.task].id) {
            P2P_RETURN_IF_ERROR(failed(a, r.error.empty() ? "answered another task" : r.error));
          } else if (Status copied = TakeSlotGradient(p, tasks[a.task], r); !copied.ok()) {
            ::kill(p.pid, SIGKILL);
            p.Reap();
            P2P_RETURN_IF_ERROR(failed(a, copied.message()));
          } else {
            stats_.latencies_ms.push_back(MsSince(a.start));
            Bill(a);
            NoteSlotView(p, a.task);
            ledger.Succeeded(a.task, std::move(r));
          }
          Release(std::move(a.proc));
        } else if (ended) {
          P2P_RETURN_IF_ERROR(failed(a, "the function process " + p.Describe()));
        } else if (Clock::now() >= a.deadline) {
          ::kill(p.pid, SIGKILL);
          p.Reap();
          P2P_RETURN_IF_ERROR(failed(
              a, fmt::format("timed out after {} s (--fn-timeout) and was killed", o_.timeout_s)));
        } else {
          finished = false;
        }
        if (finished) {
          running.erase(running.begin() + static_cast<std::ptrdiff_t>(k));
        } else {
          ++k;
        }
      }
    }
    return ledger.TakeResults();
  }

 private:
  struct Attempt {
    size_t task = 0;
    std::unique_ptr<Proc> proc;
    Clock::time_point start, deadline;
  };

  // Puts the task's samples into the process's shared slot (made or grown as needed) and points
  // the task at it; without usable shared memory the task goes through the pipe instead.
  void PrepareSlot(Proc& p, Task& task, TaskLedger& ledger) {
    task.shared = {};
    const auto align = [](uint64_t bytes) { return (bytes + 63) / 64 * 64; };
    const uint64_t x_bytes = sizeof(float) * static_cast<uint64_t>(task.x.size());
    const uint64_t need = align(x_bytes) + align(sizeof(float) * task.num_params);
    // The process's previous result in this call gets its own copy, so the process keeps its
    // slot (already mapped and paged in on both sides). A slot still viewed by a result the
    // caller holds stays with that result; the process then takes a free one.
    if (p.slot && p.slot.use_count() > 1 && p.viewed_in == run_) ledger.DetachFromSlot(p.viewed_by);
    if (p.slot && (p.slot.use_count() > 1 || p.slot->bytes().size() < need)) {
      spare_slots_.push_back(std::move(p.slot));
    }
    if (!p.slot) {
      for (auto& spare : spare_slots_) {
        if (spare.use_count() == 1 && spare->bytes().size() >= need) {
          p.slot = std::move(spare);
          break;
        }
      }
      std::erase(spare_slots_, nullptr);
    }
    if (!p.slot) {
      auto slot = SharedFile::Create(fmt::format("p2ptrain-slot-{}", ++slots_), need);
      if (!slot.ok()) {  // this task through the pipe
        if (!warned_no_slot_) {
          spdlog::warn("offload: no shared slot ({}); such tasks go through pipes",
                       slot.status().message());
        }
        warned_no_slot_ = true;
        return;
      }
      p.slot = std::make_shared<SharedFile>(std::move(*slot));
    }
    std::memcpy(p.slot->bytes().data(), task.x.data(), x_bytes);
    task.shared = {.path = p.slot->path(), .x_offset = 0, .grad_offset = align(x_bytes)};
  }

  // A result whose gradient the function left in the shared slot: the result views the slot
  // and holds it, so the process gets another slot for its next task (PrepareSlot).
  static Status TakeSlotGradient(Proc& p, const Task& task, TaskResult& r) {
    if (task.shared.path.empty() || !r.gradient.empty()) return Status::Ok();
    P2P_ASSIGN_OR_RETURN(auto g, p.slot->Floats(task.shared.grad_offset, task.num_params));
    r.shared_gradient = g;
    r.slot = p.slot;
    return Status::Ok();
  }

  // Kills and reaps every running attempt after a stop request; their slots go back to the spares.
  Status Cancel(std::vector<Attempt>& running) {
    const size_t n = running.size();
    for (auto& a : running) {
      ::kill(a.proc->pid, SIGKILL);
      a.proc->Reap();
      Bill(a);
      if (a.proc->slot) spare_slots_.push_back(std::move(a.proc->slot));
    }
    running.clear();
    return StoppedBySignal(
        fmt::format("while {} function process(es) computed; they were killed", n));
  }

  // Records which task's result views the process's slot (see PrepareSlot).
  void NoteSlotView(Proc& p, size_t task) {
    p.viewed_by = task;
    p.viewed_in = run_;
  }

  Result<Attempt> Start(size_t index, Task& task, TaskLedger& ledger) {
    Attempt a;
    a.task = index;
    a.start = Clock::now();
    a.deadline = a.start + std::chrono::milliseconds(static_cast<int64_t>(o_.timeout_s * 1000));
    if (!idle_.empty()) {
      a.proc = std::move(idle_.back());
      idle_.pop_back();
      ++stats_.warm_starts;
    } else {
      P2P_ASSIGN_OR_RETURN(a.proc, Spawn(o_, argv_, envp_));
      ++stats_.cold_starts;
    }
    PrepareSlot(*a.proc, task, ledger);
    // A write error means the process is already gone; the poll loop reports why.
    (void)WriteTask(*a.proc, EncodeTask(task));
    if (!o_.warm) a.proc->CloseInput();  // cold: one task, then the process exits
    return a;
  }

  // After a successful invocation: keep the process (warm) or let it exit and reap it.
  void Release(std::unique_ptr<Proc> p) {
    if (o_.warm && !p->exited && p->in >= 0) {
      idle_.push_back(std::move(p));
      return;
    }
    p->CloseInput();
    p->Reap();  // a cold function exits right after its result
    // Its slot serves a next process (once no result views it): already sized and paged in.
    if (p->slot) spare_slots_.push_back(std::move(p->slot));
  }

  bool ProcessEnded(Proc& p) {
    pollfd f{p.pidfd, POLLIN, 0};
    if (::poll(&f, 1, 0) <= 0) return false;
    p.Reap();
    return true;
  }

  void Bill(const Attempt& a) {
    const double billed = std::ceil(MsSince(a.start));
    stats_.billed_ms += billed;
    stats_.gb_seconds += billed / 1000.0 * (o_.memory_mb / 1024.0);
  }

  PoolOptions o_;
  std::vector<std::string> env_;
  std::vector<char*> argv_, envp_;
  std::vector<std::unique_ptr<Proc>> idle_;
  PoolStats stats_;
  // Slots not assigned to a process: free, or still viewed by results the caller holds.
  std::vector<std::shared_ptr<SharedFile>> spare_slots_;
  bool warned_no_slot_ = false;
  uint64_t slots_ = 0;
  uint64_t run_ = 0;  // RunAll calls so far
};

}  // namespace

std::unique_ptr<FunctionPool> MakeProcessPool(const PoolOptions& options) {
  return std::make_unique<ProcessPool>(options);
}

WeightedSum::WeightedSum(std::span<float> grad, uint64_t total_samples)
    : mean_(grad, total_samples), size_(grad.size()), total_(total_samples) {}

Status WeightedSum::Add(const TaskResult& r, uint64_t expected_samples) {
  const std::span<const float> g = r.values();
  if (g.size() != size_ || r.samples != expected_samples || total_ == 0) {
    return DataLoss("function result for task {}: {} values for {} samples, expected {} for {}",
                    r.id, g.size(), r.samples, size_, expected_samples);
  }
  loss_sum_ += r.loss_sum;
  mean_.Add(g, r.samples);
  return Status::Ok();
}

Result<double> WeightedMean(const std::vector<TaskResult>& results,
                            const std::vector<uint64_t>& expected_samples, std::span<float> grad) {
  if (results.size() != expected_samples.size() || results.empty()) {
    return InvalidArgument("{} results for {} tasks", results.size(), expected_samples.size());
  }
  uint64_t total = 0;
  for (uint64_t s : expected_samples) total += s;
  WeightedSum sum(grad, total);
  for (size_t i = 0; i < results.size(); ++i) {
    P2P_RETURN_IF_ERROR(sum.Add(results[i], expected_samples[i]));
  }
  return sum.loss_sum();
}

std::future<Result<std::vector<TaskResult>>> FunctionPool::Submit(std::vector<Task> tasks) {
  return std::async(std::launch::async, [this, tasks = std::move(tasks)]() mutable {
    return RunAll(std::move(tasks));
  });
}

Result<std::unique_ptr<FunctionPool>> MakeFunctionPool(const PoolOptions& options) {
  PoolOptions o = options;
  if (o.functions < 1 || o.functions > 1024) {
    return InvalidArgument("--functions {} must be 1..1024", o.functions);
  }
  if (o.memory_mb < 64) return InvalidArgument("--fn-memory {} MB is below 64 MB", o.memory_mb);
  if (!(o.timeout_s > 0)) return InvalidArgument("--fn-timeout must be positive seconds");
  if (o.retries < 0 || o.retries > 100) return InvalidArgument("--fn-retries must be 0..100");
  if (o.command.empty()) {
    char self[4096];
    const ssize_t n = ::readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n <= 0) return IoError("cannot find this executable (/proc/self/exe)");
    // Prefer the small p2ptrain-function next to this executable (fast cold starts); fall back
    // to `<this executable> function`.
    const std::string exe(self, static_cast<size_t>(n));
    const std::string sibling = exe.substr(0, exe.rfind('/') + 1) + "p2ptrain-function";
    o.command = ::access(sibling.c_str(), X_OK) == 0 ? std::vector<std::string>{sibling}
                                                     : std::vector<std::string>{exe, "function"};
  }
  if (o.backend == "process") return MakeProcessPool(o);
  if (o.backend == "amqp") return MakeAmqpPool(o);
  return InvalidArgument("--offload backend '{}' is not available; valid: process, amqp",
                         o.backend);
}

}  // namespace p2p::offload
