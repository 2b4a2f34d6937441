#include "peer/launcher.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <deque>
#include <optional>
#include <utility>

#include "peer/progress.h"

namespace p2p::peer {
namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kRedrawInterval = std::chrono::milliseconds(100);  // terminal: 10 redraws/s at most
constexpr size_t kReadChunk = 64 * 1024;
constexpr size_t kMaxLineBytes = 1 << 20;  // a longer "line" is passed on in pieces of this size
constexpr size_t kNoRank = static_cast<size_t>(-1);
enum Slot { kOut = 0, kErr = 1, kPidfd = 2 };

// Move-only owner of a file descriptor.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      Reset();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  ~Fd() { Reset(); }
  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  void Reset() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

std::string ErrnoText(std::string_view what) {
  return fmt::format("{}: {}", what, std::strerror(errno));
}

std::string SignalName(int sig) {
  const char* abbrev = sigabbrev_np(sig);
  return abbrev != nullptr ? fmt::format("SIG{}", abbrev) : fmt::format("signal {}", sig);
}

// Cuts a byte stream into whole lines (without '\n'); Finish passes on a last unterminated line.
class LineSplitter {
 public:
  template <typename F>
  void Feed(std::string_view data, F&& on_line) {
    while (!data.empty()) {
      const size_t nl = data.find('\n');
      partial_.append(data.substr(0, nl));
      if (nl == std::string_view::npos) {
        if (partial_.size() >= kMaxLineBytes) Finish(on_line);
        return;
      }
      on_line(partial_);
      partial_.clear();
      data.remove_prefix(nl + 1);
    }
  }
  template <typename F>
  void Finish(F&& on_line) {
    if (!partial_.empty()) on_line(partial_);
    partial_.clear();
  }

 private:
  std::string partial_;
};

// Blocks SIGINT/SIGTERM/SIGHUP in the calling thread and delivers them through a signalfd, for as
// long as the object lives; the previous mask is what children get.
class StopSignals {
 public:
  StopSignals() { pthread_sigmask(SIG_SETMASK, nullptr, &old_mask_); }
  ~StopSignals() {
    if (fd_.valid()) pthread_sigmask(SIG_SETMASK, &old_mask_, nullptr);
  }
  Status Start() {
    sigset_t set;
    sigemptyset(&set);
    for (int sig : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&set, sig);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    fd_ = Fd(signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK));
    if (!fd_.valid()) {
      pthread_sigmask(SIG_SETMASK, &old_mask_, nullptr);
      return IoError("{}", ErrnoText("signalfd"));
    }
    return Status::Ok();
  }
  int fd() const { return fd_.get(); }
  // The signal received, or 0.
  int Read() {
    signalfd_siginfo info{};
    return read(fd_.get(), &info, sizeof info) == sizeof info ? static_cast<int>(info.ssi_signo)
                                                              : 0;
  }
  const sigset_t& old_mask() const { return old_mask_; }

 private:
  sigset_t old_mask_;
  Fd fd_;
};

// What a forked child needs, prepared before fork(): after it only async-signal-safe calls.
struct ExecPlan {
  std::vector<std::string> argv;
  std::vector<char*> argv_ptrs;
  std::string exec_error;  // written to the child's stderr if exec fails
  bool search_path = false;
};

// argv_ptrs point into argv's strings, which stay put when the plan (and so the vector) moves.
ExecPlan MakeExecPlan(std::vector<std::string> argv) {
  ExecPlan plan;
  plan.argv = std::move(argv);
  for (auto& a : plan.argv) plan.argv_ptrs.push_back(a.data());
  plan.argv_ptrs.push_back(nullptr);
  plan.search_path = plan.argv[0].find('/') == std::string::npos;
  plan.exec_error = fmt::format("cannot execute {}: ", plan.argv[0]);
  return plan;
}

[[noreturn]] void ExecChild(const ExecPlan& plan, pid_t parent, const sigset_t& mask, int in,
                            int out, int err) {
  setpgid(0, 0);  // Ctrl-C on the terminal reaches the launcher only; it stops the ranks in order
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  if (getppid() != parent) _exit(127);  // the launcher died before prctl took effect
  dup2(in, STDIN_FILENO);
  dup2(out, STDOUT_FILENO);
  dup2(err, STDERR_FILENO);
  signal(SIGPIPE, SIG_DFL);
  sigprocmask(SIG_SETMASK, &mask, nullptr);
  if (plan.search_path) {
    execvp(plan.argv_ptrs[0], plan.argv_ptrs.data());
  } else {
    execv(plan.argv_ptrs[0], plan.argv_ptrs.data());
  }
  const char* reason = std::strerror(errno);
  [[maybe_unused]] ssize_t n = write(STDERR_FILENO, plan.exec_error.data(), plan.exec_error.size());
  n = write(STDERR_FILENO, reason, std::strlen(reason));
  n = write(STDERR_FILENO, "\n", 1);
  _exit(127);
}

