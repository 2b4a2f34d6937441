// Interrupted runs: real `p2ptrain train` / `peer` processes offloading to real function
// processes get a real SIGTERM, SIGINT or SIGKILL in the middle of training. Afterwards no shared
// memory of the run may be left with a name on a file system (/dev/shm), its function processes
// must be gone, and a TERM/INT stop must be a prompt, clean exit (128 + signo) that says why.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "tests/support/file_watch.h"
#include "tests/support/subprocess.h"

namespace p2p {
namespace {

using namespace std::chrono_literals;

// What process `pid` has mapped or open that belongs to an offload run: "/dev/shm/p2ptrain-..."
// paths (a named shared file) or "/memfd:p2ptrain-..." (an anonymous one).
std::set<std::string> SharedMemoryOf(int pid) {
  std::set<std::string> found;
  auto note = [&](std::string path) {
    if (const auto cut = path.find(" (deleted)"); cut != std::string::npos) path.resize(cut);
    if (path.find("p2ptrain-") != std::string::npos &&
        (path.starts_with("/dev/shm/") || path.starts_with("/memfd:"))) {
      found.insert(path);
    }
  };
  std::ifstream maps(fmt::format("/proc/{}/maps", pid));
  for (std::string line; std::getline(maps, line);) {
    if (const auto slash = line.find('/'); slash != std::string::npos) note(line.substr(slash));
  }
  std::error_code ec;
  for (const auto& fd : std::filesystem::directory_iterator(fmt::format("/proc/{}/fd", pid), ec)) {
    note(std::filesystem::read_symlink(fd.path(), ec).string());
  }
  return found;
}

// The children of `pid`: a training run's function processes, launch's peers.
std::vector<int> ChildPids(int pid) {
  std::vector<int> pids;
  std::error_code ec;
  for (const auto& task :
       std::filesystem::directory_iterator(fmt::format("/proc/{}/task", pid), ec)) {
    std::ifstream in(task.path() / "children");
    for (int child; in >> child;) pids.push_back(child);
  }
  return pids;
}

// Each as a pidfd, so that their exit can be waited for without being fooled by pid reuse.
std::vector<int> Pidfds(const std::vector<int>& pids) {
  std::vector<int> fds;
  for (int pid : pids) {
    const int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
    if (fd >= 0) fds.push_back(fd);
  }
  return fds;
}

// Whether the process behind `pidfd` has exited by the deadline (blocking on the pidfd).
bool ExitsWithin(int pidfd, std::chrono::milliseconds timeout) {
  pollfd f{pidfd, POLLIN, 0};
  const bool exited = ::poll(&f, 1, static_cast<int>(timeout.count())) == 1;
  ::close(pidfd);
  return exited;
}

// An offloaded mlp run that trains until it is stopped, with function processes that live across
// epochs (--fn-warm).
std::vector<std::string> TrainingFlags() {
  return {"--dataset",
          "synthetic",
          "--synthetic-train",
          "2000",
          "--model",
          "mlp",
          "--hidden",
          "64",
          "--epochs",
          "100000",
          "--no-early-stopping",
          "--threads",
          "1",
          "--offload",
          "process",
          "--functions",
          "2",
          "--fn-warm"};
}

std::vector<std::string> OffloadedRun(const std::string& command, const test::TempDir& dir) {
  std::vector<std::string> argv = {test::P2ptrainBin(), command};
  if (command == "peer") argv.insert(argv.end(), {"--size", "1", "--rank", "0", "--insecure"});
  const auto flags = TrainingFlags();
  argv.insert(argv.end(), flags.begin(), flags.end());
  argv.insert(argv.end(), {"--progress", "off", "--metrics", dir.File("m.jsonl"),
                           "--checkpoint-dir", dir.File("ckpt")});
  return argv;
}

struct Case {
  std::string command;
  int sig;
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.command << " signal " << c.sig; }

class Interrupted : public ::testing::TestWithParam<Case> {};

TEST_P(Interrupted, LeavesNoSharedMemoryNoFunctionsAndExitsCleanly) {
  const auto [command, sig] = GetParam();
  test::TempDir dir;
  test::Child run(OffloadedRun(command, dir));
  // An epoch done: the parameters and slots are shared with function processes by now.
  ASSERT_TRUE(test::WaitForLines(dir.File("m.jsonl"), 1, 3min)) << test::ReadFile(run.err_path());
  const std::set<std::string> shared = SharedMemoryOf(run.pid());
  const std::vector<int> functions = Pidfds(ChildPids(run.pid()));
  ASSERT_FALSE(shared.empty()) << "the run holds no p2ptrain shared memory: nothing was tested";
  ASSERT_FALSE(functions.empty()) << "the run has no function processes: nothing was tested";

  run.Kill(sig);
  const test::ProcessResult result = run.Wait(2min);
  ASSERT_FALSE(result.timed_out) << result.err;
  if (sig == SIGKILL) {
    EXPECT_EQ(result.signal, SIGKILL);
  } else {
    EXPECT_EQ(result.exit_code, 128 + sig) << result.err;
    const std::string why = sig == SIGTERM ? "stopped by SIGTERM" : "stopped by SIGINT";
    EXPECT_NE(result.err.find(why), std::string::npos) << result.err;
    EXPECT_NE(result.err.find("continue with --resume"), std::string::npos) << result.err;
    EXPECT_EQ(result.err.find("critical"), std::string::npos) << result.err;
  }
  // Nothing the run shared has a name that could outlive it: each piece was anonymous (memfd),
  // or its /dev/shm file is gone with the run.
  for (const auto& path : shared) {
    SCOPED_TRACE(path);
    if (path.starts_with("/memfd:")) continue;
    EXPECT_FALSE(std::filesystem::exists(path));
    EXPECT_FALSE(std::filesystem::exists(std::filesystem::path(path).parent_path()));
  }
  for (int pidfd : functions)
    EXPECT_TRUE(ExitsWithin(pidfd, 1min)) << "a function outlived its run";
}

// `launch` stopped by SIGTERM stops its peers with SIGTERM (their process groups, function
// processes included): every peer stops cleanly and leaves nothing behind.
TEST(LaunchInterrupted, PeersStopCleanlyAndLeaveNoSharedMemoryNoFunctions) {
  test::TempDir dir;
  std::vector<std::string> argv = {
      test::P2ptrainBin(), "launch",        "--size",      "2", "--run-id",
      "stopped",           "--metrics-dir", dir.File("m"), "--"};
  const auto flags = TrainingFlags();
  argv.insert(argv.end(), flags.begin(), flags.end());
  std::filesystem::create_directories(dir.File("m"));  // watched before launch writes into it
  test::Child launch(argv);
  for (int rank = 0; rank < 2; ++rank) {
    ASSERT_TRUE(test::WaitForLines(dir.File(fmt::format("m/rank-{}.jsonl", rank)), 1, 3min))
        << test::ReadFile(launch.err_path());
  }
  std::set<std::string> shared;
  std::vector<int> processes;  // the peers and their function processes
  for (int peer : ChildPids(launch.pid())) {
    const auto mine = SharedMemoryOf(peer);
    shared.insert(mine.begin(), mine.end());
    const auto functions = Pidfds(ChildPids(peer));
    processes.insert(processes.end(), functions.begin(), functions.end());
    const auto peer_fd = Pidfds({peer});
    processes.insert(processes.end(), peer_fd.begin(), peer_fd.end());
  }
  ASSERT_FALSE(shared.empty()) << "the peers hold no p2ptrain shared memory: nothing was tested";
  ASSERT_GE(processes.size(), 4u) << "expected 2 peers with function processes";

  launch.Kill(SIGTERM);
  const test::ProcessResult result = launch.Wait(2min);
  ASSERT_FALSE(result.timed_out) << result.err;
  EXPECT_NE(result.exit_code, 0) << result.err;
  for (int rank = 0; rank < 2; ++rank) {  // each peer says it stopped on the signal
    bool said = false;
    std::istringstream lines(result.err);
    for (std::string line; std::getline(lines, line);) {
      said |= line.find(fmt::format("[rank {}]", rank)) != std::string::npos &&
              line.find("stopped by SIGTERM") != std::string::npos;
    }
    EXPECT_TRUE(said) << "rank " << rank << ":\n" << result.err;
  }
  EXPECT_EQ(result.err.find("killed by signal"), std::string::npos)
      << "a peer did not stop on SIGTERM: " << result.err;
  for (const auto& path : shared) {
    SCOPED_TRACE(path);
    if (path.starts_with("/memfd:")) continue;
    EXPECT_FALSE(std::filesystem::exists(path));
  }
  for (int pidfd : processes) EXPECT_TRUE(ExitsWithin(pidfd, 1min)) << "a process outlived launch";
}

// A peer blocked in a wait that knows nothing of signals (connecting to a peer that never comes,
// with a 10-minute --peer-timeout) still stops on SIGTERM: after the grace period the watchdog
// ends it with the same exit code and says why.
TEST(BlockedPeerInterrupted, ExitsWithTheSignalsCodeAfterTheGracePeriod) {
  test::TempDir dir;
  test::Child peer({test::P2ptrainBin(), "peer", "--size", "2", "--rank", "0", "--insecure",
                    "--peers",
                    fmt::format("ipc://{}/r0.sock,ipc://{}/r1.sock", dir.path(), dir.path()),
                    "--peer-timeout", "600", "--dataset", "synthetic", "--model", "logreg",
                    "--progress", "off", "--threads", "1"});
  // Its handlers are installed before this line is logged; then it waits for rank 1.
  ASSERT_TRUE(test::WaitForFile(
      peer.err_path(),
      [&] { return test::ReadFile(peer.err_path()).find("peer 0 of 2") != std::string::npos; },
      2min));
  peer.Kill(SIGTERM);
  const test::ProcessResult result = peer.Wait(2min);
  ASSERT_FALSE(result.timed_out) << result.err;
  EXPECT_EQ(result.exit_code, 128 + SIGTERM) << result.err;
  EXPECT_NE(result.err.find("stopped by SIGTERM: no safe point reached"), std::string::npos)
      << result.err;
}

INSTANTIATE_TEST_SUITE_P(Signals, Interrupted,
                         ::testing::Values(Case{"train", SIGTERM}, Case{"train", SIGINT},
                                           Case{"train", SIGKILL}, Case{"peer", SIGTERM},
                                           Case{"peer", SIGKILL}),
                         [](const auto& info) {
                           return info.param.command + "_" + std::to_string(info.param.sig);
                         });

}  // namespace
}  // namespace p2p
