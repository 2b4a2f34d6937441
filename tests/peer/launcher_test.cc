// RunGroup (peer/launcher.h) with real child processes (/bin/sh scripts), and the json progress
// events it reads (peer/progress.h). Children that must wait for each other meet on FIFOs: nothing
// here sleeps to wait for anything.
#include "peer/launcher.h"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>

#include "peer/progress.h"
#include "tests/support/subprocess.h"

namespace p2p::peer {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using Clock = std::chrono::steady_clock;

std::vector<std::string> Sh(const std::string& script) { return {"/bin/sh", "-c", script}; }

// Collects what RunGroup prints.
struct Captured {
  std::string out, err;
  LaunchOptions options;
  Captured() {
    options.out = [this](std::string_view s) { out.append(s); };
    options.err = [this](std::string_view s) { err.append(s); };
    options.display = LaunchOptions::Display::kLines;
    options.lines_interval = std::chrono::milliseconds(0);  // every progress change
  }
};

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

std::string MakeFifo(const test::TempDir& dir, const std::string& name) {
  const std::string path = dir.File(name);
  EXPECT_EQ(mkfifo(path.c_str(), 0600), 0) << path;
  return path;
}

// True once `pid` no longer exists: ESRCH even for kill(pid, 0) means it was also reaped (a zombie
// still accepts signals).
bool Gone(int pid) { return kill(pid, 0) != 0 && errno == ESRCH; }

double SecondsSince(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

TEST(LauncherTest, OutputIsPrefixedPerRankInWholeLines) {
  Captured c;
  LaunchSpec spec;
  for (int r = 0; r < 3; ++r) {
    spec.argv_per_rank.push_back(
        Sh(fmt::format("i=0; while [ $i -lt 300 ]; do echo line-{0}-$i; i=$((i+1)); done; "
                       "echo warn-{0} >&2; printf no-newline-{0}",
                       r)));
  }
  // A 200 kB line arrives in many reads (pipes hold 64 kB) and must come out whole.
  spec.argv_per_rank.push_back(Sh("head -c 200000 /dev/zero | tr '\\0' x; echo; printf 'a\\nb'"));
  auto result = RunGroup(spec, c.options);
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  ASSERT_EQ(result->ranks.size(), 4u);

  std::map<int, int> next;  // rank -> next expected line number
  const std::regex numbered(R"(\[rank (\d)\] line-(\d)-(\d+))");
  std::vector<std::string> others;
  for (const std::string& line : Lines(c.out)) {
    std::smatch m;
    if (std::regex_match(line, m, numbered)) {
      const int rank = std::stoi(m[1]);
      EXPECT_EQ(m[1], m[2]) << line;
      EXPECT_EQ(std::stoi(m[3]), next[rank]++) << line;
    } else {
      others.push_back(line);
    }
  }
  for (int r = 0; r < 3; ++r) EXPECT_EQ(next[r], 300) << "rank " << r;
  EXPECT_THAT(others, ::testing::UnorderedElementsAre(
                          "[rank 0] no-newline-0", "[rank 1] no-newline-1", "[rank 2] no-newline-2",
                          "[rank 3] " + std::string(200000, 'x'), "[rank 3] a", "[rank 3] b"));
  EXPECT_THAT(Lines(c.err), ::testing::UnorderedElementsAre("[rank 0] warn-0", "[rank 1] warn-1",
                                                            "[rank 2] warn-2"));
}

TEST(LauncherTest, ProgressEventsAreShownAsOneCombinedLineNotPrinted) {
  Captured c;
  LaunchSpec spec;
  for (int r = 0; r < 2; ++r) {
    spec.argv_per_rank.push_back(Sh(fmt::format(
        R"(echo '{{"event":"progress","label":"epoch 1/2","done":{0},"total":4,"status":"loss 0.5"}}'
           echo '{{"event":"progress_end","label":"epoch 1/2","summary":"val_loss 0.4"}}'
           echo 'result {0}')",
        r + 1)));
  }
  auto result = RunGroup(spec, c.options);
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  EXPECT_THAT(c.out + c.err, Not(HasSubstr("\"event\"")));
  EXPECT_THAT(Lines(c.out),
              ::testing::UnorderedElementsAre("[rank 0] result 1", "[rank 1] result 2"));
  EXPECT_THAT(c.err, HasSubstr("[rank 0] epoch 1/2 val_loss 0.4\n"));
  EXPECT_THAT(c.err, HasSubstr("[rank 1] epoch 1/2 val_loss 0.4\n"));
  EXPECT_THAT(c.err, ::testing::ContainsRegex("epoch 1/2  r0 [-0-9%]+ r1 "));
}

TEST(LauncherTest, AFailingRankStopsTheOthersAndIsNamedWithItsLastOutput) {
  test::TempDir dir;
  const std::string fifo0 = MakeFifo(dir, "f0"), fifo2 = MakeFifo(dir, "f2");
  Captured c;
  c.options.grace = std::chrono::seconds(30);  // SIGTERM alone must do it
  LaunchSpec spec;
  spec.argv_per_rank = {Sh("echo $$ > " + fifo0 + "; exec sleep 1000"),
                        // Fails only once the others are up, and tells us their pids.
                        Sh("read p0 < " + fifo0 + "; read p2 < " + fifo2 +
                           "; echo pids $p0 $p2; echo 'boom: disk on fire' >&2; exit 3"),
                        Sh("echo $$ > " + fifo2 + "; exec sleep 1000")};
  const auto start = Clock::now();
  auto result = RunGroup(spec, c.options);
  EXPECT_LT(SecondsSince(start), 20.0);
  ASSERT_FALSE(result.ok());
  const std::string& msg = result.status().message();
  EXPECT_EQ(result.status().code(), StatusCode::kUnavailable);
  EXPECT_THAT(msg, HasSubstr("rank 1 of 3 exited with code 3"));
  EXPECT_THAT(msg, HasSubstr("stopped the 2 other running ranks. Its last output:"));
  EXPECT_THAT(msg, HasSubstr("boom: disk on fire"));
  std::smatch m;
  ASSERT_TRUE(std::regex_search(c.out, m, std::regex(R"(\[rank 1\] pids (\d+) (\d+))"))) << c.out;
  EXPECT_TRUE(Gone(std::stoi(m[1])));
  EXPECT_TRUE(Gone(std::stoi(m[2])));
}

TEST(LauncherTest, ARankThatIgnoresSigtermIsKilledAfterTheGracePeriod) {
  test::TempDir dir;
  const std::string fifo = MakeFifo(dir, "f");
  Captured c;
  c.options.grace = std::chrono::milliseconds(200);
  LaunchSpec spec;
  spec.argv_per_rank = {Sh("trap '' TERM; echo $$ > " + fifo + "; exec sleep 1000"),
                        Sh("read p < " + fifo + "; echo pid $p; exit 1")};
  const auto start = Clock::now();
  auto result = RunGroup(spec, c.options);
  EXPECT_LT(SecondsSince(start), 20.0);
  ASSERT_FALSE(result.ok());
  EXPECT_THAT(result.status().message(), HasSubstr("rank 1 of 2 exited with code 1"));
  std::smatch m;
  ASSERT_TRUE(std::regex_search(c.out, m, std::regex(R"(pid (\d+))"))) << c.out;
  EXPECT_TRUE(Gone(std::stoi(m[1])));
}

TEST(LauncherTest, ARankKilledByASignalIsReportedAsSuch) {
  Captured c;
  LaunchSpec spec;
  spec.argv_per_rank = {Sh("echo last words; kill -KILL $$")};
  auto result = RunGroup(spec, c.options);
  ASSERT_FALSE(result.ok());
  EXPECT_THAT(result.status().message(), HasSubstr("rank 0 of 1 was killed by signal 9 (SIGKILL)"));
  EXPECT_THAT(result.status().message(), HasSubstr("last words"));
}

TEST(LauncherTest, ExitCode2IsAUsageError) {
  Captured c;
  LaunchSpec spec;
  spec.argv_per_rank = {Sh("echo 'unknown model: nope' >&2; exit 2")};
  auto result = RunGroup(spec, c.options);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(result.status().message(), HasSubstr("unknown model: nope"));
}

// --max-restarts: a rank killed by a signal is started again with its restart command line while
// the other ranks keep running; the group succeeds once the restarted rank does.
TEST(LauncherTest, AKilledRankIsRestartedWithItsRestartCommandAndTheGroupSucceeds) {
  test::TempDir dir;
  const std::string fifo = MakeFifo(dir, "f");
  Captured c;
  c.options.max_restarts = 1;
  LaunchSpec spec;
  // Rank 0 waits for the restarted rank 1 (a real rendezvous, not a sleep): it would hang, and
  // the group fail, if rank 1 were not started again.
  spec.argv_per_rank = {Sh("read x < " + fifo + "; echo rank0 heard $x"),
                        Sh("echo first life; kill -KILL $$")};
  spec.restart_argv_per_rank = {Sh("exit 9"), Sh("echo second life; echo back > " + fifo)};
  auto result = RunGroup(spec, c.options);
  ASSERT_TRUE(result.ok()) << result.status().message() << c.err;
  EXPECT_EQ(result->ranks[0].restarts, 0u);
  EXPECT_EQ(result->ranks[1].restarts, 1u);
  EXPECT_EQ(result->ranks[1].exit_code, 0);
  EXPECT_THAT(c.err, HasSubstr("rank 1 of 2 was killed by signal 9 (SIGKILL)"));
  EXPECT_THAT(c.err, HasSubstr("restarting it (restart 1 of 1)"));
  EXPECT_THAT(c.out, HasSubstr("[rank 1] first life"));
  EXPECT_THAT(c.out, HasSubstr("[rank 1] second life"));
  EXPECT_THAT(c.out, HasSubstr("[rank 0] rank0 heard back"));
}

// Restarts run out: the next failure is the group's failure, as without --max-restarts; a usage
// error (exit 2) is never restarted, since the same command line would fail the same way.
TEST(LauncherTest, ARankFailingMoreOftenThanItsRestartsFailsTheGroup) {
  Captured c;
  c.options.max_restarts = 2;
  LaunchSpec spec;
  spec.argv_per_rank = {Sh("echo try; exit 4")};
  auto result = RunGroup(spec, c.options);
  ASSERT_FALSE(result.ok());
  EXPECT_THAT(result.status().message(), HasSubstr("rank 0 of 1 exited with code 4"));
  EXPECT_THAT(c.err, HasSubstr("(restart 2 of 2)"));
  EXPECT_THAT(c.err, Not(HasSubstr("(restart 3 of 2)")));

  Captured usage;
  usage.options.max_restarts = 2;
  spec.argv_per_rank = {Sh("echo 'bad flag' >&2; exit 2")};
  result = RunGroup(spec, usage.options);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(usage.err, Not(HasSubstr("restarting")));
}

TEST(LauncherTest, AProgramThatCannotBeStartedIsReported) {
  Captured c;
  LaunchSpec spec;
  spec.argv_per_rank = {{"/nonexistent/p2ptrain"}};
  auto result = RunGroup(spec, c.options);
  ASSERT_FALSE(result.ok());
  EXPECT_THAT(result.status().message(), HasSubstr("exited with code 127"));
  EXPECT_THAT(result.status().message(), HasSubstr("cannot execute /nonexistent/p2ptrain"));
}

TEST(LauncherTest, AllRanksSucceedingGivesTheirOutcomesAndKeptStdout) {
  Captured c;
  c.options.forward_stdout = false;
  c.options.keep_stdout_lines = 2;
  LaunchSpec spec;
  for (int r = 0; r < 3; ++r) {
    spec.argv_per_rank.push_back(Sh(fmt::format("echo a{0}; echo b{0}; echo final {0}", r)));
  }
  auto result = RunGroup(spec, c.options);
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  EXPECT_EQ(c.out, "");
  ASSERT_EQ(result->ranks.size(), 3u);
  for (int r = 0; r < 3; ++r) {
    const RankOutcome& o = result->ranks[r];
    EXPECT_EQ(o.exit_code, 0);
    EXPECT_EQ(o.signal, 0);
    EXPECT_GT(o.pid, 0);
    EXPECT_TRUE(Gone(o.pid));
    EXPECT_THAT(o.stdout_lines,
                ::testing::ElementsAre(fmt::format("b{}", r), fmt::format("final {}", r)));
    EXPECT_EQ(o.stdout_dropped, 1u);
  }
  EXPECT_GT(result->wall_s, 0.0);
}

TEST(LauncherTest, SigtermToTheLauncherStopsAllRanks) {
  Captured c;
  LaunchSpec spec;
  // Rank 1 plays the user: it signals the launcher (this test process) once it runs.
  spec.argv_per_rank = {Sh("exec sleep 1000"), Sh("kill -TERM $PPID; exec sleep 1000")};
  auto result = RunGroup(spec, c.options);
  ASSERT_FALSE(result.ok());
  EXPECT_THAT(result.status().message(), HasSubstr("interrupted by SIGTERM: stopped all 2 ranks"));
}

// Writes each line RunGroup prints to `fd` (used from a forked launcher).
LaunchOptions WriteTo(int fd) {
  LaunchOptions options;
  options.out = options.err = [fd](std::string_view s) {
    [[maybe_unused]] ssize_t n = write(fd, s.data(), s.size());
  };
  options.display = LaunchOptions::Display::kOff;
  return options;
}

TEST(LauncherTest, RanksDoNotOutliveAKilledLauncher) {
  int pipe_fds[2];
  ASSERT_EQ(pipe(pipe_fds), 0);
  const pid_t launcher = fork();
  ASSERT_GE(launcher, 0);
  if (launcher == 0) {
    close(pipe_fds[0]);
    LaunchSpec spec;
    spec.argv_per_rank = {Sh("echo $$; exec sleep 1000"), Sh("echo $$; exec sleep 1000")};
    auto result = RunGroup(spec, WriteTo(pipe_fds[1]));
    _exit(result.ok() ? 0 : 1);
  }
  close(pipe_fds[1]);
  std::string text;
  char buf[256];
  while (std::count(text.begin(), text.end(), '\n') < 2) {
    pollfd p{pipe_fds[0], POLLIN, 0};
    ASSERT_EQ(poll(&p, 1, 30'000), 1) << "the ranks never printed their pids";
    const ssize_t n = read(pipe_fds[0], buf, sizeof buf);
    ASSERT_GT(n, 0);
    text.append(buf, n);
  }
  close(pipe_fds[0]);
  kill(launcher, SIGKILL);
  waitpid(launcher, nullptr, 0);
  std::smatch m;
  int checked = 0;
  for (auto it = text.cbegin(); std::regex_search(it, text.cend(), m, std::regex(R"(\] (\d+))"));
       it = m.suffix().first) {
    const int pid = std::stoi(m[1]);
    ++checked;
    const int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
    if (pidfd < 0) continue;  // already gone
    pollfd p{pidfd, POLLIN, 0};
    EXPECT_EQ(poll(&p, 1, 30'000), 1) << "rank pid " << pid << " outlived its launcher";
    close(pidfd);
  }
  EXPECT_EQ(checked, 2) << text;
}

TEST(ProgressJsonTest, WritesThrottledEventsAndTheLastOfEachPhaseToStdout) {
  ::testing::internal::CaptureStdout();
  Progress progress(Progress::Mode::kJson);
  progress.Begin("epoch 1/2", 1000);
  for (int i = 1; i <= 1000; ++i) progress.Update(i, fmt::format("loss {}", 1.0 / i));
  progress.End("val_loss 0.4");
  const std::vector<std::string> lines = Lines(::testing::internal::GetCapturedStdout());
  ASSERT_GE(lines.size(), 3u);
  EXPECT_LE(lines.size(), 6u) << "not throttled";
  const auto first = nlohmann::json::parse(lines.front());
  EXPECT_EQ(first["event"], "progress");
  EXPECT_EQ(first["label"], "epoch 1/2");
  EXPECT_EQ(first["done"], 0);
  EXPECT_EQ(first["total"], 1000);
  const auto last_progress = nlohmann::json::parse(lines[lines.size() - 2]);
  EXPECT_EQ(last_progress["done"], 1000);
  EXPECT_EQ(last_progress["status"], "loss 0.001");
  const auto end = nlohmann::json::parse(lines.back());
  EXPECT_EQ(end["event"], "progress_end");
  EXPECT_EQ(end["summary"], "val_loss 0.4");
  for (const std::string& line : lines) EXPECT_TRUE(ParseProgressEvent(line).has_value()) << line;
}

TEST(ProgressJsonTest, ParseProgressEventKeepsOrdinaryLinesOut) {
  const auto e = ParseProgressEvent(
      R"({"event":"progress","label":"epoch 2/3","done":5,"total":10,"status":"loss 0.4"})");
  ASSERT_TRUE(e.has_value());
  EXPECT_FALSE(e->end);
  EXPECT_EQ(e->label, "epoch 2/3");
  EXPECT_EQ(e->done, 5);
  EXPECT_EQ(e->total, 10);
  EXPECT_EQ(e->status, "loss 0.4");
  const auto end = ParseProgressEvent(R"({"event":"progress_end","label":"x","summary":"s"})");
  ASSERT_TRUE(end.has_value());
  EXPECT_TRUE(end->end);
  EXPECT_EQ(end->status, "s");
  for (const char* line : {"final test accuracy: 0.85", "{\"event\":\"progress\"", "{}",
                           R"({"event":"other","label":"x","done":1,"total":2})",
                           R"({"event":"progress","label":"x","done":"1","total":2})", ""}) {
    EXPECT_FALSE(ParseProgressEvent(line).has_value()) << line;
  }
}

TEST(ProgressJsonTest, CombinedLineListsRanksAndAveragesTheStatus) {
  std::vector<std::optional<ProgressEvent>> latest(3);
  latest[0] = ProgressEvent{false, "epoch 1/3", 50, 100, "loss 0.5"};
  latest[1] = ProgressEvent{false, "epoch 1/3", 25, 100, "loss 0.7"};
  EXPECT_EQ(CombineProgress(latest), "epoch 1/3  r0 50% r1 25% r2 -  loss 0.6");
  latest[2] = ProgressEvent{false, "epoch 2/3", 1, 100, "loss 0.1"};
  EXPECT_EQ(CombineProgress(latest), "epoch 1/3  r0 50% r1 25% r2 [epoch 2/3] 1%  loss 0.6");
  latest[1]->status = "warming up";
  EXPECT_EQ(CombineProgress(latest), "epoch 1/3  r0 50% r1 25% r2 [epoch 2/3] 1%  loss 0.5");

  std::vector<std::optional<ProgressEvent>> many(20, ProgressEvent{false, "e", 40, 100, ""});
  many[3]->done = 60;
  many[7].reset();
  EXPECT_EQ(CombineProgress(many), "e  20 ranks 40%..60%, 1 not started");
}

TEST(ProgressJsonTest, ModeNamesAreValidated) {
  EXPECT_EQ(*Progress::ParseModeName("json"), Progress::Mode::kJson);
  EXPECT_EQ(*Progress::ParseModeName("off"), Progress::Mode::kOff);
  const auto bad = Progress::ParseModeName("fancy");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("auto, bar, lines, off, json"));
  EXPECT_THROW(Progress::ParseMode("fancy"), InvariantError);
}

}  // namespace
}  // namespace p2p::peer