struct Rank {
  int pid = -1;
  Fd pidfd;
  Fd pipes[2];  // read ends of stdout, stderr
  LineSplitter lines[2];
  bool reaped = true;  // until started
  Clock::time_point start;
  std::deque<std::string> tail;  // the last output lines, for the error message
  std::optional<ProgressEvent> progress;
  RankOutcome outcome;
};

// One run of RunGroup: the children, the poll loop and the display.
class Group {
 public:
  Group(const LaunchOptions& options, size_t size);
  Result<LaunchResult> Run(const LaunchSpec& spec);

 private:
  Status Start(size_t r, const std::vector<std::string>& argv);
  void PollSet(std::vector<pollfd>& fds, std::vector<std::pair<size_t, Slot>>& owner) const;
  Status Loop();
  int PollTimeoutMs() const;
  void OnReadable(size_t r, Slot slot);
  void OnLine(size_t r, Slot slot, const std::string& line);
  void OnProgress(size_t r, ProgressEvent event);
  void Reap(size_t r);
  void Drain(size_t r);
  void OnSignal();
  void BeginStop();
  void SignalAll(int sig);
  bool Running() const;
  void Emit(Slot slot, const std::string& line);
  Clock::time_point NextDraw() const;
  void MaybeRedraw();
  void ClearProgress();
  Status FailureStatus(size_t r) const;
  // Starts failed rank `r` again if it has restarts left; false if not (or if starting failed).
  bool MaybeRestart(size_t r);

  LaunchOptions options_;
  LaunchOptions::Display display_;
  std::vector<Rank> ranks_;
  const LaunchSpec* spec_ = nullptr;  // during Run
  StopSignals signals_;
  Clock::time_point start_;
  std::optional<size_t> failed_;  // the first rank seen failing (beyond the tolerated ones)
  size_t tolerated_ = 0;
  int interrupted_by_ = 0;
  bool stopping_ = false, killed_ = false;
  size_t stopped_others_ = 0;  // ranks still running when the stop began
  Clock::time_point kill_at_;
  bool progress_dirty_ = false, progress_shown_ = false;
  Clock::time_point last_draw_;
};

std::function<void(std::string_view)> WriterTo(std::FILE* f) {
  return [f](std::string_view s) {
    std::fwrite(s.data(), 1, s.size(), f);
    std::fflush(f);
  };
}

Group::Group(const LaunchOptions& options, size_t size) : options_(options), ranks_(size) {
  display_ = options_.display;
  if (display_ == LaunchOptions::Display::kAuto) {
    display_ = !options_.err && isatty(STDERR_FILENO) ? LaunchOptions::Display::kTerminal
                                                      : LaunchOptions::Display::kLines;
  }
  if (!options_.out) options_.out = WriterTo(stdout);
  if (!options_.err) options_.err = WriterTo(stderr);
  start_ = last_draw_ = Clock::now();
}

Status Group::Start(size_t r, const std::vector<std::string>& argv) {
  if (argv.empty() || argv[0].empty()) return InvalidArgument("rank {}: empty command line", r);
  const ExecPlan plan = MakeExecPlan(argv);
  int out[2], err[2];
  if (pipe2(out, O_CLOEXEC) != 0) return IoError("{}", ErrnoText("pipe"));
  Fd out_read(out[0]), out_write(out[1]);
  if (pipe2(err, O_CLOEXEC) != 0) return IoError("{}", ErrnoText("pipe"));
  Fd err_read(err[0]), err_write(err[1]);
  Fd devnull(open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (!devnull.valid()) return IoError("{}", ErrnoText("/dev/null"));
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) return IoError("{}", ErrnoText("fork"));
  if (pid == 0) {
    ExecChild(plan, parent, signals_.old_mask(), devnull.get(), out_write.get(), err_write.get());
  }
  setpgid(pid, pid);  // also here, so the group exists before we might signal it
  Rank& rank = ranks_[r];
  rank.pid = rank.outcome.pid = pid;
  rank.reaped = false;
  rank.start = Clock::now();
  rank.pipes[kOut] = std::move(out_read);
  rank.pipes[kErr] = std::move(err_read);
  for (Fd& fd : rank.pipes) fcntl(fd.get(), F_SETFL, fcntl(fd.get(), F_GETFL) | O_NONBLOCK);
  rank.pidfd = Fd(static_cast<int>(syscall(SYS_pidfd_open, pid, 0)));
  if (!rank.pidfd.valid()) {
    const Status status = IoError("{}", ErrnoText("pidfd_open"));
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    rank.reaped = true;
    return status;
  }
  return Status::Ok();
}

