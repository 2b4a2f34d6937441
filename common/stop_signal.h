// Stopping a run on SIGINT/SIGTERM at a safe point instead of dying mid-step.
//
// The handler only records the signal in a lock-free atomic and writes one byte to a self-pipe
// (both async-signal-safe). Loops check StopSignal() between steps; code that blocks (a poll loop
// waiting for function processes) adds StopFd() to its poll set and never reads it, so it stays
// readable for every waiter once a stop was requested. A second SIGINT/SIGTERM restores the
// default action and re-raises it: the process dies at once. If no safe point is reached within
// the grace period (a wait inside a transport that knows nothing of this), a watchdog thread ends
// the process with the same exit code; what a run creates on /dev/shm has no name (memfd), so
// even that path, and SIGKILL, leave nothing behind.
#pragma once

#include <chrono>
#include <string>

#include "common/status.h"

namespace p2p {

// Installs the SIGINT/SIGTERM handlers and starts the watchdog (`grace` <= 0: no watchdog).
// Idempotent. IoError if the self-pipe or the handlers cannot be set up.
Status InstallStopSignals(std::chrono::milliseconds grace);
// The signal that requested a stop, 0 if none.
int StopSignal();
// Readable once a stop was requested; -1 before InstallStopSignals. Poll it, never read it.
int StopFd();
// "SIGTERM", "SIGINT" or "signal N".
std::string SignalName(int sig);
// kUnavailable "stopped by SIGTERM <where>", for a loop that reached a safe point after a stop.
Status StoppedBySignal(const std::string& where);
// The exit code of a process stopped by `sig`: 128 + sig, as a shell reports a signal death.
inline int ExitCodeForSignal(int sig) { return 128 + sig; }

// Tests only: forget a recorded stop (the self-pipe is drained).
void ResetStopSignalForTesting();

}  // namespace p2p
