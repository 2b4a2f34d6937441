#include "peer/launch_redis.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <random>
#include <thread>

namespace p2p::peer {
namespace {

constexpr auto kStartTimeout = std::chrono::seconds(30);
constexpr auto kStopTimeout = std::chrono::seconds(10);
constexpr size_t kKeptLogBytes = 16 * 1024;

std::string RandomHex(size_t bytes) {
  std::random_device rd;  // /dev/urandom
  std::string out;
  for (size_t i = 0; i < bytes; ++i) out += fmt::format("{:02x}", rd() & 0xff);
  return out;
}

Status WritePrivateFile(const std::string& path, const std::string& text) {
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return IoError("creating {}: {}", path, strerror(errno));
  const bool ok = write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  close(fd);
  if (!ok) return IoError("writing {}", path);
  return Status::Ok();
}

std::string LastLines(const std::string& log, size_t lines) {
  size_t at = log.size();
  for (size_t n = 0; at > 0 && n <= lines; ++n) at = log.rfind('\n', at - 1);
  return at == std::string::npos ? log : log.substr(at + 1);
}

}  // namespace

// One redis-server child: its pid (and pidfd, to wait with a deadline) and a thread draining its
// log (stdout) so it never blocks on a full pipe, keeping the last kKeptLogBytes for errors.
struct LaunchedRedis::Server {
  pid_t pid = -1;
  int pidfd = -1;
  std::thread reader;
  std::mutex mu;
  std::condition_variable changed;
  std::string log;
  bool eof = false;

  void Read(int fd) {
    // Signals go to launch's main thread (RunGroup reads them through a signalfd).
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, nullptr);
    char buf[4096];
    for (;;) {
      const ssize_t n = read(fd, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      std::lock_guard lock(mu);
      if (n <= 0) {
        eof = true;
        changed.notify_all();
        break;
      }
      log.append(buf, static_cast<size_t>(n));
      if (log.size() > kKeptLogBytes) log.erase(0, log.size() - kKeptLogBytes);
      changed.notify_all();
    }
    close(fd);
  }

  // Redis 7.0 logs "Ready to accept connections" (or "... ready to accept connections at" for a
  // socket) once it listens.
  bool WaitReady() {
    std::unique_lock lock(mu);
    changed.wait_for(lock, kStartTimeout, [&] {
      return eof || log.find("eady to accept connections") != std::string::npos;
    });
    return log.find("eady to accept connections") != std::string::npos;
  }

