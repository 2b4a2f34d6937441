#include "tests/support/subprocess.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace p2p::test {

std::string P2ptrainBin() {
  const char* bin = std::getenv("P2PTRAIN_BIN");
  if (bin == nullptr) throw std::runtime_error("P2PTRAIN_BIN is not set (run the tests via ctest)");
  return bin;
}

TempDir::TempDir() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "p2ptest-XXXXXX").string();
  if (mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

Child::Child(std::vector<std::string> argv) {
  char out_tmpl[] = "/tmp/p2pchild-out-XXXXXX";
  char err_tmpl[] = "/tmp/p2pchild-err-XXXXXX";
  const int out_fd = mkstemp(out_tmpl);
  const int err_fd = mkstemp(err_tmpl);
  out_path_ = out_tmpl;
  err_path_ = err_tmpl;
  pid_ = fork();
  if (pid_ == 0) {
    dup2(out_fd, STDOUT_FILENO);
    dup2(err_fd, STDERR_FILENO);
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    execvp(args[0], args.data());
    _exit(127);
  }
  close(out_fd);
  close(err_fd);
  if (pid_ < 0) throw std::runtime_error("fork failed");
  pidfd_ = static_cast<int>(syscall(SYS_pidfd_open, pid_, 0));
  if (pidfd_ < 0) throw std::runtime_error("pidfd_open failed");
}

Child::~Child() {
  if (!reaped_) {
    Kill(SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  if (pidfd_ >= 0) close(pidfd_);
  unlink(out_path_.c_str());
  unlink(err_path_.c_str());
}

void Child::Kill(int sig) {
  if (!reaped_) kill(pid_, sig);
}

ProcessResult Child::Wait(std::chrono::milliseconds timeout) {
  ProcessResult r;
  pollfd p{pidfd_, POLLIN, 0};
  if (poll(&p, 1, static_cast<int>(timeout.count())) == 0) {
    r.timed_out = true;
    kill(pid_, SIGKILL);
  }
  int status = 0;
  waitpid(pid_, &status, 0);
  reaped_ = true;
  if (WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) r.signal = WTERMSIG(status);
  r.out = ReadFile(out_path_);
  r.err = ReadFile(err_path_);
  return r;
}

ProcessResult RunProcess(std::vector<std::string> argv, std::chrono::milliseconds timeout) {
  Child child(std::move(argv));
  return child.Wait(timeout);
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<std::string> ReadLines(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) lines.push_back(line);
  }
  return lines;
}

}  // namespace p2p::test