bool Group::Running() const {
  for (const Rank& rank : ranks_) {
    if (!rank.reaped) return true;
  }
  return false;
}

// One pollfd per open pipe and per unreaped child (its pidfd), and the signalfd; `owner` says
// whose each is. A child's pidfd comes after its pipes, so its last output is read before Reap.
void Group::PollSet(std::vector<pollfd>& fds, std::vector<std::pair<size_t, Slot>>& owner) const {
  fds.clear();
  owner.clear();
  if (signals_.fd() >= 0) {
    fds.push_back({signals_.fd(), POLLIN, 0});
    owner.push_back({kNoRank, kPidfd});
  }
  for (size_t r = 0; r < ranks_.size(); ++r) {
    if (ranks_[r].reaped) continue;
    for (Slot s : {kOut, kErr}) {
      if (ranks_[r].pipes[s].valid()) {
        fds.push_back({ranks_[r].pipes[s].get(), POLLIN, 0});
        owner.push_back({r, s});
      }
    }
    fds.push_back({ranks_[r].pidfd.get(), POLLIN, 0});
    owner.push_back({r, kPidfd});
  }
}

// The poll loop. It blocks until output, an exit or a signal arrives, or until the next progress
// redraw or SIGKILL escalation is due; it ends when every rank is reaped.
Status Group::Loop() {
  std::vector<pollfd> fds;
  std::vector<std::pair<size_t, Slot>> owner;
  while (Running()) {
    PollSet(fds, owner);
    if (poll(fds.data(), fds.size(), PollTimeoutMs()) < 0) {
      if (errno == EINTR) continue;
      const Status status = IoError("{}", ErrnoText("poll"));
      SignalAll(SIGKILL);
      for (Rank& rank : ranks_) {
        if (!rank.reaped) waitpid(rank.pid, nullptr, 0);
        rank.reaped = true;
      }
      return status;
    }
    for (size_t i = 0; i < fds.size(); ++i) {
      if (fds[i].revents == 0) continue;
      const auto [r, slot] = owner[i];
      if (r == kNoRank) {
        OnSignal();
      } else if (slot == kPidfd) {
        Reap(r);
      } else {
        OnReadable(r, slot);
      }
    }
    if (stopping_ && !killed_ && Clock::now() >= kill_at_) {
      SignalAll(SIGKILL);
      killed_ = true;
    }
    MaybeRedraw();
  }
  return Status::Ok();
}

