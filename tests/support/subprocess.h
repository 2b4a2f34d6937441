// Runs real child processes for integration tests: argv in, exit status and output out, with a
// deadline (the child is killed if it outlives it, so a hung peer fails a test instead of hanging
// CI). Waits on a pidfd with poll(): no sleeps, no busy polling.
#pragma once

#include <chrono>
#include <string>
#include <vector>

namespace p2p::test {

struct ProcessResult {
  int exit_code = -1;  // -1 if killed by a signal
  int signal = 0;      // the signal that ended it, 0 if it exited
  bool timed_out = false;
  std::string out, err;
};

// Path of the p2ptrain binary under test (CTest sets P2PTRAIN_BIN).
std::string P2ptrainBin();

class Child {
 public:
  // Starts `argv` with stdout/stderr captured to files in a temp dir.
  explicit Child(std::vector<std::string> argv);
  ~Child();  // kills the child if it is still running
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  int pid() const { return pid_; }
  // Where its stderr goes, for WaitForFile on what it logs.
  const std::string& err_path() const { return err_path_; }
  void Kill(int sig);
  // Waits until the child exits or `timeout` passes (then kills it and sets timed_out).
  ProcessResult Wait(std::chrono::milliseconds timeout);

 private:
  int pid_ = -1;
  int pidfd_ = -1;
  bool reaped_ = false;
  std::string out_path_, err_path_;
};

ProcessResult RunProcess(std::vector<std::string> argv,
                         std::chrono::milliseconds timeout = std::chrono::minutes(5));

// A fresh temporary directory, removed with its contents when the object dies.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

std::string ReadFile(const std::string& path);
// The lines of a JSON-lines file.
std::vector<std::string> ReadLines(const std::string& path);

}  // namespace p2p::test
