// Supervision of a group of local child processes as one job (what `p2ptrain launch` runs): start
// every rank, prefix its output with "[rank r] ", show one combined progress line, and if any rank
// fails stop the others and report the first failure with its last output lines. Knows nothing
// about training; the only protocol it reads is Progress's json events (peer/progress.h).
//
// Processes: each rank is fork/exec'd in its own process group (so Ctrl-C reaches only the
// launcher, which then stops the group in order, and a rank's own children are signalled with it),
// with stdin /dev/null, stdout and stderr each into a pipe, and PR_SET_PDEATHSIG(SIGTERM) so no
// rank outlives a killed launcher. One poll() loop waits on all pipes, one pidfd per rank and a
// signalfd; it times out only to redraw progress or to escalate SIGTERM to SIGKILL.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace p2p::peer {

struct LaunchSpec {
  // Rank r runs argv_per_rank[r]; argv[0] is a path, or a name looked up on PATH.
  std::vector<std::vector<std::string>> argv_per_rank;
  // What a restarted rank runs (LaunchOptions::max_restarts); empty: argv_per_rank again. A peer
  // restarted into a running run must ask to join it (`p2ptrain peer --join`), not start it.
  std::vector<std::vector<std::string>> restart_argv_per_rank;
};

struct LaunchOptions {
  // Where prefixed output goes, one call per whole line (with its '\n') or per progress redraw.
  // Defaults: the launcher's stdout and stderr.
  std::function<void(std::string_view)> out, err;
  // kTerminal redraws the combined progress line in place with '\r' (at most 10 times a second);
  // kLines prints it as an ordinary line at most once per `lines_interval`; kAuto picks kTerminal
  // when stderr is a TTY and the default `err` sink is used.
  enum class Display { kAuto, kTerminal, kLines, kOff };
  Display display = Display::kAuto;
  std::chrono::milliseconds lines_interval{10'000};
  // After the first failure (or a signal) the others get SIGTERM, then SIGKILL after `grace`.
  std::chrono::milliseconds grace{5'000};
  // Ranks that may fail while the others run on (peers that survive failures, --on-failure
  // continue): only the failure after these stops the group. A usage error is never tolerated.
  // Tolerated failures are in the result (RankOutcome), not an error.
  size_t tolerated_failures = 0;
  // How many times each rank that fails (a signal, or an exit code other than 0 and
  // usage_exit_code) is started again, torchrun's --max-restarts, before its failure counts
  // (tolerated or fatal). A restart is announced on `err` with the failure it follows.
  size_t max_restarts = 0;
  // false: ordinary stdout lines are not printed but kept in RankOutcome::stdout_lines (a
  // launcher prints them at the end, in rank order). Progress events are never printed.
  bool forward_stdout = true;
  size_t keep_stdout_lines = 100;
  // Lines of a failing rank's output (stdout and stderr, in arrival order) quoted in the error.
  size_t tail_lines = 8;
  // A rank exiting with this code failed on its invocation: the error is then kInvalidArgument
  // (p2ptrain's usage-error exit code). Any other failure is kUnavailable.
  int usage_exit_code = 2;
  // SIGINT, SIGTERM and SIGHUP stop the group (a second one kills it at once) and RunGroup returns
  // an error naming the signal. They are blocked in the calling thread while RunGroup runs (read
  // through a signalfd); other threads of the process should block them too.
  bool handle_signals = true;
};

struct RankOutcome {
  int pid = -1;
  int exit_code = -1;                     // -1 if a signal ended it
  int signal = 0;                         // the signal that ended it, 0 if it exited
  double wall_s = 0;                      // from the last start to exit
  size_t restarts = 0;                    // how often the rank was started again
  std::vector<std::string> stdout_lines;  // the last keep_stdout_lines unprinted stdout lines
  size_t stdout_dropped = 0;              // earlier ones that did not fit
};

struct LaunchResult {
  std::vector<RankOutcome> ranks;
  double wall_s = 0;
};

// Runs every rank to completion and returns their outcomes if all exited 0. Otherwise returns an
// error naming the first rank seen failing (exit code or signal) with its last output lines, after
// every other rank has been stopped and reaped. Blocks until all ranks are reaped.
Result<LaunchResult> RunGroup(const LaunchSpec& spec, const LaunchOptions& options = {});

}  // namespace p2p::peer