  void Stop() {
    if (pid > 0) {
      kill(pid, SIGTERM);
      pollfd p{.fd = pidfd, .events = POLLIN, .revents = 0};
      if (pidfd < 0 ||
          poll(&p, 1, static_cast<int>(std::chrono::milliseconds(kStopTimeout).count())) <= 0) {
        spdlog::warn("redis-server {} did not stop within {} s of SIGTERM; killing it", pid,
                     kStopTimeout.count());
        kill(pid, SIGKILL);
      }
      waitpid(pid, nullptr, 0);
      pid = -1;
    }
    if (pidfd >= 0) close(pidfd);
    pidfd = -1;
    if (reader.joinable()) reader.join();
  }
};

LaunchedRedis::LaunchedRedis(std::string dir) : dir_(std::move(dir)) {}

Result<std::unique_ptr<LaunchedRedis>> LaunchedRedis::Start(int size, const std::string& module) {
  std::string tmpl = "/tmp/p2ptrain-redis-XXXXXX";  // short: unix socket paths have ~107 bytes
  if (mkdtemp(tmpl.data()) == nullptr) return IoError("mkdtemp {}: {}", tmpl, strerror(errno));
  std::unique_ptr<LaunchedRedis> redis(new LaunchedRedis(tmpl));
  std::string directory;
  for (int r = 0; r < size; ++r) {
    P2P_RETURN_IF_ERROR(redis->StartOne(r, module));
    const std::string sub = fmt::format("{}/{}", redis->dir_, r);
    directory += fmt::format("{} unix://{}/redis.sock {}/password\n", r, sub, sub);
  }
  P2P_RETURN_IF_ERROR(WritePrivateFile(redis->directory_file(), directory));
  return redis;
}

Status LaunchedRedis::StartOne(int rank, const std::string& module) {
  const std::string sub = fmt::format("{}/{}", dir_, rank);
  if (mkdir(sub.c_str(), 0700) != 0) return IoError("mkdir {}: {}", sub, strerror(errno));
  const std::string password = RandomHex(24);
  P2P_RETURN_IF_ERROR(WritePrivateFile(sub + "/password", password + "\n"));
  int in[2], out[2];
  if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0) {
    return IoError("pipe: {}", strerror(errno));
  }
  const std::string socket = sub + "/redis.sock";
  std::vector<std::string> args = {
      "redis-server", "-", "--port",       "0",   "--unixsocket", socket, "--unixsocketperm", "700",
      "--save",       "",  "--appendonly", "no",  "--dir",        sub,    "--daemonize",      "no",
      "--logfile",    "",  "--loadmodule", module};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  // The environment is built before fork: the child only calls async-signal-safe functions.
  std::vector<std::string> env_text;
  for (char** e = environ; *e != nullptr; ++e) env_text.emplace_back(*e);
  // jemalloc keeps freed pages (scripts/start-redis.sh says why).
  if (std::getenv("MALLOC_CONF") == nullptr) {
    env_text.emplace_back("MALLOC_CONF=dirty_decay_ms:-1,muzzy_decay_ms:-1");
  }
  std::vector<char*> envp;
  for (auto& e : env_text) envp.push_back(e.data());
  envp.push_back(nullptr);
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) return IoError("fork: {}", strerror(errno));
  if (pid == 0) {
    // Its own process group: a Ctrl-C at the terminal reaches launch, which stops it in order.
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) _exit(127);
    dup2(in[0], STDIN_FILENO);
    dup2(out[1], STDOUT_FILENO);
    dup2(out[1], STDERR_FILENO);
    execvpe("redis-server", argv.data(), envp.data());
    const char msg[] = "cannot run redis-server (is it installed? scripts/setup.sh)\n";
    (void)!write(STDERR_FILENO, msg, sizeof msg - 1);
    _exit(127);
  }
  close(in[0]);
  close(out[1]);
  auto server = std::make_unique<Server>();
  server->pid = pid;
  server->pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  Server* s = server.get();
  const int log_fd = out[0];
  server->reader = std::thread([s, log_fd] { s->Read(log_fd); });
  servers_.push_back(std::move(server));
  // The password as configuration on stdin: `ps` never shows it.
  const std::string config = fmt::format("requirepass {}\n", password);
  const bool sent =
      write(in[1], config.data(), config.size()) == static_cast<ssize_t>(config.size());
  close(in[1]);
  if (!sent || !s->WaitReady()) {
    std::string log;
    {
      std::lock_guard lock(s->mu);
      log = s->log;
    }
    return Unavailable("redis-server for rank {} (socket {}) did not start; its last output:\n{}",
                       rank, socket, LastLines(log, 10));
  }
  return Status::Ok();
}

void LaunchedRedis::StopAll() {
  for (auto& s : servers_) s->Stop();
  servers_.clear();
}

LaunchedRedis::~LaunchedRedis() {
  StopAll();
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

Result<std::string> FindRedisModule(const std::string& flag) {
  std::string path = flag;
  if (path.empty()) {
    if (const char* env = std::getenv("P2P_REDIS_MODULE"); env != nullptr && *env != '\0') {
      path = env;
    }
  }
  if (path.empty()) {
    std::error_code ec;
    const auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
    if (!ec) path = (exe.parent_path() / ".." / "redis_module" / "p2ptrain_redis.so").string();
  }
  if (path.empty() || access(path.c_str(), R_OK) != 0) {
    return InvalidArgument(
        "the p2ptrain Redis module '{}' is not there; build it (cmake --build build --target "
        "p2ptrain_redis) and pass --redis-module PATH or set $P2P_REDIS_MODULE",
        path);
  }
  return std::filesystem::canonical(path).string();
}

}  // namespace p2p::peer
