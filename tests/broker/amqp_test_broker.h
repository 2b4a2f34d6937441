// Shared by the AMQP integration tests: finding or starting the RabbitMQ they run against, and
// small helpers. The broker is $P2P_AMQP_URL, or else one started with scripts/start-rabbitmq.sh
// (found through $P2P_SOURCE_DIR, set by CTest, or relative to this file); it is left running
// for the next test process (scripts/test.sh or scripts/stop-rabbitmq.sh stops it). A broker
// that cannot be started FAILS the tests with the reason; nothing is skipped silently.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>

#include "broker/amqp_url.h"
#include "broker/transport.h"

namespace p2p::broker::amqp_test {

struct BrokerInfo {
  std::string url;
  std::string node;       // set when the broker is a local scripts/start-rabbitmq.sh node
  std::string state_dir;  // its HOME (Erlang cookie), for rabbitmqctl
  std::string error;      // why there is no broker
};

inline std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr ? "" : v;
}

struct CommandResult {
  int exit_code = -1;
  std::string out;
};

inline CommandResult Run(const std::string& command) {
  CommandResult r;
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return r;
  char buf[4096];
  for (size_t n; (n = std::fread(buf, 1, sizeof(buf), pipe)) > 0;) r.out.append(buf, n);
  int status = ::pclose(pipe);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

inline std::string LastLine(const std::string& text) {
  std::string s = text;
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
  size_t nl = s.rfind('\n');
  return nl == std::string::npos ? s : s.substr(nl + 1);
}

inline std::string SourceDir() {
  std::string dir = Env("P2P_SOURCE_DIR");
  if (!dir.empty()) return dir;
  return std::filesystem::path(__FILE__).parent_path().parent_path().parent_path().string();
}

// Records the node of a local start-rabbitmq.sh broker on `port`, if there is one.
inline void FindLocalNode(BrokerInfo& info, int port) {
  std::string root =
      Env("P2P_RABBIT_DIR").empty() ? "/tmp/p2ptrain-rabbitmq" : Env("P2P_RABBIT_DIR");
  std::string state = fmt::format("{}/node-{}", root, port);
  std::string node = LastLine(Run(fmt::format("cat '{}/nodename' 2>/dev/null", state)).out);
  if (node.empty()) return;
  info.node = node;
  info.state_dir = state;
}

inline BrokerInfo FindOrStartBroker() {
  BrokerInfo info;
  info.url = Env("P2P_AMQP_URL");
  if (info.url.empty()) {
    std::string script = SourceDir() + "/scripts/start-rabbitmq.sh";
    CommandResult r = Run("'" + script + "' 2>&1");
    info.url = LastLine(r.out);
    if (r.exit_code != 0 || info.url.rfind("amqp", 0) != 0) {
      info.error = fmt::format(
          "no RabbitMQ: P2P_AMQP_URL is unset and '{}' failed (exit {}): "
          "{}. Run scripts/setup.sh, or point P2P_AMQP_URL at a broker.",
          script, r.exit_code, r.out);
      return info;
    }
  }
  Result<AmqpUrl> url = ParseAmqpUrl(info.url);
  if (!url.ok()) {
    info.error = url.status().ToString();
    return info;
  }
  if (url->host == "127.0.0.1" || url->host == "localhost") FindLocalNode(info, url->port);
  return info;
}

inline const BrokerInfo& Broker() {
  static const BrokerInfo info = FindOrStartBroker();
  return info;
}

// rabbitmqctl on the local test node.
inline CommandResult Ctl(const std::string& args) {
  std::string bin = std::filesystem::exists("/usr/lib/rabbitmq/bin/rabbitmqctl")
                        ? "/usr/lib/rabbitmq/bin/rabbitmqctl"
                        : "rabbitmqctl";
  return Run(
      fmt::format("HOME='{}' {} -q -n '{}' {} 2>&1", Broker().state_dir, bin, Broker().node, args));
}

inline std::string UniqueRunId(const std::string& tag) {
  static int counter = 0;
  return fmt::format("test-{}-{}-{}", tag, ::getpid(), ++counter);
}

inline Bytes ToBytes(std::string_view s) {
  Bytes b(s.size());
  std::memcpy(b.data(), s.data(), s.size());
  return b;
}
inline std::string ToString(const Bytes& b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

inline bool PortOpen(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  bool open = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
  ::close(fd);
  return open;
}

// A loopback port nobody listens on (bound and released: a connect gets refused).
inline int FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  socklen_t len = sizeof(a);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

}  // namespace p2p::broker::amqp_test
