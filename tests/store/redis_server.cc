#include "tests/store/redis_server.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <fstream>
#include <random>
#include <sstream>

#include "tests/support/file_watch.h"

namespace p2p::test {
namespace {

std::string RandomHex(size_t bytes) {
  std::random_device rd;  // /dev/urandom
  std::string out;
  for (size_t i = 0; i < bytes; ++i) out += fmt::format("{:02x}", rd() & 0xff);
  return out;
}

// A loopback port free right now (bound to port 0, read back, released). Another process could
// take it before redis-server binds it; the server then fails to start and ready() says so.
int FreeLoopbackPort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

bool LogSays(const std::string& path, std::initializer_list<const char*> needles) {
  const std::string text = ReadFile(path);
  for (const char* n : needles) {
    if (text.find(n) != std::string::npos) return true;
  }
  return false;
}

}  // namespace

std::string RedisModulePath() { return P2P_REDIS_MODULE; }

RedisServer::RedisServer(Options options) : password_(RandomHex(16)) {
  log_path_ = dir_.File("redis.log");
  std::vector<std::string> argv = {"redis-server", "--dir",         dir_.path(), "--logfile",
                                   log_path_,      "--save",        "",          "--appendonly",
                                   "no",           "--requirepass", password_,   "--daemonize",
                                   "no",           "--databases",   "16"};
  if (options.tcp) {
    port_ = FreeLoopbackPort();
    argv.insert(argv.end(), {"--bind", "127.0.0.1", "--port", std::to_string(port_)});
    url_ = fmt::format("redis://127.0.0.1:{}/0", port_);
  } else {
    const std::string socket = dir_.File("redis.sock");
    argv.insert(argv.end(), {"--port", "0", "--unixsocket", socket, "--unixsocketperm", "700"});
    url_ = "unix://" + socket;
  }
  if (options.load_module) argv.insert(argv.end(), {"--loadmodule", RedisModulePath()});
  child_ = std::make_unique<Child>(argv);
  // Redis 7.0 logs "Ready to accept connections" (tcp) or "...ready to accept connections at"
  // (unix) once it listens; a failed start (bad module, port taken) logs and exits.
  ready_ = WaitForFile(
      log_path_,
      [&] {
        return LogSays(log_path_, {"eady to accept connections", "failed to load",
                                   "Could not create server TCP", "Fatal", "FATAL"});
      },
      std::chrono::seconds(30));
  ready_ = ready_ && LogSays(log_path_, {"eady to accept connections"});
}

RedisServer::~RedisServer() { Stop(); }

void RedisServer::Stop() {
  if (!child_) return;
  child_->Kill(SIGTERM);
  child_->Wait(std::chrono::seconds(30));
  child_.reset();
}

std::string RedisServer::log() const { return ReadFile(log_path_); }

store::ConnectOptions RedisServer::connect_options() const {
  store::ConnectOptions o;
  o.address = store::ParseStoreUrl(url_).value();
  o.password = password_;
  return o;
}

Result<store::RedisClient> RedisServer::Connect() const {
  return store::RedisClient::Connect(connect_options());
}

}  // namespace p2p::test
