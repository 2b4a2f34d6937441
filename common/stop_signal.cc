#include "common/stop_signal.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <thread>

namespace p2p {
namespace {

static_assert(std::atomic<int>::is_always_lock_free, "the signal handler needs a lock-free int");
std::atomic<int> g_signal{0};
int g_pipe[2] = {-1, -1};

void OnStopSignal(int sig) {
  int none = 0;
  if (!g_signal.compare_exchange_strong(none, sig)) {
    // The second request: no more waiting for a safe point.
    ::signal(sig, SIG_DFL);
    ::raise(sig);
    return;
  }
  const int saved = errno;
  const char byte = 1;
  [[maybe_unused]] const ssize_t n = ::write(g_pipe[1], &byte, 1);
  errno = saved;
}

// Runs on its own thread: after a stop request, gives the run `grace` to reach a safe point and
// exit on its own, then ends the process. A normal thread, so it may format and print.
void Watchdog(std::chrono::milliseconds grace) {
  pollfd f{g_pipe[0], POLLIN, 0};
  while (::poll(&f, 1, -1) < 0 && errno == EINTR) {
  }
  const auto until = std::chrono::steady_clock::now() + grace;
  // The process normally exits during this wait; nothing wakes it early on purpose.
  while (std::chrono::steady_clock::now() < until) {
    const auto left =
        std::chrono::ceil<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
    ::poll(nullptr, 0, static_cast<int>(left.count()));
  }
  const int sig = g_signal.load();
  fmt::print(stderr,
             "stopped by {}: no safe point reached within {} ms (blocked in a wait); exiting now. "
             "Function processes die with this process; nothing is left on /dev/shm.\n",
             SignalName(sig), grace.count());
  std::fflush(stderr);
  ::_exit(ExitCodeForSignal(sig));
}

}  // namespace

Status InstallStopSignals(std::chrono::milliseconds grace) {
  static std::mutex mu;
  static bool installed = false;
  std::lock_guard lock(mu);
  if (installed) return Status::Ok();
  if (::pipe2(g_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
    return IoError("cannot create the stop-signal pipe: {}", std::strerror(errno));
  }
  struct sigaction sa {};
  sa.sa_handler = OnStopSignal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;  // other code's reads and writes carry on; poll() still wakes
  for (int sig : {SIGINT, SIGTERM}) {
    if (::sigaction(sig, &sa, nullptr) != 0) {
      return IoError("cannot handle {}: {}", SignalName(sig), std::strerror(errno));
    }
  }
  if (grace.count() > 0) std::thread(Watchdog, grace).detach();
  installed = true;
  return Status::Ok();
}

int StopSignal() { return g_signal.load(std::memory_order_relaxed); }

int StopFd() { return g_pipe[0]; }

std::string SignalName(int sig) {
  const char* abbrev = sigabbrev_np(sig);
  return abbrev != nullptr ? fmt::format("SIG{}", abbrev) : fmt::format("signal {}", sig);
}

Status StoppedBySignal(const std::string& where) {
  return Unavailable("stopped by {} {}", SignalName(StopSignal()), where);
}

void ResetStopSignalForTesting() {
  char buf[64];
  while (g_pipe[0] >= 0 && ::read(g_pipe[0], buf, sizeof(buf)) > 0) {
  }
  g_signal.store(0);
}

}  // namespace p2p