int Group::PollTimeoutMs() const {
  const auto now = Clock::now();
  std::optional<Clock::time_point> due;
  if (stopping_ && !killed_) due = kill_at_;
  if (progress_dirty_ && display_ != LaunchOptions::Display::kOff) {
    due = due ? std::min(*due, NextDraw()) : NextDraw();
  }
  if (!due) return -1;
  const auto ms = std::chrono::ceil<std::chrono::milliseconds>(*due - now).count();
  return static_cast<int>(std::clamp<int64_t>(ms, 0, 60'000));
}

void Group::OnReadable(size_t r, Slot slot) {
  Rank& rank = ranks_[r];
  char buf[kReadChunk];
  const ssize_t n = read(rank.pipes[slot].get(), buf, sizeof buf);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
  if (n > 0) {
    rank.lines[slot].Feed(std::string_view(buf, n),
                          [&](const std::string& line) { OnLine(r, slot, line); });
    return;
  }
  rank.lines[slot].Finish([&](const std::string& line) { OnLine(r, slot, line); });
  rank.pipes[slot].Reset();
}

void Group::OnLine(size_t r, Slot slot, const std::string& line) {
  if (slot == kOut) {
    if (auto event = ParseProgressEvent(line)) return OnProgress(r, std::move(*event));
  }
  Rank& rank = ranks_[r];
  rank.tail.push_back(line);
  if (rank.tail.size() > options_.tail_lines) rank.tail.pop_front();
  if (slot == kOut && !options_.forward_stdout) {
    auto& kept = rank.outcome.stdout_lines;
    kept.push_back(line);
    if (kept.size() > options_.keep_stdout_lines) {
      kept.erase(kept.begin());
      ++rank.outcome.stdout_dropped;
    }
    return;
  }
  Emit(slot, fmt::format("[rank {}] {}", r, line));
}

void Group::OnProgress(size_t r, ProgressEvent event) {
  Rank& rank = ranks_[r];
  if (event.end) {
    // Shown like Progress's own end-of-phase line: "epoch 1/3 loss 0.41 ...".
    const std::string line = fmt::format("{} {}", event.label, event.status);
    rank.tail.push_back(line);
    if (rank.tail.size() > options_.tail_lines) rank.tail.pop_front();
    Emit(kErr, fmt::format("[rank {}] {}", r, line));
    if (rank.progress && rank.progress->label == event.label) {
      event.done = event.total = rank.progress->total;
    }
  }
  rank.progress = std::move(event);
  progress_dirty_ = true;
}

void Group::Reap(size_t r) {
  Rank& rank = ranks_[r];
  int status = 0;
  const pid_t got = waitpid(rank.pid, &status, WNOHANG);
  if (got == 0) return;  // not exited after all
  rank.reaped = true;
  rank.outcome.wall_s = std::chrono::duration<double>(Clock::now() - rank.start).count();
  Drain(r);
  rank.pidfd.Reset();
  if (got > 0 && WIFEXITED(status)) rank.outcome.exit_code = WEXITSTATUS(status);
  if (got > 0 && WIFSIGNALED(status)) rank.outcome.signal = WTERMSIG(status);
  const bool ok = rank.outcome.signal == 0 && rank.outcome.exit_code == 0;
  if (ok || stopping_) return;
  const bool usage = rank.outcome.signal == 0 && rank.outcome.exit_code == options_.usage_exit_code;
  if (!usage && MaybeRestart(r)) return;
  if (!usage && tolerated_ < options_.tolerated_failures) {
    ++tolerated_;
    Emit(kErr,
         fmt::format("launch: {}; the other ranks go on without it", FailureStatus(r).message()));
    return;
  }
  failed_ = r;
  BeginStop();
}

bool Group::MaybeRestart(size_t r) {
  Rank& rank = ranks_[r];
  if (rank.outcome.restarts >= options_.max_restarts) return false;
  const size_t restarts = rank.outcome.restarts + 1;
  Emit(kErr, fmt::format("launch: {}; restarting it (restart {} of {})", FailureStatus(r).message(),
                         restarts, options_.max_restarts));
  const auto& argv = r < spec_->restart_argv_per_rank.size() ? spec_->restart_argv_per_rank[r]
                                                             : spec_->argv_per_rank[r];
  // A fresh rank: no output, progress or outcome of the process that died carries over.
  Rank fresh;
  fresh.outcome.restarts = restarts;
  rank = std::move(fresh);
  if (Status s = Start(r, argv); !s.ok()) {
    Emit(kErr, fmt::format("launch: restarting rank {} failed: {}", r, s.message()));
    rank.outcome.exit_code = 127;
    return false;
  }
  return true;
}

// Everything the child wrote before it exited is in its pipes; a grandchild that still holds them
// open is not waited for.
void Group::Drain(size_t r) {
  Rank& rank = ranks_[r];
  char buf[kReadChunk];
  for (Slot slot : {kOut, kErr}) {
    auto on_line = [&](const std::string& line) { OnLine(r, slot, line); };
    while (rank.pipes[slot].valid()) {
      const ssize_t n = read(rank.pipes[slot].get(), buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n > 0) {
        rank.lines[slot].Feed(std::string_view(buf, n), on_line);
        continue;
      }
      rank.lines[slot].Finish(on_line);
      rank.pipes[slot].Reset();
    }
  }
}

void Group::OnSignal() {
  const int sig = signals_.Read();
  if (sig == 0) return;
  if (!stopping_) {
    interrupted_by_ = sig;
    BeginStop();
  } else if (!killed_) {  // a second Ctrl-C: no more grace
    SignalAll(SIGKILL);
    killed_ = true;
  }
}

void Group::BeginStop() {
  stopping_ = true;
  kill_at_ = Clock::now() + options_.grace;
  for (const Rank& rank : ranks_) stopped_others_ += rank.reaped ? 0 : 1;
  SignalAll(SIGTERM);
}

// Signals each running rank's process group (the rank and anything it started). An unreaped
// child's pid cannot be reused, so this never hits a stranger.
void Group::SignalAll(int sig) {
  for (const Rank& rank : ranks_) {
    if (rank.reaped) continue;
    if (kill(-rank.pid, sig) != 0) kill(rank.pid, sig);
  }
}

void Group::Emit(Slot slot, const std::string& line) {
  if (progress_shown_) ClearProgress();
  (slot == kOut ? options_.out : options_.err)(line + "\n");
}

Clock::time_point Group::NextDraw() const {
  return last_draw_ + (display_ == LaunchOptions::Display::kTerminal
                           ? std::chrono::duration_cast<Clock::duration>(kRedrawInterval)
                           : std::chrono::duration_cast<Clock::duration>(options_.lines_interval));
}

size_t TerminalColumns() {
  winsize ws{};
  if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 1) return ws.ws_col;
  return 120;
}

void Group::MaybeRedraw() {
  if (!progress_dirty_ || display_ == LaunchOptions::Display::kOff) return;
  const auto now = Clock::now();
  if (now < NextDraw()) return;
  std::vector<std::optional<ProgressEvent>> latest;
  for (const Rank& rank : ranks_) latest.push_back(rank.progress);
  std::string line = CombineProgress(latest);
  if (display_ == LaunchOptions::Display::kTerminal) {
    // Wider than the terminal would wrap, and '\r' would then redraw only the last row.
    line.resize(std::min(line.size(), TerminalColumns() - 1));
    options_.err("\r" + line + "\x1b[K");
    progress_shown_ = true;
  } else {
    options_.err(line + "\n");
  }
  progress_dirty_ = false;
  last_draw_ = now;
}

void Group::ClearProgress() {
  options_.err("\r\x1b[K");
  progress_shown_ = false;
  progress_dirty_ = true;  // redrawn below the line just printed
}

Status Group::FailureStatus(size_t r) const {
  const RankOutcome& o = ranks_[r].outcome;
  std::string msg = fmt::format("rank {} of {} ", r, ranks_.size());
  msg += o.signal != 0 ? fmt::format("was killed by signal {} ({})", o.signal, SignalName(o.signal))
                       : fmt::format("exited with code {}", o.exit_code);
  if (stopped_others_ > 0) {
    msg += fmt::format("; stopped the {} other running rank{}", stopped_others_,
                       stopped_others_ > 1 ? "s" : "");
  }
  const auto& tail = ranks_[r].tail;
  msg += tail.empty() ? ". It printed nothing." : ". Its last output:";
  for (const std::string& line : tail) msg += "\n  " + line;
  const bool usage = o.signal == 0 && o.exit_code == options_.usage_exit_code;
  return Status(usage ? StatusCode::kInvalidArgument : StatusCode::kUnavailable, msg);
}

Result<LaunchResult> Group::Run(const LaunchSpec& spec) {
  if (options_.handle_signals) P2P_RETURN_IF_ERROR(signals_.Start());
  spec_ = &spec;
  Status started;
  for (size_t r = 0; r < ranks_.size() && started.ok(); ++r) {
    started = Start(r, spec.argv_per_rank[r]);
  }
  if (!started.ok()) BeginStop();
  const Status looped = Loop();
  if (progress_shown_) options_.err("\r\x1b[K");
  if (!started.ok()) return started.Annotate("starting the ranks");
  if (!looped.ok()) return looped;
  if (failed_) return FailureStatus(*failed_);
  if (interrupted_by_ != 0) {
    return Unavailable("interrupted by {}: stopped all {} ranks", SignalName(interrupted_by_),
                       ranks_.size());
  }
  LaunchResult result;
  result.wall_s = std::chrono::duration<double>(Clock::now() - start_).count();
  for (Rank& rank : ranks_) result.ranks.push_back(std::move(rank.outcome));
  return result;
}

}  // namespace

Result<LaunchResult> RunGroup(const LaunchSpec& spec, const LaunchOptions& options) {
  if (spec.argv_per_rank.empty()) return InvalidArgument("no ranks to launch");
  Group group(options, spec.argv_per_rank.size());
  return group.Run(spec);
}

}  // namespace p2p::peer
